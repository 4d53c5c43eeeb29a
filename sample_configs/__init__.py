"""The sample configs shipped with tunedeck (found from a checkout or an installed wheel).

``path("qlora.yaml")`` gives a filesystem path to a packaged file; ``configs()`` lists the
tunedeck training configs (the ``*.yaml`` files at the top level). DeepSpeed and
accelerate launch files live in ``launch/``.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

_EXTRACTED: Path | None = None


def path(name: str = "") -> Path:
    """Filesystem path of ``name`` inside the package (the package folder for "")."""
    res = files(__name__)
    for part in Path(name).parts:
        res = res.joinpath(part)
    if isinstance(res, Path):
        return res
    # Installed as a zip: copy the package out once so callers get real files.
    global _EXTRACTED
    if _EXTRACTED is None:
        _EXTRACTED = Path(tempfile.mkdtemp(prefix="tunedeck-samples-"))
        _copy_tree(files(__name__), _EXTRACTED)
    return _EXTRACTED / name


def _copy_tree(src, dest: Path) -> None:  # type: ignore[no-untyped-def]
    for item in src.iterdir():
        if item.is_dir():
            (dest / item.name).mkdir(exist_ok=True)
            _copy_tree(item, dest / item.name)
        elif not item.name.endswith((".py", ".pyc")):
            with item.open("rb") as fin, open(dest / item.name, "wb") as fout:
                shutil.copyfileobj(fin, fout)


def configs() -> list[Path]:
    """The sample training configs, sorted by name."""
    return sorted(p for p in path().iterdir() if p.suffix == ".yaml")
