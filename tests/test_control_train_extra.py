"""A monitor-only install (no ``[train]`` extra) refuses to train, before it starts anything.

The missing package is simulated the way Python itself marks an import as
impossible: a ``sitecustomize`` on the CLI's PYTHONPATH puts ``None`` into
``sys.modules`` for ``accelerate``, so ``import accelerate`` raises
ModuleNotFoundError and ``importlib.util.find_spec`` finds nothing, in the CLI
and in every process it would start (the supervisor, the trainer).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.control_helpers import REPO, control_env, end_of_tail, manifest, tunedeck

INSTALL = 'pip install "tunedeck[train]"'


def _without(tmp_path: Path, *packages: str, home: Path) -> dict[str, str]:
    blocker = tmp_path / "no-train-extra"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{p!r}] = None\n" for p in packages), encoding="utf-8")
    env = control_env(home)
    env["PYTHONPATH"] = f"{blocker}:{REPO}"
    return env


def _refused(out, what: str) -> None:
    assert out.returncode == 5, (what, out.returncode, out.stdout, out.stderr)
    assert INSTALL in out.stderr and "Traceback" not in out.stderr + out.stdout, (what, out.stderr)
    assert "started run" not in out.stderr, out.stderr


def test_launch_demo_and_make_tiny_model_refuse_with_the_install_command(tmp_path, make_demo_config):
    home = tmp_path / "home"
    env = _without(tmp_path, "accelerate", home=home)
    probe = tunedeck(["runs", "--json", "--root", str(tmp_path)], env)  # the blocker is in force,
    assert probe.returncode == 0, probe.stderr                           # reading commands still work
    cfg = make_demo_config(tmp_path)
    out = tunedeck(["launch", str(cfg)], env, cwd=tmp_path)
    _refused(out, "launch")
    assert "accelerate" in out.stderr
    assert not (tmp_path / "out").exists()  # no run directory, manifest or supervisor
    assert not list(home.glob("runs/*.json"))  # nothing registered

    demo_dir = tmp_path / "demo"
    _refused(tunedeck(["demo", "--headless", "--dir", str(demo_dir)], env, cwd=tmp_path), "demo")
    assert not demo_dir.exists()
    model_dir = tmp_path / "tiny"
    _refused(tunedeck(["make-tiny-model", str(model_dir)], env, cwd=tmp_path), "make-tiny-model")
    assert not model_dir.exists()


@pytest.mark.slow
def test_a_failed_resume_leaves_a_finished_run_finished(tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path, max_steps=2, save_steps=2, logging_steps=1)
    out_dir = tmp_path / "out"
    home = tmp_path / "home"
    done = tunedeck(["launch", str(cfg), "--follow"], control_env(home), timeout=300)
    assert done.returncode == 0, (done.stdout, done.stderr, end_of_tail(out_dir))
    run_id = manifest(out_dir)["id"]
    before = (out_dir / "tunedeck_run.json").read_bytes()
    frozen = (out_dir / "config.yaml").read_bytes()

    env = _without(tmp_path, "accelerate", home=home)
    out = tunedeck(["resume", run_id, "max_steps=4"], env, cwd=tmp_path)
    _refused(out, "resume")
    assert (out_dir / "tunedeck_run.json").read_bytes() == before
    assert (out_dir / "config.yaml").read_bytes() == frozen
    assert not (out_dir / "config.attempt-1.yaml").exists()
    st = tunedeck(["status", run_id, "--json"], env)
    assert json.loads(st.stdout)["status"] == "finished"
