"""Where a new config starts: the sample configs and the hardware presets."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded when a new config is started, not with the app
    from tunedeck.runner.config.presets import Preset

__all__ = ["Preset", "hardware_presets", "preset_yaml", "sample_config_paths"]


def sample_config_paths() -> list[Path]:
    try:
        from tunedeck import sample_configs
    except ImportError:
        return []
    base = Path(sample_configs.__file__).resolve().parent
    return sorted(p for p in base.glob("*.yaml"))


def hardware_presets() -> list[Preset]:
    from tunedeck.runner.config.presets import HARDWARE_PRESETS

    return list(HARDWARE_PRESETS.values())


def preset_yaml(name: str) -> str:
    """A new config for a hardware preset: its sample config (comments kept) with the
    preset's values applied, or just those values when there is no sample file."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from tunedeck.runner.config.yamlio import ConfigDoc

    preset = next(p for p in hardware_presets() if p.name == name)
    sample = next((p for p in sample_config_paths() if p.name == (preset.sample_config or "")), None)
    if sample is not None:
        doc = ConfigDoc.loads(sample.read_text(encoding="utf-8"), source=str(sample))
        doc.apply(dict(preset.values))
        return doc.dumps()
    m = CommentedMap()
    for k, v in preset.values.items():
        m[k] = v
    m.yaml_set_start_comment(f"{preset.title}\nFrom the guide's hardware presets; fill in the model and dataset.")
    buf = io.StringIO()
    YAML(typ="rt").dump(m, buf)
    return buf.getvalue()
