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


def _runner_imports(source: str) -> list[str]:
    """Every ``tunedeck.runner`` import in ``source``, at any depth (lazy and TYPE_CHECKING too)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _top(a.name) == "runner"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _top(node.module) == "runner":
                found.append(node.module)
            elif node.module == "tunedeck":
                found += [f"tunedeck.{a.name}" for a in node.names if a.name == "runner"]
    return found


def test_the_boundary_check_sees_every_way_a_screen_could_import_runner() -> None:
    screen = (
        "from typing import TYPE_CHECKING\n"
        "import tunedeck.runner.estimate\n"
        "from tunedeck import runner\n"
        "if TYPE_CHECKING:\n"
        "    from tunedeck.runner.rundir.runs import RunSnapshot\n"
        "def later():\n"
        "    from tunedeck.runner.compare import read_curves\n"
        "from tunedeck.tui.data.runs import RunStatus\n"
    )
    assert _runner_imports(screen) == ["tunedeck.runner.estimate", "tunedeck.runner",
                                       "tunedeck.runner.rundir.runs", "tunedeck.runner.compare"]


def test_the_tui_reaches_the_core_only_through_tui_data() -> None:
    # One door: the app, its screens and widgets import tunedeck.tui.data (which re-exports the
    # runner's types by concern), never tunedeck.runner, so every read of a run directory, a GPU
    # or a config and every action on a run is in one package that can be typed and tested.
    files = [p for p in sorted((REPO / "tui").rglob("*.py"))
             if p.relative_to(REPO / "tui").parts[0] != "data"]
    names = {p.relative_to(REPO).as_posix() for p in files}
    assert {"tui/app.py", "tui/screens/dashboard.py", "tui/screens/chat.py",
            "tui/widgets/run_panel.py"} <= names
    offenders = [f"{p.relative_to(REPO).as_posix()}: {m}" for p in files
                 for m in _runner_imports(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_the_dashboards_first_frame_imports_no_training_stack_and_no_reader() -> None:
    # Textual of course; torch and friends never. Nor the run-directory readers, the NVML
    # facade or the config modules: the samplers' threads load those after the first frame
    # (tui/data's dashboard modules import them in their functions, their types under
    # TYPE_CHECKING).
    readers = ("tunedeck.runner.rundir.runs", "tunedeck.runner.rundir.logs",
               "tunedeck.runner.rundir.checkpoints", "tunedeck.runner.rundir.manifest",
               "tunedeck.runner.monitor.nvml", "tunedeck.runner.config")
    code = ("import tunedeck.tui.app, tunedeck.tui.screens.dashboard\n"
            f"early = [m for m in sys.modules if m.startswith({readers!r})]\n"
            "assert not early, early\n")
    assert _loaded_after(code) == ["textual"]


def test_every_tui_module_imports() -> None:
    # The data modules re-export some of the runner's types for TYPE_CHECKING only: a module
    # that imported one at run time would pass mypy and fail here.
    names = sorted("tunedeck.tui." + p.relative_to(REPO / "tui").with_suffix("").as_posix().replace("/", ".")
                   for p in (REPO / "tui").rglob("*.py") if p.name != "__init__.py")
    assert "tunedeck.tui.flows.resume" in names and "tunedeck.tui.data.runs" in names
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in names)
    assert "torch" not in _loaded_after(code)
