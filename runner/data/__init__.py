"""Datasets, chat templates, preprocessing, packing and collators.

Import map (the control path reads the first three without torch):

- :mod:`tunedeck.runner.data.dataset_info` -- ``dataset_info.json`` parsing (no heavy imports)
- :mod:`tunedeck.runner.data.templates`    -- chat templates as text slots (no heavy imports)
- :mod:`tunedeck.runner.data.demo`         -- the offline demo datasets (no heavy imports)
- :mod:`tunedeck.runner.data.args`, :mod:`tunedeck.runner.data.converters`, :mod:`tunedeck.runner.data.processors`
  -- pure Python; tokenizers are duck-typed
- :mod:`tunedeck.runner.data.collators`    -- torch
- :mod:`tunedeck.runner.data.loader`       -- ``datasets``: :func:`build_datasets` is the entry point
"""
