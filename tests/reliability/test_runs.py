"""Faults on real training runs: the tiny model on CPU through ``accelerate launch``.

The drivers in ``fleet.py`` start when the session starts (all at once) and record what
they saw; these tests check it. See each driver for the exact sequence of events.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tunedeck.runner.rundir.logs import TrainerLogReader

from .fleet import CI_CKPT_POINTS, DRIVERS, SECRETS, TrialLog
from .helpers import log_records, read_all_bytes, tunedeck
from .summary import Scenario


def _report(sc: Scenario, log: TrialLog) -> None:
    """Count the driver's trials in the summary, then fail with every failed trial's story."""
    for t in log.trials:
        sc.record(t.ok, t.lost)
    for n in log.notes:
        sc.note(n)
    bad = log.failures()
    assert log.trials, "the driver recorded no trial"
    assert not bad, "\n\n".join(f"[{t.label}]\n{t.error}" for t in bad)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ckpt_driver" in metafunc.fixturenames:
        soak = bool(metafunc.config.getoption("soak", default=False))
        names = [n for n in DRIVERS if n.startswith("ckpt_kill_")] if soak else list(CI_CKPT_POINTS)
        metafunc.parametrize("ckpt_driver", [pytest.param(n, marks=pytest.mark.fleet(n), id=n) for n in names])


# -- TUI / watch killed mid-run ------------------------------------------------------------------
@pytest.mark.fleet("observed")
def test_tui_and_watch_killed_or_hung_up_mid_run_never_touch_the_run(fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("TUI / watch SIGKILL or SIGHUP mid-run")
    log = fleet.result("observed")
    run_dir: Path = log.data.get("run_dir")  # type: ignore[assignment]
    steps_total = log.data.get("steps")
    with sc.trial() as t:
        assert log.data.get("status") == "finished", log.data.get("status")
        recs = [r for r in log_records(run_dir) if "loss" in r]
        steps = [r["current_steps"] for r in recs]
        if steps != list(range(1, steps_total + 1)):
            t.lost(f"loss steps {steps}")
        assert steps == list(range(1, steps_total + 1)), f"gap or repeat in the loss curve: {steps}"
        final = log.data["final"]
        assert final["status"] == "finished" and final["current_steps"] == steps_total
        # A new reader, from scratch, sees the whole history.
        reader = TrainerLogReader(run_dir / "trainer_log.jsonl")
        reader.poll(limit=0)
        assert len(reader.history.values("loss")) == steps_total and reader.garbage == 0
    _report(sc, log)


@pytest.mark.fleet("observed")
async def test_a_new_tui_shows_the_full_history_and_status_of_the_observed_run(fleet, scenario, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from tests.tui_helpers import screen_text, wait_for
    from tunedeck.tui.app import TunedeckApp

    sc = scenario("TUI / watch SIGKILL or SIGHUP mid-run")
    log = fleet.result("observed")
    run_dir: Path = log.data["run_dir"]
    monkeypatch.setenv("TUNEDECK_HOME", log.data["env"]["TUNEDECK_HOME"])
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()
    with sc.trial():
        app = TunedeckApp(root=log.data["root"], settings_file=tmp_path / "settings.json")
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: "observed" in screen_text(app) and "finished" in screen_text(app),
                           timeout=60, what="the run on the dashboard")
            app.screen.select_run_dir(run_dir)  # type: ignore[attr-defined]
            await wait_for(pilot, lambda: _detail_points(app) == log.data["steps"], timeout=60,
                           what="the selected run's full loss history")


def _detail_points(app: Any) -> int | None:
    """How many loss values the dashboard's selected-run panel was given."""
    detail = app.detail
    loss = detail.series.get("loss") if detail is not None else None
    return loss.count if loss is not None else None


