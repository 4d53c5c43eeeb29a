"""Resuming a run from a checkpoint that already reached the end trains nothing, and says so.

transformers restores ``global_step`` and still runs one step before it checks
``max_steps`` (checkpoint-300 -> checkpoint-301). The CLI's warning, triage's
diagnosis and the trainer all read one rule (``tunedeck.runner.rundir.health.resume_end``).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 300


def test_resume_from_the_last_step_trains_no_step_and_every_view_agrees(demo_run):
    run = demo_run(max_steps=3, save_steps=3, logging_steps=1)
    out_dir = run.out_dir
    first = run.cli("launch", str(run.config), "--follow", timeout=RUN_TIMEOUT)
    assert first.returncode == 0, (first.stdout, first.stderr, run.tail())
    run_id = run.manifest()["id"]
    assert sorted(p.name for p in out_dir.glob("checkpoint-*")) == ["checkpoint-3"]
    # `stop` on a finished run says so, without promising to wait for a checkpoint.
    stop = run.cli("stop", run_id, timeout=120)
    assert "stopping" not in stop.stderr and "not running (status finished)" in stop.stdout, stop

    said = "a resume would do nothing: checkpoint-3 is already at max_steps 3"
    tri = run.cli("triage", run_id, "--json", timeout=120)
    assert tri.returncode == 0, tri.stderr
    titles = [d["summary"] for d in json.loads(tri.stdout)["diagnoses"]]
    assert said in titles, titles

    res = run.cli("resume", run_id, "--follow", timeout=RUN_TIMEOUT)
    assert res.returncode == 0, (res.stdout, res.stderr, run.tail())
    assert said in res.stderr and "0 steps" in res.stderr, res.stderr
    # What happened agrees: no step 4, no checkpoint-4, finished at step 3.
    assert sorted(p.name for p in out_dir.glob("checkpoint-*")) == ["checkpoint-3"]
    assert max(run.steps()) == 3
    m = run.manifest()
    assert m["status"] == "finished" and len(m["attempts"]) == 2
    assert said in (m["message"] or "") and "trained 0 steps" in m["message"], m["message"]
    te = json.loads((out_dir / "trainer_exit.json").read_text())
    assert te["step"] == 3 and te["reason"] == "finished"
    assert run.status(run_id)["current_steps"] == 3
