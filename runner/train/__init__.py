"""The training process: ``python -m tunedeck.runner.train CONFIG.yaml`` (alone or under ``accelerate launch``).

Only this package and :mod:`tunedeck.runner.data` import torch/transformers. Entry point:
:func:`tunedeck.runner.train.workflow.main`; the offline tiny model: :mod:`tunedeck.runner.train.tiny`.
"""
