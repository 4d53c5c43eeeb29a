"""No function in runner/ or tui/ is longer than MAX_LINES, except declarative tables.

A long engine hides its steps: break it into named functions with one job each. The
only exemptions are tables (one entry per line, no logic), listed with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("runner", "tui")
MAX_LINES = 100

# (file, function) -> why its length is fine.
ALLOWED = {
    ("runner/config/schema.py", "_declare"):
        "the parameter table: one declaration per config key, no control flow",
}


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, length in lines) of every function and method in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.name, node.lineno, (node.end_lineno or node.lineno) - node.lineno + 1)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def _all_functions() -> dict[tuple[str, str], list[tuple[int, int]]]:
    found: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for name, line, length in _functions(path):
                found.setdefault((rel, name), []).append((line, length))
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    too_long = [
        f"{rel}:{line} {name} is {length} lines"
        for (rel, name), places in _all_functions().items()
        for line, length in places
        if length > MAX_LINES and (rel, name) not in ALLOWED
    ]
    assert not too_long, (
        f"functions over {MAX_LINES} lines (split them into named steps, or if one is a "
        "declarative table add it to ALLOWED with the reason):\n" + "\n".join(sorted(too_long))
    )


def test_every_exemption_is_still_needed() -> None:
    found = _all_functions()
    stale = [f"{rel} {name}" for rel, name in ALLOWED
             if not any(length > MAX_LINES for _line, length in found.get((rel, name), []))]
    assert not stale, "ALLOWED names functions that are gone or short now: " + ", ".join(stale)


def test_the_measure_counts_a_function_from_def_to_its_last_line(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    source = tmp_path / "m.py"
    source.write_text(f"def short():\n    return 1\n\n\nasync def long():\n{body}\n", encoding="utf-8")
    assert sorted(_functions(source)) == [("long", 5, MAX_LINES + 1), ("short", 1, 2)]
