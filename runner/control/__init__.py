"""Run control: launch argv, the detached supervisor, stop/resume (reading a run is
:mod:`tunedeck.runner.rundir`'s job).

Public API (everything else is an implementation detail):

- :mod:`tunedeck.runner.control.launch`: ``build_launch_plan(values, *, config_path, gpus,
  num_processes, num_machines, machine_rank, main_process_ip, main_process_port, cpu)
  -> LaunchPlan`` (argv, env, accelerate config); ``launch(config_path, overrides,
  LaunchOptions(...)) -> LaunchResult``; ``decide_start`` (the output_dir policy).
- :mod:`tunedeck.runner.control.supervisor`: ``python -m tunedeck.runner.control.supervisor RUN_DIR``.
- :mod:`tunedeck.runner.control.stop`: ``stop_run(run_dir, timeout=, wait=) -> StopResult``.
- :mod:`tunedeck.runner.control.resume`: ``resume(run_dir, from_=, overrides=) -> ResumeResult``.
- :mod:`tunedeck.runner.control.follow`: ``follow(run_dir) -> RunStatus``, ``outcome_exit_code``.

Never imports torch or Textual.
"""
