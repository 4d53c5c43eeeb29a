"""What to load for chat, export, serve and predict: :func:`resolve` -> :class:`InferSpec`.

A target is a run (id, name or output_dir), a config file (LLaMA-Factory's inference YAML:
``model_name_or_path``, ``adapter_name_or_path``, ``template`` ...), or a model directory that
``tunedeck export`` wrote. The run's frozen config is merged with LLaMA-Factory's inference keys
(``infer_backend``, ``infer_dtype``, the generation keys) and their defaults from the schema.

No torch here: ``tunedeck chat --help`` and the serve control path import this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import ConfigError, RunNotFound, TunedeckError
from tunedeck.runner.rundir.protocol import CHECKPOINT_PREFIX

EXPORT_RECORD = "tunedeck_export.json"
# LLaMA-Factory's generating arguments (hparams/generating_args.py), in its order.
GENERATION_KEYS: tuple[str, ...] = (
    "do_sample", "temperature", "top_p", "top_k", "num_beams", "max_length", "max_new_tokens",
    "repetition_penalty", "length_penalty", "skip_special_tokens",
)
# Files that make a directory a loadable transformers model (full weights).
_FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class GenConfig:
    """Decoding settings (LLaMA-Factory's keys and defaults); ``with_(key=value)`` for /set."""

    do_sample: bool = True
    temperature: float = 0.95
    top_p: float = 0.7
    top_k: int = 50
    num_beams: int = 1
    max_length: int = 1024
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    skip_special_tokens: bool = True

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> GenConfig:
        from tunedeck.runner.config.schema import PARAMS

        kw: dict[str, Any] = {}
        for k in GENERATION_KEYS:
            v = values.get(k, PARAMS[k].default)
            kw[k] = _coerce(k, v, type(getattr(cls(), k)))
        return cls(**kw)

    def with_(self, key: str, value: Any) -> GenConfig:
        """A copy with one setting changed; ``value`` may be the text typed after ``/set``."""
        if key not in GENERATION_KEYS:
            raise TunedeckError(f"unknown generation setting {key!r}",
                                hint="one of " + ", ".join(GENERATION_KEYS))
        from tunedeck.runner.config.validate import check_value

        typed = _coerce(key, value, type(getattr(self, key)))
        problem = check_value(key, typed)
        if problem:
            raise ConfigError(problem, key=key)
        return dataclasses.replace(self, **{key: typed})

    def to_generate_kwargs(self) -> dict[str, Any]:
        """``model.generate`` keyword arguments, LLaMA-Factory's way: temperature 0 means greedy;
        without sampling, temperature/top_p/top_k are not passed."""
        kw: dict[str, Any] = {
            "do_sample": self.do_sample and self.temperature > 0,
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "length_penalty": self.length_penalty,
        }
        if kw["do_sample"]:
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kw

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(key: str, v: Any, typ: type) -> Any:
    if isinstance(v, str):
        from tunedeck.runner.config.yamlio import parse_scalar

        v = parse_scalar(v)
    try:
        if typ is bool:
            if isinstance(v, bool):
                return v
            raise ValueError
        if typ is int:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            return int(v)
        if typ is float:
            if isinstance(v, bool):
                raise ValueError
            return float(v)
    except (TypeError, ValueError):
        pass
    else:
        return v
    raise ConfigError(f"expected {typ.__name__}, got {v!r}", key=key)


@dataclass(frozen=True)
class InferSpec:
    """Everything needed to load one model for inference, resolved to paths.

    ``model_name_or_path`` is the base (or a full / merged model); ``adapters`` are applied in
    order (all but the last merged, as training loads them); ``checkpoint`` is what the user
    chose (``None``: the run's final weights or the base model).
    """

    label: str                              # "demo @ checkpoint-12", shown in chat headers
    kind: str                               # "run" | "config" | "export"
    model_name_or_path: str
    adapters: tuple[str, ...] = ()
    finetuning_type: str = "lora"
    template: str | None = None
    default_system: str | None = None
    enable_thinking: bool | None = True
    infer_backend: str = "huggingface"
    infer_dtype: str = "auto"
    generation: GenConfig = field(default_factory=GenConfig)
    run_dir: Path | None = None
    config_path: Path | None = None
    checkpoint: Path | None = None
    checkpoint_step: int | None = None
    trust_remote_code: bool = False
    revision: str = "main"
    cache_dir: str | None = None
    cutoff_len: int = 2048
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def base_only(self) -> InferSpec:
        """The same run's base model, without adapters (side by side with a checkpoint)."""
        if self.finetuning_type != "lora":
            raise TunedeckError(f"{self.label}: a {self.finetuning_type} run has no separate base "
                                "model loaded with adapters; its base is model_name_or_path of the config")
        base = self.values.get("model_name_or_path") or self.model_name_or_path
        return dataclasses.replace(self, adapters=(), checkpoint=None, checkpoint_step=None,
                                   model_name_or_path=str(base),
                                   label=f"{Path(str(base)).name} (base)")


def resolve(target: str | Path, checkpoint: str | None = None,
            overrides: Iterable[str] | Mapping[str, Any] = ()) -> InferSpec:
    """A run / config file / export directory (+ checkpoint choice, + ``key=value`` overrides)
    -> :class:`InferSpec`. ``checkpoint``: ``N``, ``checkpoint-N``, ``latest``, ``base`` or a path.

    Raises :class:`RunNotFound` / :class:`ConfigError` / :class:`TunedeckError` with the fix.
    """
    from tunedeck.runner.config.yamlio import parse_overrides

    ov = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(list(overrides))
    t = Path(str(target)).expanduser()
    if t.is_file():
        return _from_config(t, checkpoint, ov, run_dir=None)
    if t.is_dir() and (t / "config.json").is_file() and not _is_run_dir(t):
        return _from_export(t, checkpoint, ov)
    from tunedeck.runner.rundir.runs import resolve_run

    try:
        run_dir = resolve_run(str(target))
    except RunNotFound:
        if t.suffix in (".yaml", ".yml", ".json"):
            raise ConfigError(f"{target}: no such config file") from None
        raise
    cfg = run_config_path(run_dir)
    if cfg is None:
        raise RunNotFound(f"{run_dir} has no config.yaml or training_args.yaml to tell which model it trained",
                          hint="pass the config file instead: tunedeck chat CONFIG --checkpoint PATH")
    return _from_config(cfg, checkpoint, ov, run_dir=run_dir)


def run_config_path(run_dir: Path) -> Path | None:
    """The run's frozen config: ``config.yaml``, else LLaMA Board's ``training_args.yaml``."""
    from tunedeck.runner.rundir.runs import config_path_of

    return config_path_of(run_dir)


def _is_run_dir(p: Path) -> bool:
    from tunedeck.runner.rundir.runs import is_run_dir

    return is_run_dir(p)


def _path_bases(config_path: Path, run_dir: Path | None) -> list[Path]:
    """Where a relative path in a config may be anchored: cwd, the launch cwd, the config's dir."""
    bases = [Path.cwd()]
    if run_dir is not None:
        from tunedeck.runner.rundir.runs import raw_manifest

        m = raw_manifest(run_dir) or {}
        if m.get("cwd"):
            bases.append(Path(str(m["cwd"])))
        if m.get("config_path"):
            bases.append(Path(str(m["config_path"])).parent)
    bases.append(config_path.parent)
    return bases


def _local(ref: str, bases: list[Path]) -> str:
    p = Path(ref).expanduser()
    if p.is_absolute():
        return str(p)
    for b in bases:
        if (b / p).exists():
            return str((b / p).resolve())
    return ref  # a hub id, or missing: the loader says so


def _from_config(cfg: Path, checkpoint: str | None, ov: dict[str, Any], *, run_dir: Path | None) -> InferSpec:
    from tunedeck.runner.config.yamlio import load_config, split_list

    values = load_config(cfg, ov).values()
    model = values.get("model_name_or_path")
    if not model:
        raise ConfigError("model_name_or_path is not set", file=cfg, key="model_name_or_path")
    bases = _path_bases(cfg, run_dir)
    model = _local(str(model), bases)
    ft = str(values.get("finetuning_type") or "lora")
    adapters = tuple(_local(a, bases) for a in split_list(values.get("adapter_name_or_path")))
    out_dir: Path | None = run_dir
    if out_dir is None and values.get("output_dir"):
        od = Path(_local(str(values["output_dir"]), bases))
        out_dir = od if od.is_dir() else None
    ck, step = _pick(out_dir, checkpoint, cfg)
    name = run_dir.name if run_dir is not None else cfg.stem
    if checkpoint == "base":
        if ft != "lora":
            raise TunedeckError(f"--checkpoint base: a {ft} run has no adapter to leave out; "
                                f"its base model is {model}")
        adapters, label = (), f"{Path(model).name} (base)"
    elif ck is None:
        label = f"{name} ({Path(adapters[-1]).name})" if adapters else name
    else:
        label = f"{name} (final)" if ck == out_dir else f"{name} @ {ck.name}"
        if ft == "lora":
            keep = adapters if _on(values, "create_new_adapter") else adapters[:-1]
            adapters = (*keep, str(ck))
        else:
            model, adapters = str(ck), ()
    if ck is not None and ft == "lora" and not any((ck / w).is_file() for w in _ADAPTER_WEIGHTS):
        if any((ck / w).is_file() for w in _FULL_WEIGHTS):
            model, adapters = str(ck), ()
        else:
            raise TunedeckError(f"{ck} holds neither adapter weights nor a model",
                                hint="`tunedeck checkpoints RUN` lists the complete checkpoints")
    return _spec(values, label=label, kind="run" if run_dir is not None else "config",
                 model=model, adapters=adapters, ft=ft, run_dir=run_dir, cfg=cfg, ck=ck, step=step)


def _on(values: Mapping[str, Any], key: str) -> bool:
    v = values.get(key)
    return v is True or (isinstance(v, str) and v.lower() == "true")


def _pick(out_dir: Path | None, spec: str | None, cfg: Path) -> tuple[Path | None, int | None]:
    """The checkpoint directory for ``spec`` (``None``: the final weights if the run saved
    them, else the newest complete checkpoint; neither: ``None`` -> the config's own model)."""
    from tunedeck.runner.rundir.checkpoints import (
        checkpoint_complete,
        checkpoint_step,
        latest_complete,
        scan_checkpoints,
    )

    if spec == "base":
        return None, None
    if spec is None:
        if out_dir is None:
            return None, None
        if any((out_dir / w).is_file() for w in _ADAPTER_WEIGHTS + _FULL_WEIGHTS):
            return out_dir, None
        info = latest_complete(out_dir)
        return (info.path, info.step) if info is not None else (None, None)
    s = str(spec).strip()
    if s == "latest":
        if out_dir is None:
            raise TunedeckError(f"{cfg}: --checkpoint latest needs the run's output_dir, which does not exist")
        info = latest_complete(out_dir)
        if info is None:
            raise TunedeckError(f"{out_dir} has no complete checkpoint yet",
                                hint="wait for the first save_steps, or chat with the base: --checkpoint base")
        return info.path, info.step
    if s.isdigit():
        s = f"{CHECKPOINT_PREFIX}{s}"
    if s.startswith(CHECKPOINT_PREFIX) and s[len(CHECKPOINT_PREFIX):].isdigit() and out_dir is not None:
        ck = out_dir / s
    else:
        ck = Path(s).expanduser().resolve()
    if not ck.is_dir():
        have = ", ".join(c.name for c in scan_checkpoints(out_dir)) if out_dir else ""
        raise TunedeckError(f"checkpoint {ck} does not exist",
                            hint=f"checkpoints: {have}" if have else "`tunedeck checkpoints RUN` lists them")
    step = checkpoint_step(ck.name)
    if step is not None and not checkpoint_complete(ck):
        raise TunedeckError(f"{ck} is incomplete (its weights or trainer_state.json are missing or cut)",
                            hint="pick a complete one: --checkpoint latest")
    return ck, step


def _from_export(d: Path, checkpoint: str | None, ov: dict[str, Any]) -> InferSpec:
    """A merged model directory (``tunedeck export`` output or any HF model folder)."""
    import json

    if checkpoint not in (None, "latest"):
        raise TunedeckError(f"{d} is a model directory, not a run: it has no checkpoints to choose")
    record: dict[str, Any] = {}
    if (d / EXPORT_RECORD).is_file():
        try:
            record = json.loads((d / EXPORT_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
    values: dict[str, Any] = {"model_name_or_path": str(d.resolve()),
                              "template": record.get("template"),
                              "default_system": record.get("default_system"),
                              "finetuning_type": "full", **ov}
    return _spec(values, label=d.name, kind="export", model=str(d.resolve()), adapters=(), ft="full",
                 run_dir=None, cfg=None, ck=None, step=None)


def _spec(values: dict[str, Any], *, label: str, kind: str, model: str, adapters: tuple[str, ...],
          ft: str, run_dir: Path | None, cfg: Path | None, ck: Path | None, step: int | None) -> InferSpec:
    from tunedeck.runner.config.schema import PARAMS
    from tunedeck.runner.config.validate import check_value

    for key in ("infer_backend", "infer_dtype", *GENERATION_KEYS):
        if key in values and values[key] is not None:
            problem = check_value(key, values[key])
            if problem:
                raise ConfigError(problem, file=cfg, key=key)
    if adapters and ft != "lora":
        raise ConfigError("adapters need finetuning_type: lora", file=cfg, key="adapter_name_or_path")
    enable_thinking = values.get("enable_thinking", True)
    return InferSpec(
        label=label,
        kind=kind,
        model_name_or_path=model,
        adapters=adapters,
        finetuning_type=ft,
        template=values.get("template") or None,
        default_system=values.get("default_system"),
        enable_thinking=None if enable_thinking is None else bool(enable_thinking),
        infer_backend=str(values.get("infer_backend") or PARAMS["infer_backend"].default),
        infer_dtype=str(values.get("infer_dtype") or PARAMS["infer_dtype"].default),
        generation=GenConfig.from_values(values),
        run_dir=run_dir,
        config_path=cfg,
        checkpoint=ck,
        checkpoint_step=step,
        trust_remote_code=bool(values.get("trust_remote_code", False)),
        revision=str(values.get("model_revision") or "main"),
        cache_dir=values.get("cache_dir"),
        cutoff_len=int(values.get("cutoff_len") or 2048),
        values=dict(values),
    )
