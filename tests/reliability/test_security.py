"""Security: no shell anywhere, permissions that keep other users out, manifests that are not
trusted for signalling when someone else could have written them, trust_remote_code asked
for explicitly, and no network listener. (Secrets are checked on a real run in
``test_runs.py``, where there is a real run directory to search.)"""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tunedeck.runner.config.validate import validate_path
from tunedeck.runner.fsutil import atomic_write_json, ensure_dir
from tunedeck.runner.rundir.manifest import RunManifest, manifest_trusted

from .helpers import REPO, cli_env, tunedeck, wait_for, write_run_dir
from .test_pid_reuse import STRANGER

PRODUCT = ("runner", "tui", "themes", "bench", "sample_configs")
SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "fish", "/bin/sh", "/bin/bash", "/usr/bin/env", "cmd", "cmd.exe",
          "powershell"}
# Calls that always go through a shell, whatever their arguments.
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
               ("asyncio", "create_subprocess_shell"), ("pty", "spawn"), ("commands", "getoutput")}
SUBPROCESS_FUNCS = {"run", "Popen", "call", "check_call", "check_output"}


def _py_files(tops: tuple[str, ...]) -> Iterator[Path]:
    for top in tops:
        base = REPO / top
        if base.is_dir():
            yield from sorted(base.rglob("*.py"))


def _dotted(node: ast.AST) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


