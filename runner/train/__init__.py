"""The training process run under ``accelerate launch -m runner.train CONFIG.yaml``.

Only this package and :mod:`runner.data` import torch/transformers. Entry point:
:func:`runner.train.workflow.main`; the offline tiny model: :mod:`runner.train.tiny`.
"""
