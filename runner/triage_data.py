"""Data facts for triage: example lengths (for a shorter ``cutoff_len``) and a sample.

Datasets are resolved through ``dataset_dir/dataset_info.json`` and rendered
through the chat template with :mod:`tunedeck.runner.data.dataset_info`,
:mod:`tunedeck.runner.data.converters` and :mod:`tunedeck.runner.data.templates` (pure Python);
if those ever start importing torch, this falls back to the raw records. Token
counts come from the model's ``tokenizer.json`` through the ``tokenizers``
library when the model is local, else characters / 4; the result says which.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tunedeck.runner.config.yamlio import split_list
from tunedeck.runner.errors import TunedeckError
from tunedeck.runner.fsutil import read_json

MAX_RECORDS = 20_000            # per dataset: enough for a percentile, cheap to read
MAX_JSON_BYTES = 256 * 1024**2  # do not parse a multi-GB .json array for advice



@dataclass(frozen=True)
class LengthStats:
    """Approximate token lengths of the training examples."""

    lengths: tuple[int, ...]        # sorted ascending
    method: str                     # how tokens were counted
    datasets: tuple[str, ...]
    sampled: bool                   # True when only the first MAX_RECORDS were read
    problems: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.lengths)

    def over(self, cutoff: int) -> int:
        """How many examples are longer than ``cutoff`` tokens (would be truncated)."""
        return self.count - bisect.bisect_right(self.lengths, cutoff)

    def percentile(self, q: float) -> int:
        if not self.lengths:
            return 0
        idx = min(self.count - 1, max(0, math.ceil(q / 100 * self.count) - 1))
        return self.lengths[idx]


def _data_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(dataset_info, converters, templates): the torch-free data modules (the import-boundary
    test keeps them so), the same code the trainer reads the data with."""
    from tunedeck.runner.data import converters, dataset_info, templates

    return dataset_info, converters, templates


def _resolve_dir(raw: Any, config_dir: Path | None, default: str) -> Path:
    p = Path(str(raw or default)).expanduser()
    if p.is_absolute() or p.exists() or config_dir is None:
        return p
    alt = config_dir / p
    return alt if alt.exists() else p


def _load_records(path: Path, limit: int) -> tuple[list[Any], bool]:
    """Records of a .json (array) or .jsonl file; (records, truncated)."""
    if path.suffix == ".jsonl":
        out: list[Any] = []
        with path.open("rb") as fh:
            for raw in fh:
                if len(out) >= limit:
                    return out, True
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    continue
        return out, False
    if path.stat().st_size > MAX_JSON_BYTES:
        return [], True
    data = read_json(path)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return [], False
    return data[:limit], len(data) > limit


@dataclass(frozen=True)
class _Source:
    name: str
    path: Path
    attr: Any            # tunedeck.runner.data.dataset_info.DatasetAttr, or None in the fallback


def _sources(values: Mapping[str, Any], config_dir: Path | None, mods: Any
             ) -> tuple[list[_Source], list[str]]:
    names = split_list(values.get("dataset"))
    if not names:
        return [], ["no dataset in the config"]
    ddir = _resolve_dir(values.get("dataset_dir"), config_dir, "data")
    problems: list[str] = []
    found: list[tuple[str, Path | None, Any]] = []
    if mods is not None:
        try:
            attrs = mods[0].resolve_datasets(names, ddir)
        except TunedeckError as exc:
            return [], [str(exc)]
        found = [(a.name, a.path, a) for a in attrs]
    else:
        info = read_json(ddir / "dataset_info.json")
        if not isinstance(info, dict):
            return [], [f"no readable dataset_info.json in {ddir}"]
        for n in names:
            e = info.get(n)
            fn = e.get("file_name") if isinstance(e, dict) else None
            found.append((n, (ddir / str(fn)) if fn else None, None))
    out = []
    for name, path, attr in found:
        if path is None:
            problems.append(f"{name}: not a local file dataset")
            continue
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
            path = files[0] if files else path
        if not path.is_file() or path.suffix not in (".json", ".jsonl"):
            problems.append(f"{name}: {path} is not a local .json/.jsonl file")
            continue
        out.append(_Source(name, path, attr))
    return out, problems


