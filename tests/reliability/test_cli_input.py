"""Bad input, command-line side: run ids and paths are data, never code and never a way out.

Every command that takes a RUN gets ids with ``..``, spaces, quotes, newlines, shell
metacharacters, globs, escapes: each is a run that does not exist (exit 3, one line on
stderr, no traceback), nothing is executed (a sentinel file would appear), and an id never
resolves to a registry entry outside the registry (``../evil`` is not ``$HOME/evil.json``).
A real run whose directory and name are made of the same characters works like any other.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from tunedeck.runner.cli import main

from .helpers import cli_env, register_run, tunedeck, write_run_dir

SENTINEL = "PWNED"
NASTY_REFS = [
    "../evil", "../../evil", "..", ".", "./", "../../../../../../etc/passwd", "/etc/passwd",
    "a b", "it's", 'say "hi"', "line1\nline2", "tab\there", "$(touch PWNED)", "`touch PWNED`",
    "; touch PWNED", "| touch PWNED", "&& touch PWNED", "x > PWNED", "*", "?", "[a-z]*", "~", "~root", "~nosuchuser/run",
    "%s%s%n", "\x1b[31mred\x1b[0m", "\u202egnp.exe", "学习", "C:\\Windows\\System32", "run id\r", "-",
    "x" * 5000, "20990101-000000-dead", "{a,b}", "$HOME", "${IFS}", "!!", "\\", "'; DROP TABLE runs; --",
]
COMMANDS = [
    ["status"], ["status", "--json"], ["logs"], ["checkpoints"], ["checkpoints", "--json"], ["triage"],
    ["stop", "--timeout", "1"], ["resume"],
]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A registry with one real run, a decoy registry entry outside ``runs/``, a cwd to watch."""
    home = tmp_path / "home"
    root = tmp_path / "root"
    outside = tmp_path / "outside-run"
    write_run_dir(root / "good", run_id="20250101-000000-good", name="good")
    register_run(home, "20250101-000000-good", "good", root / "good")
    write_run_dir(outside, run_id="evil", name="evil")
    # A file an id with ../ would reach if ids were joined onto the registry as paths.
    (home / "evil.json").write_text(json.dumps({"id": "evil", "name": "evil", "run_dir": str(outside)}))
    (tmp_path / "evil.json").write_text(json.dumps({"id": "evil", "name": "evil", "run_dir": str(outside)}))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    return {"home": home, "root": root, "outside": outside, "cwd": cwd, "tmp": tmp_path}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in files + dirs:
            p = Path(dirpath) / n
            with contextlib.suppress(OSError):
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _run_inprocess(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_nasty_run_refs_are_data_for_every_command(world: dict[str, Path], scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("CLI run ids/paths with .., quotes, newlines, $(...)")
    before = _snapshot(world["tmp"])
    for cmd in COMMANDS:
        for ref in NASTY_REFS:
            argv = [cmd[0], *cmd[1:], ref] if ref != "-" else [cmd[0], *cmd[1:], "--", ref]
            with sc.trial() as t:
                code, out, err = _run_inprocess(argv)
                assert "Traceback" not in err and "Traceback" not in out, (argv, err)
                # 3: no such run; 2: argparse refused the shape (e.g. a lone "-").
                assert code in (2, 3), (argv, code, out, err)
                if code == 3:
                    assert err.startswith("tunedeck: error:"), err
                    assert "evil" not in out, f"{ref!r} reached the decoy outside the registry"
                if (world["cwd"] / SENTINEL).exists() or (world["tmp"] / SENTINEL).exists():
                    t.lost("a shell ran the run id")
                assert not (world["cwd"] / SENTINEL).exists()
    after = _snapshot(world["tmp"])
    changed = sorted(k for k in after if before.get(k) != after[k] and "/home/" not in k)
    assert changed == [], f"files created or changed by looking up nonexistent runs: {changed}"


def test_nasty_refs_through_the_real_cli_process(world: dict[str, Path], scenario) -> None:  # type: ignore[no-untyped-def]
    """The same through ``python -m tunedeck.runner.cli`` (argv list, as a user's shell would pass it)."""
    sc = scenario("CLI run ids/paths with .., quotes, newlines, $(...)")
    env = cli_env(world["home"])
    for ref in ["$(touch PWNED)", "; touch PWNED", "../evil", "line1\nline2", "`touch PWNED`"]:
        for cmd in (["status", "--json"], ["stop", "--timeout", "1"]):
            with sc.trial():
                res = tunedeck([*cmd, ref], env, cwd=world["cwd"], timeout=60)
                assert res.returncode == 3, (cmd, ref, res.stdout, res.stderr)
                assert "Traceback" not in res.stderr
                assert len(res.stderr.strip().splitlines()) <= 3, res.stderr
                assert not (world["cwd"] / SENTINEL).exists()


def test_a_run_named_with_shell_metacharacters_works_like_any_other(
        world: dict[str, Path], scenario, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("CLI run ids/paths with .., quotes, newlines, $(...)")
    monkeypatch.setenv("COLUMNS", "240")  # watch's table: the whole name on one line
    name = "it's a \"run\" $(touch PWNED); `id` | [red]x[/red]"
    run_dir = world["root"] / "we ird $(touch PWNED) 'q' \"dq\" ;&|"
    write_run_dir(run_dir, run_id="20250101-000001-odd1", name=name)
    register_run(world["home"], "20250101-000001-odd1", name, run_dir)
    for argv in (["status", str(run_dir), "--json"], ["status", "20250101-000001-odd1", "--json"],
                 ["checkpoints", str(run_dir), "--json"], ["runs", "--root", str(world["root"]), "--json"],
                 ["logs", str(run_dir)], ["watch", "--once", "--root", str(world["root"])],
                 ["status", name]):
        with sc.trial():
            code, out, err = _run_inprocess(argv)
            assert code == 0, (argv, err)
            if "--json" in argv:
                data = json.loads(out)
                items = data if isinstance(data, list) else [data]
                if argv[0] in ("status", "runs"):
                    assert any(d.get("name") == name for d in items), items
            if argv[0] == "watch":
                # Rich markup in a name is shown as text, not interpreted.
                assert "[red]x[/red]" in out, out
            assert not (world["cwd"] / SENTINEL).exists() and not (run_dir / SENTINEL).exists()


def test_runs_under_a_root_never_include_runs_outside_it(world: dict[str, Path], scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("CLI run ids/paths with .., quotes, newlines, $(...)")
    # Registered runs outside the root must not leak into a root listing either.
    register_run(world["home"], "evil", "evil", world["outside"])
    with sc.trial():
        code, out, err = _run_inprocess(["runs", "--root", str(world["root"]), "--json"])
        assert code == 0, err
        dirs = {Path(d["run_dir"]).resolve() for d in json.loads(out)}
        assert dirs == {(world["root"] / "good").resolve()}, dirs