# -- secrets ----------------------------------------------------------------------------------
@pytest.mark.fleet("observed")
async def test_planted_secrets_appear_in_no_file_output_or_screen(fleet, scenario, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from tests.tui_helpers import screen_text, wait_for
    from tunedeck.tui.app import TunedeckApp

    sc = scenario("Secrets planted in a real run: files, CLI, TUI")
    log = fleet.result("observed")
    run_dir: Path = log.data["run_dir"]
    env: dict[str, str] = log.data["env"]
    needles = {k: v.encode() for k, v in SECRETS.items()}
    checked: list[str] = []

    def scan(where: str, blob: bytes) -> None:
        checked.append(where)
        leaked = [k for k, v in needles.items() if v in blob]
        assert not leaked, f"{leaked} shown/written in {where}"

    with sc.trial() as t:
        try:
            home = Path(env["TUNEDECK_HOME"])
            for root in (run_dir, home):
                for path, data in read_all_bytes(root):
                    scan(str(path), data)
            scan("launch's output", log.data["launch_output"].encode())
            run = log.data["run_id"]
            for argv in (["status", run, "--json"], ["status", run], ["runs", "--json"],
                         ["runs"], ["logs", run, "-n", "1000"], ["checkpoints", run, "--json"],
                         ["watch", "--once"], ["triage", run], ["launch", str(log.data["cfg"]), "--print-command"]):
                res = tunedeck(argv, env, timeout=120)
                scan(" ".join(argv[:2]), (res.stdout + res.stderr).encode())
        except AssertionError:
            t.lost("a secret was written or shown")
            raise
    with sc.trial() as t:
        monkeypatch.setenv("TUNEDECK_HOME", env["TUNEDECK_HOME"])
        monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
        from tunedeck.runner.monitor.nvml import reset_nvml

        reset_nvml()
        app = TunedeckApp(root=log.data["root"], settings_file=tmp_path / "settings.json")
        try:
            async with app.run_test(size=(200, 60)) as pilot:
                await wait_for(pilot, lambda: "observed" in screen_text(app), timeout=60, what="the dashboard")
                app.screen.select_run_dir(run_dir)  # type: ignore[attr-defined]
                await wait_for(pilot, lambda: app.selected_run_dir == run_dir, what="the run selected")
                await pilot.pause(1.0)
                scan("dashboard screen", screen_text(app).encode())
                await pilot.press("l")
                await wait_for(pilot, lambda: "attempt 1" in screen_text(app) or "supervisor" in screen_text(app),
                               timeout=60, what="the logs screen")
                scan("logs screen", screen_text(app).encode())
                await pilot.press("escape", "c")
                await pilot.pause(1.0)
                scan("checkpoints screen", screen_text(app).encode())
                await pilot.press("escape", "t")
                await pilot.pause(1.0)
                scan("triage screen", screen_text(app).encode())
                await pilot.press("escape")
                await wait_for(pilot, lambda: app.screen.id == "dashboard", what="the dashboard again")
                # "Edit config" opens the config the user launched (it holds the secrets in clear).
                await pilot.press("e")
                await wait_for(pilot, lambda: "hf_hub_token" in screen_text(app) or "Editor" in type(app.screen).__name__,
                               timeout=60, what="the editor")
                await pilot.pause(1.0)
                scan("editor screen", screen_text(app).encode())
                editor = app.screen
                for key in ("hf_hub_token", "swanlab_api_key", "hub_token"):
                    assert await editor.jump_to(key), f"the editor has no field {key}"  # type: ignore[attr-defined]
                    await pilot.pause(0.3)
                    scan(f"editor field {key}", screen_text(app).encode())
                editor.action_toggle_preview()  # type: ignore[attr-defined]
                await pilot.pause(0.5)
                scan("editor YAML preview", screen_text(app).encode())
        except AssertionError:
            t.lost("a secret was shown on a TUI screen")
            raise
    sc.note(f"{len(SECRETS)} planted secrets searched in {len(checked)} files, outputs and screens")


# -- permissions on a real run --------------------------------------------------------------------
@pytest.mark.fleet("observed")
def test_a_real_run_dir_and_its_manifest_are_not_writable_by_others(fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Security: run dirs/manifests without g/o write; untrusted manifests")
    log = fleet.result("observed")
    run_dir: Path = log.data["run_dir"]
    home = Path(log.data["env"]["TUNEDECK_HOME"])
    with sc.trial():
        bad = []
        for p in [run_dir, run_dir.parent, run_dir / "tunedeck_run.json", home / "runs",
                  *(home / "runs").glob("*.json")]:
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o022:
                bad.append(f"{p}: {oct(mode)}")
        assert bad == [], f"launched under umask 002: {bad}"
    with sc.trial():
        # Everything the run wrote: nothing group/world-writable even under umask 002.
        loose = []
        for dirpath, dirs, files in os.walk(run_dir):
            for n in dirs + files:
                p = Path(dirpath) / n
                if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o022:
                    loose.append(str(p.relative_to(run_dir)))
        assert loose == [], f"group/world-writable files in the run directory: {sorted(loose)[:20]}"


# -- concurrent launches ----------------------------------------------------------------------
@pytest.mark.fleet("race")
def test_two_launches_on_one_output_dir_at_the_same_moment(fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Two launches on one output_dir at once")
    log = fleet.result("race")
    if log.data.get("refusals"):
        # The path varies from run to run; the words do not.
        words = log.data["refusals"][0].split(" is ", 1)[-1].split(" (lock", 1)[0]
        sc.note(f"the other gets exit 4: '<output_dir> is {words}'")
    _report(sc, log)


# -- checkpoints killed mid-write ----------------------------------------------------------------
def test_sigkill_while_writing_a_checkpoint_then_resume_latest(ckpt_driver: str, fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Trainer SIGKILLed mid-checkpoint (real run), then resume --from latest")
    log = fleet.result(ckpt_driver)
    if "files" in log.data:
        sc.note(f"{log.data['point']}: {'complete' if log.data['complete_at_kill'] else 'incomplete'} "
                f"-> resumed from {log.data.get('resumed_from', '?')}")
    _report(sc, log)


# -- 2-process runs ----------------------------------------------------------------------------------
@pytest.mark.fleet("gloo_stop")
def test_stop_of_a_two_process_run_leaves_nothing_alive(fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("2-process (gloo) run: stop leaves no process")
    _report(sc, fleet.result("gloo_stop"))


@pytest.mark.fleet("gloo_finish")
def test_two_process_runs_left_to_finish_exit_on_their_own(fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("2-process (gloo) runs finish and every worker exits")
    _report(sc, fleet.result("gloo_finish"))


@pytest.mark.fleet("supervisor_kill")
def test_supervisor_killed_shows_lost_and_stop_still_stops_the_trainer(fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Supervisor SIGKILLed: lost, and stop still stops the trainer")
    _report(sc, fleet.result("supervisor_kill"))


# -- disk full -----------------------------------------------------------------------------------------
@pytest.mark.fleet("disk_full")
def test_disk_full_while_saving_fails_the_run_names_the_disk_and_keeps_earlier_checkpoints(fleet, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Disk full while saving a checkpoint")
    log = fleet.result("disk_full")
    sc.note(f"mode: {log.data.get('mode')}")
    if log.data.get("final"):
        msg = str(log.data["final"].get("message")).split(" (disk holding", 1)[0]
        sc.note("message: " + msg.replace(str(log.data["final"].get("run_dir")), "<output_dir>"))
    _report(sc, log)
