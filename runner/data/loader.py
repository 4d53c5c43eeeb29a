"""Build the training/eval datasets and collator for a config: the data entry point.

Order (LLaMA-Factory's ``get_dataset``): load each dataset (``num_samples``, then
``max_samples`` per dataset) -> align to canonical rows -> mix (``mix_strategy``) -> split
off ``val_size`` *before* tokenization, with the training seed -> tokenize each split with the
stage's processor -> (non-streaming) store in the tokenized cache.

Tokenized cache
    ``<cache_dir>/tokenized/<key>/`` where ``cache_dir`` is the argument, else
    ``$TUNEDECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/tunedeck`` (``~/.cache/tunedeck``).
    It lives outside run directories on purpose: runs over the same data share it. The key
    hashes the data files (path, size, mtime), the data-relevant config keys
    (:data:`tunedeck.runner.data.args.CACHE_KEYS`), the stage and seed, the tokenizer (its files or
    its serialized state) and this package's preprocessing code, so editing any of them
    rebuilds. ``overwrite_cache: true`` rebuilds and replaces the entry. When ``cache_dir``
    is given, ``datasets``' own download/arrow cache goes to ``<cache_dir>/hf_datasets``.
``tokenized_path``
    As in LLaMA-Factory: if the folder exists it is loaded and the dataset keys are ignored;
    otherwise the tokenized splits are saved there (training then continues; LLaMA-Factory
    exits instead).
Streaming
    Returns ``IterableDataset`` s, never cached; ``num_train_examples`` is None.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, Features, IterableDataset, Value

from tunedeck.runner.data.args import MIX_STRATEGIES, DataArgs
from tunedeck.runner.data.converters import get_converter
from tunedeck.runner.data.dataset_info import DatasetAttr, resolve_datasets
from tunedeck.runner.data.processors import get_processor
from tunedeck.runner.data.templates import Template, get_template
from tunedeck.runner.errors import ConfigError, TunedeckError
from tunedeck.runner.fsutil import atomic_write_json, ensure_dir, read_json

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
FILEEXT2TYPE = {
    "arrow": "arrow",
    "csv": "csv",
    "json": "json",
    "jsonl": "json",
    "parquet": "parquet",
    "txt": "text",
}
_MESSAGES = datasets.List({"role": Value("string"), "content": Value("string")})
CANONICAL_FEATURES = Features(
    {
        "_prompt": _MESSAGES,
        "_response": _MESSAGES,
        "_system": Value("string"),
        "_tools": Value("string"),
        "_kto_tag": Value("bool"),
    }
)
_STAT_COLUMNS = ("_n_src", "_n_trunc", "_n_tok")
STATS_FILE = "tunedeck_stats.json"


@dataclass
class DataBundle:
    """Everything the trainer needs from the data side.

    ``eval_dataset`` is a dict (name -> dataset) with ``eval_on_each_dataset``.
    ``stats``: ``source`` (built / cache / tokenized_path / streaming), ``cache_path``,
    ``added_tokens`` (non-empty: resize the model's embeddings), ``train`` / ``eval`` split
    stats (``examples`` read, ``rows`` out, ``dropped``, ``truncated``, ``tokens``,
    ``packing_efficiency`` = real tokens / packed slots, ``examples_per_row``) and, for the
    train split, the same numbers flattened as ``dropped_examples``, ``truncated_examples``,
    ``packed_ratio`` (= packing_efficiency).
    """

    train_dataset: Dataset | IterableDataset | None
    eval_dataset: Dataset | IterableDataset | dict[str, Dataset | IterableDataset] | None
    data_collator: Any
    template: Template
    num_train_examples: int | None
    stats: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# paths and fingerprints


def default_cache_root() -> Path:
    env = os.environ.get("TUNEDECK_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tunedeck"


def resolve_dataset_dir(dataset_dir: str, config_dir: Path | None) -> str:
    """A relative ``dataset_dir`` is looked up from the working directory (as LLaMA-Factory
    does), then next to the config file."""
    if dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        return dataset_dir
    p = Path(dataset_dir).expanduser()
    if p.is_absolute() or p.exists() or config_dir is None:
        return str(p)
    alt = Path(config_dir) / p
    return str(alt if alt.exists() else p)


def _data_files(attr: DatasetAttr) -> list[Path]:
    path = attr.path
    if path is None:
        return []
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
    return [path] if path.is_file() else []


def _file_stamp(files: list[Path]) -> list[tuple[str, int, int]]:
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(f), -1, -1))
    return out


_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
    "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
)  # fmt: skip


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides token ids: the tokenizer's files when it was loaded from a local
    folder, else its serialized backend; plus special tokens, chat template and size."""
    h = hashlib.sha256()
    src = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    found = False
    if str(src) and src.is_dir():
        for name in _TOKENIZER_FILES:
            f = src / name
            if f.is_file():
                found = True
                h.update(name.encode())
                h.update(f.read_bytes())
    if not found:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "to_str"):
            h.update(backend.to_str().encode())
        else:
            h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    extra = {
        "class": type(tokenizer).__name__,
        "len": len(tokenizer),
        "bos": getattr(tokenizer, "bos_token", None),
        "eos": getattr(tokenizer, "eos_token", None),
        "pad": getattr(tokenizer, "pad_token", None),
        "add_bos": bool(getattr(tokenizer, "add_bos_token", False)),
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _code_fingerprint() -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in ("args.py", "converters.py", "processors.py", "templates.py", "loader.py"):
        with contextlib.suppress(OSError):
            h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def cache_key(
    args: DataArgs, attrs: list[DatasetAttr], tokenizer: Any, seed: int
) -> tuple[str, dict[str, Any]]:
    """``(hex key, the inputs hashed)`` for the tokenized cache."""
    inputs = {
        "format": CACHE_FORMAT,
        "code": _code_fingerprint(),
        "seed": seed,
        "args": args.cache_fields(),
        "datasets": [
            {
                "name": a.name,
                "load_from": a.load_from,
                "source": a.file_name,
                "formatting": a.formatting,
                "ranking": a.ranking,
                "columns": a.columns,
                "tags": a.tags,
                "split": a.split,
                "num_samples": a.num_samples,
                "subset": a.subset,
                "files": _file_stamp(_data_files(a)),
            }
            for a in attrs
        ],
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32], inputs


# ---------------------------------------------------------------------------------------------
# loading and aligning


def _map_kwargs(ds: Any, args: DataArgs, desc: str) -> dict[str, Any]:
    if isinstance(ds, IterableDataset):
        return {}
    return {
        "num_proc": args.preprocessing_num_workers,
        "load_from_cache_file": not args.overwrite_cache,
        "desc": desc,
    }


def _column_names(ds: Any) -> list[str]:
    names = ds.column_names
    if names is None:  # streaming without known features
        first = next(iter(ds), None)
        names = list(first.keys()) if first else []
    return list(names)


def load_single_dataset(
    attr: DatasetAttr, args: DataArgs, seed: int, hf_cache: str | None
) -> Dataset | IterableDataset:
    """Load one dataset entry and align it to canonical rows (``CANONICAL_FEATURES``)."""
    where: dict[str, Any] = {"file": attr.info_file, "line": attr.line}
    if attr.load_from == "file":
        files = _data_files(attr)
        if not files:
            raise ConfigError(
                f"dataset {attr.name!r}: file {str(attr.path)!r} not found",
                **where,
                hint="`file_name` is relative to the dataset_dir that holds dataset_info.json",
            )
        exts = {f.name.rsplit(".", 1)[-1].lower() for f in files}
        builders = {FILEEXT2TYPE.get(e) for e in exts}
        if len(builders) != 1 or None in builders:
            raise ConfigError(
                f"dataset {attr.name!r}: unsupported or mixed file types {sorted(exts)}",
                **where,
                hint=f"one of {', '.join(sorted(FILEEXT2TYPE))} per dataset",
            )
        builder = builders.pop()
        assert builder is not None
        try:
            ds = datasets.load_dataset(
                builder,
                data_files=[str(f) for f in files],
                split="train",
                cache_dir=hf_cache,
                streaming=args.streaming,
            )
        except Exception as exc:  # datasets raises many types; the user needs the file and cause
            cause = exc.__cause__ or exc
            raise TunedeckError(
                f"dataset {attr.name!r}: cannot read {', '.join(f.name for f in files)}: "
                f"{type(cause).__name__}: {str(cause)[:300]}",
                hint=f"check the file format ({builder}); entry at {attr.info_file}:{attr.line}",
            ) from exc
    elif attr.load_from == "hf_hub":
        try:
            ds = datasets.load_dataset(
                attr.file_name or attr.name,
                name=attr.subset,
                data_dir=attr.folder,
                split=attr.split,
                cache_dir=hf_cache,
                streaming=args.streaming,
            )
        except Exception as exc:
            raise TunedeckError(
                f"dataset {attr.name!r}: cannot load {attr.file_name!r} from the Hugging Face hub "
                f"({type(exc).__name__}: {str(exc)[:200]})",
                hint="offline machines need a local copy: download it elsewhere and use `file_name`",
            ) from exc
    else:
        raise ConfigError(
            f"dataset {attr.name!r}: loading from {attr.load_from} is not supported by tunedeck",
            **where,
            hint="use a local `file_name` (json, jsonl, csv, parquet, arrow, txt)",
        )

    if not args.streaming:
        assert isinstance(ds, Dataset)
        if attr.num_samples is not None:
            import numpy as np

            rng = np.random.default_rng(seed)
            target = attr.num_samples
            idx = rng.permutation(len(ds))[:target]
            if target > len(idx):  # sample with replacement beyond one pass
                idx = np.concatenate([idx, rng.choice(len(ds), target - len(idx))])
            ds = ds.select(idx.tolist())
        if args.max_samples is not None:
            ds = ds.select(range(min(args.max_samples, len(ds))))

    return ds.map(
        get_converter(attr),
        batched=False,
        remove_columns=_column_names(ds),
        features=CANONICAL_FEATURES,
        **_map_kwargs(ds, args, f"Converting format of dataset {attr.name}"),
    )


def merge_datasets(
    parts: list[Any], args: DataArgs, seed: int, *, probs: tuple[float, ...] | None = None, concat: bool = False
) -> Any:
    if len(parts) == 1:
        return parts[0]
    if concat or args.mix_strategy == "concat":
        if args.streaming:
            log.warning("The samples between different datasets will not be mixed in streaming mode.")
        return datasets.concatenate_datasets(parts)
    if not args.streaming:
        log.warning("We recommend using `mix_strategy=concat` in non-streaming mode.")
    return datasets.interleave_datasets(
        parts,
        probabilities=list(probs) if probs else None,
        seed=seed,
        stopping_strategy=MIX_STRATEGIES[args.mix_strategy],  # type: ignore[arg-type]
    )


def split_train_eval(train: Any, eval_: Any, args: DataArgs, seed: int) -> dict[str, Any]:
    """LLaMA-Factory's ``split_dataset``: ``validation`` from ``val_size`` (a fraction, or a
    count when >= 1), else from ``eval_dataset``; ``validation_<name>`` per eval dataset."""
    out: dict[str, Any] = {}
    if train is not None:
        if args.streaming:
            train = train.shuffle(buffer_size=args.buffer_size, seed=seed)
        if args.val_size > 1e-6:
            if args.streaming:
                out["validation"] = train.take(int(args.val_size))
                out["train"] = train.skip(int(args.val_size))
            else:
                size: float | int = int(args.val_size) if args.val_is_count else args.val_size
                if args.val_is_count and size >= len(train):
                    raise ConfigError(
                        f"val_size {int(size)} leaves no training examples ({len(train)} loaded)",
                        key="val_size",
                    )
                parts = train.train_test_split(test_size=size, seed=seed)
                out["train"], out["validation"] = parts["train"], parts["test"]
        else:
            out["train"] = train
    if eval_ is not None:
        if isinstance(eval_, dict):
            out.update({f"validation_{name}": d for name, d in eval_.items()})
        else:
            if args.streaming:
                eval_ = eval_.shuffle(buffer_size=args.buffer_size, seed=seed)
            out["validation"] = eval_
    return out


# ---------------------------------------------------------------------------------------------
# tokenizing


def _preprocess(ds: Any, template: Template, tokenizer: Any, args: DataArgs, name: str) -> tuple[Any, dict[str, Any]]:
    processor = get_processor(template, tokenizer, args)
    kwargs = _map_kwargs(ds, args, f"Running tokenizer on {name} dataset")
    n_in = None if isinstance(ds, IterableDataset) else len(ds)
    out = ds.map(
        processor,
        batched=True,
        batch_size=args.preprocessing_batch_size,
        remove_columns=list(CANONICAL_FEATURES),
        **kwargs,
    )
    if isinstance(out, IterableDataset):
        return out.remove_columns([c for c in _STAT_COLUMNS if c in (_column_names(out))]), {}
    stats = _split_stats(out, n_in, args)
    out = out.remove_columns([c for c in _STAT_COLUMNS if c in out.column_names])
    return out, stats


def _split_stats(ds: Dataset, n_in: int | None, args: DataArgs) -> dict[str, Any]:
    cols = set(ds.column_names)
    n_src = int(sum(ds["_n_src"])) if "_n_src" in cols else len(ds)
    truncated = int(sum(ds["_n_trunc"])) if "_n_trunc" in cols else 0
    tokens = int(sum(ds["_n_tok"])) if "_n_tok" in cols else None
    stats: dict[str, Any] = {
        "examples": n_in,
        "rows": len(ds),
        "dropped": (n_in - n_src) if n_in is not None else None,
        "truncated": truncated,
        "tokens": tokens,
        "packing_efficiency": None,
        "examples_per_row": round(n_src / len(ds), 4) if len(ds) else None,
    }
    if args.packing and tokens is not None and len(ds):
        stats["packing_efficiency"] = round(tokens / (len(ds) * args.cutoff_len), 4)
    if stats["dropped"]:
        log.warning("Dropped %d invalid or over-long example(s) of %d.", stats["dropped"], n_in)
    return stats


def _encode_splits(
    splits: dict[str, Any], template: Template, tokenizer: Any, args: DataArgs
) -> tuple[dict[str, Any], dict[str, Any]]:
    out, stats = {}, {}
    for name, ds in splits.items():
        out[name], stats[name] = _preprocess(ds, template, tokenizer, args, name)
    return out, stats


# ---------------------------------------------------------------------------------------------
# the entry point


def _compute_dtype(values: dict[str, Any]) -> Any:
    import torch

    if values.get("pure_bf16") or values.get("bf16"):
        return torch.bfloat16
    if values.get("fp16"):
        return torch.float16
    return torch.float32


def attn_implementation(flash_attn: str) -> str:
    """LLaMA-Factory's ``flash_attn`` choice -> transformers' ``attn_implementation``."""
    return {
        "disabled": "eager",
        "eager": "eager",
        "sdpa": "sdpa",
        "fa2": "flash_attention_2",
        "fa3": "flash_attention_3",
    }.get(flash_attn, "sdpa")


def make_collator(
    stage: str,
    tokenizer: Any,
    args: DataArgs,
    *,
    dtype: Any = None,
    attn_impl: str | None = None,
    pad_to_multiple_of: int | None = 8,
) -> Any:
    """The collator for ``stage``; None for rm/dpo/kto (trl brings its own)."""
    from tunedeck.runner.data.collators import PTCollator, SFTCollator

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if stage == "sft":
        import torch

        return SFTCollator(
            pad_token_id=pad_id,
            pad_to_multiple_of=pad_to_multiple_of,
            block_diag_attn=args.neat_packing,
            attn_implementation=attn_impl or attn_implementation(args.flash_attn),
            dtype=dtype or torch.float32,
        )
    if stage == "pt":
        return PTCollator(pad_token_id=pad_id, pad_to_multiple_of=pad_to_multiple_of)
    return None


def _call_mpf(main_process_first: Callable[..., Any] | None, desc: str) -> Any:
    if main_process_first is None:
        return contextlib.nullcontext()
    try:
        return main_process_first(desc=desc)
    except TypeError:
        return main_process_first()


def _bundle_from_splits(
    splits: dict[str, Any], args: DataArgs, template: Template, collator: Any, stats: dict[str, Any]
) -> DataBundle:
    train = splits.get("train")
    evals = {k: v for k, v in splits.items() if k.startswith("validation")}
    eval_ds: Any
    if not evals:
        eval_ds = None
    elif list(evals) == ["validation"]:
        eval_ds = evals["validation"]
    else:
        eval_ds = {k.removeprefix("validation_"): v for k, v in evals.items()}
    tr = stats.get("train") or {}
    stats.setdefault("dropped_examples", tr.get("dropped"))
    stats.setdefault("truncated_examples", tr.get("truncated"))
    stats.setdefault("packed_ratio", tr.get("packing_efficiency"))
    return DataBundle(
        train_dataset=train,
        eval_dataset=eval_ds,
        data_collator=collator,
        template=template,
        num_train_examples=None if (train is None or args.streaming) else len(train),
        stats=stats,
    )


def _split_stats_only(stats: dict[str, Any]) -> dict[str, Any]:
    tr = stats.get("train")
    ev = {k: v for k, v in stats.items() if k.startswith("validation")}
    out: dict[str, Any] = {"train": tr}
    if ev:
        out["eval"] = ev["validation"] if list(ev) == ["validation"] else ev
    return out


def build_datasets(
    values: dict[str, Any],
    tokenizer: Any,
    *,
    stage: str,
    seed: int,
    config_dir: Path | None = None,
    cache_dir: Path | None = None,
    main_process_first: Callable[..., Any] | None = None,
) -> DataBundle:
    """Load, mix, split and tokenize the config's datasets; see the module docstring.

    ``tokenizer`` is fixed up in place as LLaMA-Factory does (pad := eos when missing;
    ``replace_eos`` templates make their stop word the eos): ``stats["added_tokens"]`` lists
    tokens that were added, in which case the model's embeddings must be resized.
    ``main_process_first`` is ``TrainingArguments.main_process_first`` under distributed
    training, so rank 0 builds (and caches) while the others wait, then read the cache.
    """
    args = DataArgs.from_values(values, stage)
    template = get_template(args.template, tokenizer).with_options(
        default_system=args.default_system, enable_thinking=args.enable_thinking
    )
    added = template.fix_special_tokens(tokenizer)
    if added:
        log.warning("New tokens have been added to the tokenizer (%s): resize the embeddings.", added)
    collator = make_collator(stage, tokenizer, args, dtype=_compute_dtype(values) if stage == "sft" else None)
    base_stats: dict[str, Any] = {"added_tokens": added, "cache_path": None}

    # tokenized_path: a saved DatasetDict replaces the whole pipeline.
    tpath = Path(args.tokenized_path).expanduser() if args.tokenized_path else None
    if tpath is not None and (tpath / "dataset_dict.json").is_file():
        log.warning("Loading the tokenized dataset from %s; the dataset keys are ignored.", tpath)
        dd = datasets.load_from_disk(str(tpath))
        saved = read_json(tpath / STATS_FILE) or {}
        stats = {**base_stats, **saved, "source": "tokenized_path"}
        return _bundle_from_splits(dict(dd), args, template, collator, stats)

    dataset_dir = resolve_dataset_dir(args.dataset_dir, config_dir)
    train_attrs = resolve_datasets(list(args.dataset), dataset_dir, key="dataset")
    eval_attrs = resolve_datasets(list(args.eval_dataset), dataset_dir, key="eval_dataset")
    for a in (*train_attrs, *eval_attrs):
        if stage in ("rm", "dpo") and not a.ranking:
            raise ConfigError(
                f"dataset {a.name!r} is not a ranking dataset, but stage {stage} needs chosen/rejected pairs",
                key="dataset",
                hint=f'set "ranking": true in its dataset_info.json entry ({a.info_file}:{a.line})',
            )
        if stage in ("sft", "pt", "kto") and a.ranking:
            raise ConfigError(
                f"dataset {a.name!r} is a ranking dataset; stage {stage} cannot use it",
                key="dataset",
                hint="use stage dpo or rm, or a non-ranking dataset",
            )

    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    hf_cache = str(root / "hf_datasets") if cache_dir is not None else None

    if args.streaming:
        splits = _load_and_split(train_attrs, eval_attrs, args, seed, hf_cache)
        splits, _ = _encode_splits(splits, template, tokenizer, args)
        return _bundle_from_splits(splits, args, template, collator, {**base_stats, "source": "streaming"})

    key, key_inputs = cache_key(args, [*train_attrs, *eval_attrs], tokenizer, seed)
    entry = root / "tokenized" / key
    with _call_mpf(main_process_first, "tokenize dataset"):
        if entry.is_dir() and (entry / "meta.json").is_file() and not args.overwrite_cache:
            meta = read_json(entry / "meta.json") or {}
            dd = datasets.load_from_disk(str(entry / "data"))
            splits = dict(dd)
            stats = {**base_stats, **meta.get("stats", {}), "source": "cache", "cache_path": str(entry)}
        else:
            splits = _load_and_split(train_attrs, eval_attrs, args, seed, hf_cache)
            splits, split_stats = _encode_splits(splits, template, tokenizer, args)
            stats = {**base_stats, **_split_stats_only(split_stats), "source": "built"}
            stats["cache_path"] = str(_store(entry, splits, stats, key_inputs, replace=args.overwrite_cache))
            # Serve the cached copy, so every rank reads the same memory-mapped files.
            splits = dict(datasets.load_from_disk(str(entry / "data")))
        if tpath is not None and not (tpath / "dataset_dict.json").is_file():
            _save_tokenized(tpath, splits, stats)
    return _bundle_from_splits(splits, args, template, collator, stats)


def _load_and_split(
    train_attrs: list[DatasetAttr], eval_attrs: list[DatasetAttr], args: DataArgs, seed: int, hf_cache: str | None
) -> dict[str, Any]:
    train_parts = [load_single_dataset(a, args, seed, hf_cache) for a in train_attrs]
    train = merge_datasets(train_parts, args, seed, probs=args.interleave_probs) if train_parts else None
    eval_: Any = None
    if eval_attrs:
        eval_parts = [load_single_dataset(a, args, seed, hf_cache) for a in eval_attrs]
        if args.eval_on_each_dataset:
            eval_ = {a.name: d for a, d in zip(eval_attrs, eval_parts, strict=True)}
        else:
            # Eval sets are concatenated whatever the mix strategy: interleaving would drop rows.
            eval_ = merge_datasets(eval_parts, args, seed, concat=True)
    return split_train_eval(train, eval_, args, seed)


def _store(entry: Path, splits: dict[str, Any], stats: dict[str, Any], key_inputs: dict[str, Any],
           *, replace: bool = False) -> Path:
    """Write the cache entry atomically: build in a temp folder, then rename into place.

    An entry that appeared meanwhile (another run with the same inputs) is kept unless
    ``replace`` (``overwrite_cache``): other runs may be reading its files right now.
    """
    parent = ensure_dir(entry.parent)
    tmp = parent / f".tmp-{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        DatasetDict(splits).save_to_disk(str(tmp / "data"))
        meta = {"created": time.time(), "stats": {k: v for k, v in stats.items() if k != "cache_path"},
                "inputs": key_inputs}
        atomic_write_json(tmp / "meta.json", meta)
        if entry.exists():
            if not replace:
                return entry  # same key, same data; ours is dropped below
            # overwrite_cache: move the old entry away, then delete it
            old = parent / f".old-{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
            entry.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(entry)
        except OSError as exc:
            # Another run with the same inputs stored this key between our check and our
            # rename (runs launched together on one dataset): same key, same data; use theirs.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (entry / "meta.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _save_tokenized(path: Path, splits: dict[str, Any], stats: dict[str, Any]) -> None:
    ensure_dir(path.parent)
    DatasetDict(splits).save_to_disk(str(path))
    atomic_write_json(path / STATS_FILE, {k: v for k, v in stats.items() if k != "cache_path"})
    log.warning("Tokenized dataset saved at %s; later runs can set `tokenized_path` to reuse it.", path)


def iter_rendered_examples(bundle: DataBundle, tokenizer: Any, n: int = 3) -> Iterator[str]:
    """Decoded training rows (for previews and triage): input text with the labelled spans."""
    ds = bundle.train_dataset
    if ds is None:
        return
    for i, row in enumerate(ds):
        if i >= n:
            break
        if "input_ids" in row:
            yield tokenizer.decode(row["input_ids"], skip_special_tokens=False)
        else:
            yield json.dumps({k: row[k] for k in row if isinstance(row[k], (str, bool))}, ensure_ascii=False)
