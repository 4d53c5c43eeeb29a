"""The config editor's document (ruamel round-trip, comments kept) and its analysis:
validate, estimate and diff a buffer. Imported with the editor screen, not at start-up."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import ConfigError, StaleFileError
from tunedeck.tui.data.schema import secret_keys

if TYPE_CHECKING:  # the validator and the estimator load in the analysis worker, not with the screen
    from tunedeck.runner.config.validate import Finding
    from tunedeck.runner.estimate import MemoryEstimate

__all__ = ["ConfigDoc", "ConfigError", "EditorAnalysis", "Finding", "MemoryEstimate", "StaleFileError",
           "analyse"]


@dataclass(frozen=True)
class EditorAnalysis:
    generation: int                 # which edit this answers (stale answers are dropped)
    findings: tuple[Finding, ...]
    estimate: MemoryEstimate | None
    estimate_error: str | None
    memory_label: str               # where the GPU memory figure comes from
    yaml_text: str
    diff: tuple[str, ...]           # unified diff against the file on disk
    disk_changed: bool
    gpus_detected: bool | None = None  # asked NVML (no preset): did it find a GPU?


def analyse(generation: int, text: str, path: Path | None, *, num_gpus: int | None,
            gpu_mem_gib: float | None, memory_label: str) -> EditorAnalysis:
    """Validate, estimate and diff an editor buffer (the YAML it would save)."""
    from tunedeck.runner import estimate as est
    from tunedeck.runner.config import validate

    source = str(path) if path else "<new config>"
    try:
        doc = ConfigDoc.loads(text, source=source, path=path)
    except Exception as exc:  # noqa: BLE001 - the buffer is generated, but be safe
        return EditorAnalysis(generation, (), None, str(exc), memory_label, text, (), False)
    try:
        findings = tuple(validate.validate_doc(doc, check_files=True))
        err: str | None = None
    except Exception as exc:  # noqa: BLE001
        findings = ()
        err = f"validator failed: {exc}"
    values = doc.values()
    config_dir = path.parent if path else None
    estimate = None
    estimate_error = err
    try:
        estimate = est.estimate(values, config_dir=config_dir, num_gpus=num_gpus,
                                gpu_mem_gib=gpu_mem_gib, detect_gpus=gpu_mem_gib is None)
    except Exception as exc:  # noqa: BLE001 - e.g. no model shape: say so in the panel
        estimate_error = str(exc).splitlines()[0]
    gpus_detected: bool | None = None
    if gpu_mem_gib is None:
        if estimate is not None:
            gpus_detected = estimate.gpu_source.startswith("detected")
        else:
            gpus_detected = est.detect_gpu_memory() is not None
    disk_text = ""
    disk_changed = False
    if path is not None:
        try:
            disk_text = path.read_text(encoding="utf-8")
        except OSError:
            disk_text = ""
            disk_changed = path is not None and not path.exists()
    diff = tuple(
        difflib.unified_diff(
            _redact_yaml_lines(disk_text.splitlines()),
            _redact_yaml_lines(text.splitlines()),
            fromfile=f"{path.name if path else 'new'} (on disk)",
            tofile=f"{path.name if path else 'new'} (edited)",
            lineterm="",
        )
    )
    return EditorAnalysis(generation, findings, estimate, estimate_error, memory_label,
                          "\n".join(_redact_yaml_lines(text.splitlines())), diff, disk_changed,
                          gpus_detected)


def _redact_yaml_lines(lines: Sequence[str]) -> list[str]:
    """Mask the value of any secret key in YAML text meant for the screen."""
    keys = secret_keys()
    if not keys:
        return list(lines)
    pat = re.compile(r"^(\s*(?:" + "|".join(re.escape(k) for k in sorted(keys)) + r")\s*:\s*)(\S.*)$")
    return [pat.sub(lambda m: m.group(1) + "'***'", ln) for ln in lines]
