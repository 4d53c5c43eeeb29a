"""Symptoms of a run -> diagnoses with ordered, concrete config patches.

The rules follow the guide: its troubleshooting table (section 10.6: OOM, slow
training, loss not converging), its memory levels (9.3) and priorities (10.5),
its checkpoint advice (10.3). Each suggestion carries a patch (key -> new value,
``None`` removes the key) and the memory estimate before and after it, from
:mod:`tunedeck.runner.estimate`. Steps a config already has are skipped.

:func:`diagnose` is pure (a :class:`TriageInput` in, diagnoses out);
:func:`triage_run` gathers the input from a run directory; :func:`apply_suggestion`
writes a patched copy of the frozen config next to it, comments kept.

By concern: :mod:`.model` (input, diagnoses, suggestions), :mod:`.logtext` (log symptoms),
:mod:`.suggestions` (the guide's remedies), :mod:`.detectors` (``diagnose``),
:mod:`.gather` (a run directory -> input), :mod:`.apply` (writing a patched config).
"""

from __future__ import annotations

from tunedeck.runner.rundir.runs import config_path_of
from tunedeck.runner.triage.apply import apply_suggestion, diagnoses_to_data, numbered
from tunedeck.runner.triage.detectors import DETECTORS, GPU_PEAK_TFLOPS, diagnose, gpu_peak_flops
from tunedeck.runner.triage.gather import gather, triage_run
from tunedeck.runner.triage.logtext import current_attempt
from tunedeck.runner.triage.model import Diagnosis, Suggestion, TriageInput
from tunedeck.runner.triage.suggestions import missing_requirements

__all__ = [
    "DETECTORS",
    "Diagnosis",
    "GPU_PEAK_TFLOPS",
    "Suggestion",
    "TriageInput",
    "apply_suggestion",
    "config_path_of",
    "current_attempt",
    "diagnose",
    "diagnoses_to_data",
    "gather",
    "gpu_peak_flops",
    "missing_requirements",
    "numbered",
    "triage_run",
]
