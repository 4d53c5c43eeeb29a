"""The one reader of a run directory (the protocol of DESIGN.md).

Everything that reads a run's files asks this package and never re-reads them its own
way: the CLI (status, runs, checkpoints, resume, launch, triage, validate), the TUI and
the supervisor.

- :mod:`.protocol`: file names, statuses, trainer exit codes.
- :mod:`.manifest`: ``RunManifest`` (``tunedeck_run.json``), ``read_manifest``.
- :mod:`.registry`: the run-id index under ``$TUNEDECK_HOME``.
- :mod:`.discover`: which directories under a root are runs, and of which kind.
- :mod:`.checkpoints`: ``checkpoint-N`` listing and THE completeness rule.
- :mod:`.logs`: ``trainer_log.jsonl`` / ``trainer_state.json`` metrics (a step logged twice:
  the later line wins), text tails.
- :mod:`.runs`: ``read_run`` -> ``RunSnapshot``, ``list_runs``, ``resolve_run``.
- :mod:`.procs`: process liveness (pid + start time) and which run owns a pid / a GPU.
- :mod:`.health`: health rules shared by triage and the dashboard banner (stalled, ...).

Below :mod:`tunedeck.runner.control` and :mod:`tunedeck.runner.triage`: nothing here imports
them. Cheap to import: no torch, no Textual, no pydantic at package level.
"""
