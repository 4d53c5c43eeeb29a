"""The import boundaries of DESIGN.md, checked in fresh interpreters.

`tunedeck status` must answer fast on a box where torch takes seconds to import,
and a monitoring-only install has no torch at all: so the control path must never
import it, and nothing headless may import Textual.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tunedeck.runner
from tunedeck.runner.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "swanlab", "textual")
# Modules that run inside the training subprocess may import the training stack.
# So may the inference engine (chat, export, serve, predict load models); runner.infer.spec
# (what to load) stays on the control path.
TRAIN_SIDE = ("tunedeck.runner.train", "tunedeck.runner.data", "tunedeck.runner.infer.engine",
              "tunedeck.runner.infer.export")
# ... but the data modules the control path reads (validation, triage) must not, and are covered.
TORCH_FREE_DATA = ("tunedeck.runner.data", "tunedeck.runner.data.dataset_info",
                   "tunedeck.runner.data.templates", "tunedeck.runner.data.converters",
                   "tunedeck.runner.data.args", "tunedeck.runner.data.processors",
                   "tunedeck.runner.data.demo")


def _loaded_after(code: str) -> list[str]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _control_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(tunedeck.runner.__path__, "tunedeck.runner."):
        if info.name.startswith(TRAIN_SIDE) and info.name not in TORCH_FREE_DATA:
            continue
        names.append(info.name)
    return names


def test_every_control_path_module_imports_without_torch_or_textual() -> None:
    mods = _control_modules()
    assert "tunedeck.runner.cli" in mods and "tunedeck.runner.config.yamlio" in mods
    assert set(TORCH_FREE_DATA) <= set(mods)
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in mods)
    assert _loaded_after(code) == []


def _help_code(argv: list[str], check: str) -> str:
    """A probe that runs ``tunedeck ARGV`` (a --help) in-process and then ``check`` on ``text``."""
    return (
        "from tunedeck.runner.cli import main\n"
        "import contextlib, io\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "text = buf.getvalue()\n"
        + check
    )


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "tui"])
def test_subcommand_help_does_not_import_torch_or_textual(command: str) -> None:
    assert _loaded_after(_help_code([command, "--help"], "assert 'usage:' in text\n")) == []


def test_top_level_help_lists_every_command_without_heavy_imports() -> None:
    listed = [c for c in COMMANDS if c != "supervise"]
    check = f"missing = [c for c in {listed!r} if c not in text]\nassert not missing, missing\n"
    assert _loaded_after(_help_code(["--help"], check)) == []


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_top(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(_top(node.module))
    return found


def _top(module: str) -> str:
    """The first name of a module path, looking through the ``tunedeck.`` namespace."""
    parts = module.split(".")
    return parts[1] if parts[0] == "tunedeck" and len(parts) > 1 else parts[0]


def test_nothing_under_runner_imports_textual_or_tui_except_the_tui_entry() -> None:
    offenders = []
    for path in sorted((REPO / "runner").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        bad = _imports_of(path) & {"textual", "tui"}
        if bad and rel != "runner/commands/tui.py":
            offenders.append(f"{rel}: {sorted(bad)}")
    assert offenders == []


def test_no_shell_strings_in_product_code() -> None:
    offenders = []
    for top in ("runner", "tui", "themes", "bench"):
        for path in sorted((REPO / top).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.keyword) and node.arg == "shell"
                        and not (isinstance(node.value, ast.Constant) and node.value.value is False)):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} shell=")
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("system", "popen")
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os"
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} os.{node.func.attr}")
    assert offenders == []


def _tunedeck_imports(path: Path) -> set[str]:
    """Every ``tunedeck.*`` module a file imports, at any depth (lazy imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tunedeck."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunedeck."):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_the_run_directory_reader_and_triage_never_import_control() -> None:
    # rundir is below control and triage: a reader that imported control would pull the
    # launcher/supervisor into every view and let the two drift apart again.
    readers = sorted((REPO / "runner" / "rundir").rglob("*.py"))
    readers += sorted((REPO / "runner").glob("triage*.py"))
    readers += sorted((REPO / "runner" / "triage").rglob("*.py"))
    readers += sorted((REPO / "runner" / "monitor").rglob("*.py"))
    assert len(readers) > 8
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in readers for m in sorted(_tunedeck_imports(p))
                 if m.startswith("tunedeck.runner.control")]
    assert offenders == []
