"""Datasets, chat templates, preprocessing, packing and collators.

Import map (the control path reads the first three without torch):

- :mod:`runner.data.dataset_info` -- ``dataset_info.json`` parsing (no heavy imports)
- :mod:`runner.data.templates`    -- chat templates as text slots (no heavy imports)
- :mod:`runner.data.demo`         -- the offline demo datasets (no heavy imports)
- :mod:`runner.data.args`, :mod:`runner.data.converters`, :mod:`runner.data.processors`
  -- pure Python; tokenizers are duck-typed
- :mod:`runner.data.collators`    -- torch
- :mod:`runner.data.loader`       -- ``datasets``: :func:`build_datasets` is the entry point
"""