def _renderer(values: Mapping[str, Any], mods: Any) -> Callable[[Any, Any], str | None] | None:
    """record, attr -> the text the template makes of it (None: invalid example)."""
    if mods is None:
        return None
    _, converters, templates = mods
    try:
        tpl = templates.get_template(values.get("template") or None)
    except TunedeckError:
        return None

    def render(rec: Any, attr: Any) -> str | None:
        if not isinstance(rec, Mapping):
            return None
        row = converters.get_converter(attr)(rec)
        prompt, response = row.get("_prompt") or [], row.get("_response") or []
        if not prompt or not response:
            return None   # LLaMA-Factory drops these ("Dropped invalid example")
        try:
            pairs = tpl.render_messages([*prompt, response[0]], row.get("_system") or None,
                                        row.get("_tools") or None)
        except (TunedeckError, ValueError, KeyError, TypeError):
            return None
        return "".join(p + a for p, a in pairs)

    return render


def _strings(obj: Any) -> str:
    """Every string inside a record, joined (fallback length without a template)."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, Mapping):
        return "\n".join(_strings(v) for v in obj.values())
    if isinstance(obj, list):
        return "\n".join(_strings(v) for v in obj)
    return ""


def _token_counter(values: Mapping[str, Any], config_dir: Path | None
                   ) -> tuple[Callable[[list[str]], list[int]], str]:
    """(count_fn, method): the model's tokenizer.json when local, else chars/4."""
    model = values.get("model_name_or_path")
    if model:
        tj = _resolve_dir(model, config_dir, str(model)) / "tokenizer.json"
        if tj.is_file():
            try:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(tj))

                def count(texts: list[str]) -> list[int]:
                    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]

                return count, f"the model's tokenizer.json ({tj})"
            except Exception:   # a tokenizer we cannot load is not worth failing triage over
                pass

    def approx(texts: list[str]) -> list[int]:
        return [max(1, math.ceil(len(s) / 4)) for s in texts]

    return approx, "characters / 4 (no local tokenizer.json)"


def dataset_lengths(values: Mapping[str, Any], config_dir: Path | None = None,
                    *, limit: int = MAX_RECORDS) -> LengthStats | None:
    """Token length of each training example as the template renders it; None without data."""
    mods = _data_modules()
    sources, problems = _sources(values, config_dir, mods)
    if not sources:
        return None
    count, method = _token_counter(values, config_dir)
    render = _renderer(values, mods)
    if render is None:
        method += ", raw record text (no template rendering)"
    else:
        method += f", rendered through template {values.get('template') or '(default)'}"
    max_samples = values.get("max_samples")
    per_ds = min(limit, max_samples) if isinstance(max_samples, int) and max_samples > 0 else limit
    lengths: list[int] = []
    sampled = False
    used = []
    for src in sources:
        try:
            recs, truncated = _load_records(src.path, per_ds)
        except OSError as exc:
            problems.append(f"{src.name}: {exc.strerror}")
            continue
        sampled = sampled or (truncated and per_ds == limit)
        texts = []
        for rec in recs:
            text = render(rec, src.attr) if render is not None else _strings(rec)
            if text:
                texts.append(text)
        if not texts:
            problems.append(f"{src.name}: no usable records in {src.path}")
            continue
        used.append(src.name)
        lengths.extend(count(texts))
    if not lengths:
        return None
    return LengthStats(tuple(sorted(lengths)), method, tuple(used), sampled, tuple(problems))


def render_sample(values: Mapping[str, Any], config_dir: Path | None = None,
                  *, max_chars: int = 1200) -> tuple[str, str] | None:
    """The first training example as the model will see it: (text, how it was made).

    Rendered through the config's template when the data modules are importable
    without torch; else the raw record as JSON, so a wrong column mapping still shows.
    """
    mods = _data_modules()
    sources, _ = _sources(values, config_dir, mods)
    render = _renderer(values, mods)
    for src in sources:
        try:
            recs, _ = _load_records(src.path, 1)
        except OSError:
            continue
        if not recs:
            continue
        rec = recs[0]
        text = render(rec, src.attr) if render is not None else None
        if text:
            how = (f"{src.name}, first record, rendered through template "
                   f"{values.get('template') or '(default)'}")
        elif render is not None:
            how = (f"{src.name}, first record: the template made NOTHING of it (wrong "
                   "formatting/columns in dataset_info.json?); raw JSON")
            text = json.dumps(rec, ensure_ascii=False, indent=1)
        else:
            how = f"{src.name}, first record (raw JSON: template rendering not available)"
            text = json.dumps(rec, ensure_ascii=False, indent=1)
        if len(text) > max_chars:
            text = text[:max_chars] + f"... [{len(text) - max_chars} more chars]"
        return text, how
    return None
