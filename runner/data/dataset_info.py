"""``dataset_info.json`` in LLaMA-Factory's format: parse, check, resolve names.

No heavy imports: the validator uses :func:`load_dataset_info` and
:func:`resolve_datasets` on the control path. Errors are :class:`ConfigError` carrying
the file and the line of the offending entry.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunedeck.runner.errors import ConfigError

DATA_CONFIG = "dataset_info.json"
FORMATTINGS = ("alpaca", "sharegpt", "openai")
LoadFrom = Literal["file", "hf_hub", "ms_hub", "om_hub", "script", "cloud_file"]
# The entry key that names the data, first match wins (LLaMA-Factory's order), and where it loads from.
_SOURCE_KEYS: dict[str, LoadFrom] = {
    "hf_hub_url": "hf_hub",
    "ms_hub_url": "ms_hub",
    "om_hub_url": "om_hub",
    "script_url": "script",
    "cloud_file_name": "cloud_file",
    "file_name": "file",
}

# Column roles LLaMA-Factory knows (`columns` in an entry) and their defaults per format.
COLUMN_NAMES = (
    "prompt", "query", "response", "history", "messages", "system", "tools",
    "images", "videos", "audios", "chosen", "rejected", "kto_tag",
)  # fmt: skip
TAG_NAMES = (
    "role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag",
    "system_tag",
)  # fmt: skip
_ENTRY_KEYS = frozenset(
    {
        "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "file_name",
        "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags",
        "file_sha1",  # legacy LLaMA-Factory key, ignored
    }
)  # fmt: skip

_ALPACA_COLUMNS: dict[str, str | None] = {
    "prompt": "instruction", "query": "input", "response": "output", "history": None,
    "messages": "conversations", "system": None, "tools": None, "images": None, "videos": None,
    "audios": None, "chosen": None, "rejected": None, "kto_tag": None,
}  # fmt: skip
_SHAREGPT_TAGS: dict[str, str | None] = {
    "role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
    "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system",
}  # fmt: skip
_OPENAI_TAGS: dict[str, str | None] = {
    "role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
    "observation_tag": "tool", "function_tag": "function", "system_tag": "system",
}  # fmt: skip


@dataclass(frozen=True)
class DatasetAttr:
    """One resolved dataset entry. ``columns``/``tags`` hold every role with defaults filled in."""

    name: str
    load_from: LoadFrom = "file"
    file_name: str | None = None      # file or folder under dataset_dir, or the hub id / script
    formatting: str = "alpaca"
    ranking: bool = False
    columns: dict[str, str | None] = field(default_factory=dict, hash=False)
    tags: dict[str, str | None] = field(default_factory=dict, hash=False)
    split: str = "train"
    num_samples: int | None = None
    subset: str | None = None
    folder: str | None = None
    dataset_dir: str | None = None    # where dataset_info.json lives (files are relative to it)
    info_file: str | None = None
    line: int | None = None           # line of the entry in dataset_info.json

    def column(self, role: str) -> str | None:
        return self.columns.get(role)

    def tag(self, name: str) -> str | None:
        return self.tags.get(name)

    @property
    def path(self) -> Path | None:
        """Local file or folder for ``load_from == "file"``."""
        if self.load_from != "file" or self.file_name is None:
            return None
        p = Path(self.file_name)
        return p if p.is_absolute() or self.dataset_dir is None else Path(self.dataset_dir) / p


def _key_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each key of the top-level JSON object, by a small string-aware scan."""
    lines: dict[str, int] = {}
    depth, i, line, n = 0, 0, 1, len(text)
    expecting_key = False
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == '"':
            start_line, j, buf = line, i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j : j + 2])
                    j += 2
                    continue
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            if depth == 1 and expecting_key:
                try:
                    key = json.loads('"' + "".join(buf) + '"')
                except ValueError:
                    key = "".join(buf)
                lines.setdefault(key, start_line)
                expecting_key = False
            i = j
        elif c in "{[":
            depth += 1
            expecting_key = depth == 1 and c == "{"
        elif c in "}]":
            depth -= 1
        elif c == "," and depth == 1:
            expecting_key = True
        i += 1
    return lines