def shell_uses(path: Path, base: Path = REPO) -> list[str]:
    """Every way ``path`` could hand a string to a shell."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(base)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "shell" and not (
                isinstance(node.value, ast.Constant) and node.value.value is False):
            found.append(f"{rel}:{node.value.lineno} shell=")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in SHELL_CALLS:
            found.append(f"{rel}:{node.lineno} {'.'.join(name)}")
        if name and name[0] == "os" and (name[1].startswith("exec") or name[1].startswith("spawn")):
            found.append(f"{rel}:{node.lineno} os.{name[1]} (use subprocess with an argv list)")
        fname = name[1] if name else (node.func.id if isinstance(node.func, ast.Name) else None)
        if fname in SUBPROCESS_FUNCS and node.args:
            first = node.args[0]
            # A command as one string (or an f-string) instead of an argv list.
            if isinstance(first, (ast.JoinedStr, ast.BinOp)) or (
                    isinstance(first, ast.Constant) and isinstance(first.value, str)):
                found.append(f"{rel}:{node.lineno} {fname}() with a command string")
        # ["sh", "-c", ...] anywhere: a shell by another name.
        for arg in node.args:
            if isinstance(arg, (ast.List, ast.Tuple)) and len(arg.elts) >= 2:
                a, b = arg.elts[0], arg.elts[1]
                if (isinstance(a, ast.Constant) and a.value in SHELLS and isinstance(b, ast.Constant)
                        and b.value in ("-c", "/c", "-Command")):
                    found.append(f"{rel}:{node.lineno} {a.value} {b.value}")
    return found


def test_no_shell_anywhere_in_product_code(scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Security: no shell (argv lists only)")
    files = list(_py_files(PRODUCT))
    assert len(files) > 50
    with sc.trial():
        offenders = [hit for f in files for hit in shell_uses(f)]
        assert offenders == []
    sc.note(f"{len(files)} product files scanned")


def test_the_shell_scanner_catches_what_it_claims(tmp_path: Path) -> None:
    """The scanner itself must see each form it looks for (else the test above proves nothing)."""
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import os, subprocess, asyncio, pty\n"
        "os.system('x')\nos.popen('x')\nsubprocess.run('ls -l')\nsubprocess.Popen(f'ls {1}')\n"
        "subprocess.run(['ls'], shell=True)\nsubprocess.getoutput('x')\nasyncio.create_subprocess_shell('x')\n"
        "subprocess.run(['sh', '-c', 'x'])\nos.execvp('sh', ['sh'])\npty.spawn('x')\n"
    )
    hits = shell_uses(bad, tmp_path)
    assert len(hits) == 10, hits


# -- permissions -------------------------------------------------------------------------
def test_run_dirs_and_manifests_are_not_group_or_world_writable_whatever_the_umask(
        tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Security: run dirs/manifests without g/o write; untrusted manifests")
    for umask in (0o000, 0o002, 0o022):
        with sc.trial():
            old = os.umask(umask)
            try:
                d = ensure_dir(tmp_path / f"u{umask:o}" / "run")
                RunManifest(id="x", name="x", output_dir=str(d), config_path="c").write(d)
                atomic_write_json(d / "other.json", {})
            finally:
                os.umask(old)
            for p in (d, d.parent, d / "tunedeck_run.json", d / "other.json"):
                mode = stat.S_IMODE(p.stat().st_mode)
                assert not mode & 0o022, f"{p} is {oct(mode)} under umask {oct(umask)}"
            assert manifest_trusted(d)


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes], Path]]:
    """A 'running' run whose supervisor and trainer are a live process that logs signals."""
    log = tmp_path / "signals.log"
    proc = subprocess.Popen([sys.executable, "-c", STRANGER, str(log)], start_new_session=True,
                            stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: log.exists(), 30, "the stand-in process to start", poll=0.02)
        ct = psutil.Process(proc.pid).create_time()
        ref = {"pid": proc.pid, "create_time": ct, "pgid": proc.pid}
        run_dir = write_run_dir(tmp_path / "run", run_id="20250101-000000-sec1", status="running",
                                supervisor={**ref, "role": "supervisor"}, procs=[{**ref, "role": "launcher"}])
        yield run_dir, proc, log
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "owned by another user"])
@pytest.mark.parametrize("supervisor", ["alive", "gone"])
def test_an_untrusted_manifest_is_never_used_for_signalling(
        how: str, supervisor: str, live_run, tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Security: run dirs/manifests without g/o write; untrusted manifests")
    run_dir, proc, log = live_run
    m = run_dir / "tunedeck_run.json"
    if supervisor == "gone":
        # The supervisor died: stop would signal the trainer directly (the riskier path).
        data = json.loads(m.read_text())
        data["supervisor"] = {"pid": proc.pid, "create_time": data["supervisor"]["create_time"] - 100}
        m.write_text(json.dumps(data))
        old = time.time() - 3600
        os.utime(m, (old, old))
    if how == "group-writable":
        os.chmod(m, 0o664)
    elif how == "world-writable":
        os.chmod(m, 0o646)
    else:
        if os.getuid() != 0:
            pytest.fail("chown to another user needs root; run the suite as root or in CI's container")
        os.chown(m, 65534, 65534)
        os.chmod(m, 0o644)
    assert not manifest_trusted(run_dir)
    env = cli_env(tmp_path / "home")
    with sc.trial():
        res = tunedeck(["stop", str(run_dir), "--timeout", "2"], env, timeout=60)
        assert res.returncode != 0, res.stdout
        assert "refusing to signal" in res.stderr and "tunedeck_run.json" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
        assert proc.poll() is None and log.read_text() == "", "an untrusted manifest got a process signalled"
        assert not (run_dir / "tunedeck_stop").exists()


# -- trust_remote_code ---------------------------------------------------------------------
def test_trust_remote_code_is_a_validation_warning(tmp_path: Path, make_demo_config, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Security: trust_remote_code warned and confirmed in the TUI")
    cfg = make_demo_config(tmp_path, trust_remote_code=True)
    with sc.trial():
        findings = [f for f in validate_path(cfg, cuda_available=False) if f.key == "trust_remote_code"]
        assert [f.severity for f in findings] == ["warning"], findings
        assert findings[0].line is not None
        res = tunedeck(["validate", str(cfg)], cli_env(tmp_path / "home"), timeout=60)
        assert res.returncode == 0 and "trust_remote_code" in res.stdout and "warning" in res.stdout


async def test_trust_remote_code_needs_explicit_confirmation_in_the_tui(
        tmp_path: Path, make_demo_config, monkeypatch: pytest.MonkeyPatch, scenario) -> None:  # type: ignore[no-untyped-def]
    from tests.tui_helpers import screen_text
    from tests.tui_helpers import wait_for as tui_wait
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.data import control
    from tunedeck.tui.screens.editor import EditorScreen
    from tunedeck.tui.screens.modals import ConfirmationModal, LaunchModal

    sc = scenario("Security: trust_remote_code warned and confirmed in the TUI")
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()
    launched: list[Path] = []

    def fake_launch(config_path, overrides, gpus, **_where):  # type: ignore[no-untyped-def]
        # Launching for real is another test's job: here only whether it was reached counts.
        launched.append(Path(config_path))
        raise RuntimeError("launch recorded by the test")

    monkeypatch.setattr(control, "launch", fake_launch)

    async def attempt(cfg: Path, trust: bool, answer: str) -> None:
        app = TunedeckApp(root=tmp_path, config=cfg, settings_file=tmp_path / "settings.json")
        async with app.run_test(size=(140, 44)) as pilot:
            await tui_wait(pilot, lambda: isinstance(app.screen, EditorScreen)
                           and app.screen.analysis is not None, what="the editor's analysis")
            await pilot.press("ctrl+r")
            await tui_wait(pilot, lambda: isinstance(app.screen, LaunchModal), what="the launch modal")
            await pilot.press("y")
            if trust:
                await tui_wait(pilot, lambda: isinstance(app.screen, ConfirmationModal)
                               and app.screen.id == "confirm-trust", what="the trust confirmation")
                text = screen_text(app)
                assert "trust_remote_code" in text and "code" in text
                assert launched == [], "launched before the trust question was answered"
                await pilot.press(answer)
            await tui_wait(pilot, lambda: not isinstance(app.screen, (ConfirmationModal, LaunchModal)),
                           what="the modals to close")
            if answer == "y":
                await tui_wait(pilot, lambda: bool(launched), what="the launch to be called")
        assert launched == ([cfg] if answer == "y" else []), (trust, answer, launched)

    for trust in (True, False):
        (tmp_path / f"t{trust}").mkdir()
        cfg = make_demo_config(tmp_path / f"t{trust}", trust_remote_code=trust)
        for answer in (("n",) if trust else ()) + ("y",):
            launched.clear()
            with sc.trial():
                await attempt(cfg, trust, answer)


# -- no network listener ----------------------------------------------------------------------
LISTENERS = ("textual_serve", "http.server", "socketserver", "aiohttp", "uvicorn", "flask", "fastapi",
             "websockets", "gradio")


# The one module allowed to listen: `tunedeck serve`'s OpenAI-style server.
SERVER_MODULES = {"runner/infer/server.py"}


def test_only_the_model_server_listens_and_only_on_loopback_without_a_key(scenario) -> None:  # type: ignore[no-untyped-def]
    """No command serves the TUI over the network. `tunedeck serve` (the model API) is the one
    listener: it binds 127.0.0.1 by default, refuses any other address without an API key and
    points to an SSH tunnel instead."""
    from tunedeck.runner.cli import COMMANDS, build_parser
    from tunedeck.runner.errors import ConfigError
    from tunedeck.runner.infer.serve import check_exposure

    sc = scenario("Security: no browser-served mode beyond localhost")
    with sc.trial():
        offenders = []
        for f in _py_files(("runner", "tui", "themes")):
            rel = f.relative_to(REPO).as_posix()
            text = f.read_text(encoding="utf-8")
            tree = ast.parse(text)
            imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                         if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
            bad = imported & {m.split(".")[0] for m in LISTENERS}
            if (bad or ".bind((" in text or "0.0.0.0" in text) and rel not in SERVER_MODULES:
                offenders.append(f"{rel}: {sorted(bad) or 'bind'}")
        assert offenders == []
        assert [c for c in COMMANDS if "web" in c] == []
        args = build_parser("serve").parse_args(["serve", "some-run"])
        assert args.host == "127.0.0.1"
        for host in ("0.0.0.0", "::", "192.168.1.5"):
            with pytest.raises(ConfigError) as refused:
                check_exposure(host, None)
            assert "SSH tunnel" in (refused.value.hint or "")
        check_exposure("127.0.0.1", None)
    sc.note("one listener (tunedeck serve): 127.0.0.1 by default; another address needs --api-key")
