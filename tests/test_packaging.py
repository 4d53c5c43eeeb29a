"""Installed, tunedeck is one import package, ``tunedeck``: the wheel holds nothing else.

``runner``, ``tui`` and ``themes`` are names of other projects on PyPI; a wheel that put them
in site-packages would break those projects (or be broken by them). The repository keeps its
top-level folders; ``pyproject.toml`` maps them under ``tunedeck``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAPPED = ("runner", "tui", "themes", "sample_configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # A copy of the tree: building in place would leave build/ and egg-info in the checkout.
    src = build / "src"
    _copy_tracked(REPO, src)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("tunedeck-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _copy_tracked(repo: Path, dest: Path) -> None:
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = repo / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())


def test_the_wheel_installs_exactly_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"tunedeck", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}


def test_every_package_folder_of_the_repository_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for top in MAPPED:
        for init in sorted((REPO / top).rglob("__init__.py")):
            rel = init.relative_to(REPO).as_posix()
            if f"tunedeck/{rel}" not in names:
                missing.append(rel)
    assert missing == [], f"add these packages to [tool.setuptools] packages: {missing}"
    for data in ("tunedeck/themes/base.tcss", "tunedeck/sample_configs/demo_cpu.yaml",
                 "tunedeck/sample_configs/launch/ds_z3_config.json"):
        assert data in names


def test_the_installed_wheel_runs_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) in (
        ["tunedeck"], ["bin", "tunedeck"])
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = (
        "import json, tunedeck, tunedeck.runner.cli, tunedeck.tui.app, tunedeck.sample_configs as s\n"
        "print(json.dumps([tunedeck.__path__[0], tunedeck.runner.cli.__file__, str(s.path('demo_cpu.yaml'))]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(p.startswith(str(target)) for p in __import__("json").loads(out.stdout)), out.stdout
    helped = subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "usage: tunedeck" in helped.stdout, helped.stderr


def test_no_module_is_importable_under_its_old_top_level_name_from_the_product() -> None:
    # Every import names the one package; a stray ``import runner`` would load a second copy.
    offenders = []
    for top in (*MAPPED, "tunedeck"):
        for path in sorted((REPO / top).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                s = line.strip()
                if s.startswith(tuple(f"{kw} {m}" for kw in ("import", "from") for m in MAPPED)) and (
                        s.split()[1].split(".")[0] in MAPPED):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {s}")
    assert offenders == []