def load_dataset_info(dataset_dir: str | Path) -> dict[str, DatasetAttr]:
    """Parse ``<dataset_dir>/dataset_info.json`` into resolved :class:`DatasetAttr` entries.

    Raises :class:`ConfigError` with file and line for unreadable JSON, a non-object top
    level, an entry with no source, an unknown ``formatting`` or an unknown column/tag key.
    """
    path = Path(dataset_dir) / DATA_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{DATA_CONFIG} not found in dataset_dir {str(dataset_dir)!r}",
            file=path,
            key="dataset_dir",
            hint="point `dataset_dir` at the folder holding dataset_info.json "
            "(`tunedeck make-demo-data DIR` writes an example)",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {DATA_CONFIG}: {exc}", file=path) from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON: {exc.msg}",
            file=path,
            line=exc.lineno,
            column=exc.colno,
            hint="dataset_info.json must be one JSON object: {\"name\": {\"file_name\": ...}, ...}",
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            "the top level must be an object mapping dataset names to entries",
            file=path,
            line=1,
        )
    lines = _key_lines(text)
    return {
        name: _parse_entry(name, entry, path, lines.get(name)) for name, entry in raw.items()
    }


def _parse_entry(name: str, entry: Any, path: Path, line: int | None) -> DatasetAttr:
    def err(msg: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"dataset {name!r}: {msg}", file=path, line=line, hint=hint)

    if not isinstance(entry, Mapping):
        raise err("an entry must be an object with `file_name` (or a hub url)")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise err(
            f"unknown key(s) {', '.join(map(repr, unknown))}",
            hint=f"known keys: {', '.join(sorted(_ENTRY_KEYS - {'file_sha1'}))}",
        )
    key = next((k for k in _SOURCE_KEYS if k in entry), None)
    if key is None:
        raise err("no data source", hint="add `file_name` (a file or folder under dataset_dir)")
    load_from, source = _SOURCE_KEYS[key], entry[key]
    if not isinstance(source, str) or not source:
        raise err("the data source must be a non-empty string")

    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        raise err(f"unknown formatting {formatting!r}", hint=f"one of {', '.join(FORMATTINGS)}")
    ranking = entry.get("ranking", False)
    if not isinstance(ranking, bool):
        raise err("`ranking` must be true or false")
    num_samples = entry.get("num_samples")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
        raise err("`num_samples` must be a positive integer")

    def names(key: str, known: tuple[str, ...], what: str) -> dict[str, str | None]:
        """The entry's ``columns`` or ``tags`` object: known roles only, each a name or null."""
        given = entry.get(key, {}) or {}
        if not isinstance(given, Mapping):
            raise err(f"`{key}` must be an object")
        bad = sorted(set(given) - set(known))
        if bad:
            raise err(f"unknown {what} {', '.join(map(repr, bad))}", hint=f"known: {', '.join(known)}")
        return {k: (None if v is None else str(v)) for k, v in given.items()}

    columns = dict(_ALPACA_COLUMNS)
    if formatting == "openai":
        columns["messages"] = "messages"
    columns.update(names("columns", COLUMN_NAMES, "column role(s)"))
    tags = dict(_OPENAI_TAGS if formatting == "openai" else _SHAREGPT_TAGS)
    tags.update(names("tags", TAG_NAMES, "tag(s)"))

    return DatasetAttr(
        name=name,
        load_from=load_from,
        file_name=source,
        formatting=formatting,
        ranking=ranking,
        columns=columns,
        tags=tags,
        split=str(entry.get("split", "train")),
        num_samples=num_samples,
        subset=entry.get("subset"),
        folder=entry.get("folder"),
        dataset_dir=str(path.parent),
        info_file=str(path),
        line=line,
    )


def split_names(names: str | Iterable[str] | None) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` -> ``["a", "b"]``; None -> []."""
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else [str(n) for n in names]
    return [n.strip() for n in items if n and n.strip()]


def resolve_datasets(
    names: str | Iterable[str] | None, dataset_dir: str | Path, *, key: str = "dataset"
) -> list[DatasetAttr]:
    """The entries for ``names``, in order. ``dataset_dir == "ONLINE"`` means hub ids.

    A name missing from dataset_info.json raises :class:`ConfigError` naming it, with the
    closest names and the available ones.
    """
    wanted = split_names(names)
    if not wanted:
        return []
    if str(dataset_dir) == "ONLINE":
        return [DatasetAttr(name=n, load_from="hf_hub", file_name=n) for n in wanted]
    info = load_dataset_info(dataset_dir)
    out = []
    for n in wanted:
        if n not in info:
            close = difflib.get_close_matches(n, list(info), n=3, cutoff=0.5)
            available = ", ".join(sorted(info)) or "(none)"
            hint = (f"did you mean {', '.join(close)}? " if close else "") + f"available: {available}"
            raise ConfigError(
                f"dataset {n!r} is not defined in {Path(dataset_dir) / DATA_CONFIG}",
                key=key,
                hint=hint,
            )
        out.append(info[n])
    return out
