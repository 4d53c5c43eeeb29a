"""The TUI's one door to the core (:mod:`tunedeck.runner`).

Screens and widgets reach the core only through this package, never by importing
``tunedeck.runner`` themselves (``tests/test_import_boundaries.py`` checks it): what reads
a run directory, a GPU, a log or a config, and what starts or stops a run, is here, and so
are the runner's types the UI renders (re-exported by the module of their concern).

By concern:

- :mod:`.runs`: the runs list and the queue (``RunsSampler``, ``RunSnapshot``, ``RunStatus``)
- :mod:`.detail`: the selected run's metrics, log tail and checkpoints (``RunDetailSampler``)
- :mod:`.alerts`: the dashboard banner's checks (``run_alerts``)
- :mod:`.gpus`: GPU snapshots with a short history (``GpuSampler``)
- :mod:`.logs`: the log viewer's reads; :mod:`.checkpoints`: scan, delete, export
- :mod:`.charts`: the chart and compare screens' curves
- :mod:`.schema`: the parameter schema and per-value checks
- :mod:`.editor`: the config editor's document, analysis (validate, estimate, diff), samples
- :mod:`.control`: launch, stop, resume; :mod:`.triage`: diagnoses and their patches
- :mod:`.chat`: the chat screen's sessions

Everything that does I/O runs in thread workers and returns immutable snapshots that the
widgets render. The modules the dashboard's first frame imports (runs, detail, alerts, gpus,
checkpoints, configs, control) import the runner inside their functions and its types under
``TYPE_CHECKING`` (screens and widgets import those types the same way), so the first frame
loads no more of the core than the protocol's constants; the samplers' threads load the
readers. Modules of screens opened later (editor, charts, chat, schema) import the torch-free
runner modules they need at the top; torch and transformers only ever load in a worker.
"""
