"""Checks on ``dataset_info.json`` and dataset files that would otherwise fail at run time.

Pure file inspection: no ``datasets``, no torch. Each check returns :class:`Issue`
records; the validator attaches them to the config key they concern.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# Files larger than this are only partly checked, so validation stays quick.
CHECK_BYTES = 64 * 1024 * 1024

HUB_SOURCES = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


@dataclass(frozen=True)
class Issue:
    severity: Literal["error", "warning", "advice"]
    code: str
    message: str
    fix: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """A parsed ``dataset_info.json`` and where it lives."""

    directory: Path
    entries: dict[str, Any]


def resolve_dir(value: str, bases: Sequence[Path]) -> tuple[Path | None, list[Path]]:
    """First existing candidate of ``value`` under ``bases`` (absolute values stand alone)."""
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else [b / p for b in bases]
    for c in candidates:
        if c.is_dir():
            return c, candidates
    return None, candidates


def load_dataset_info(directory: Path) -> tuple[DatasetInfo | None, list[Issue]]:
    info_path = directory / "dataset_info.json"
    if not info_path.is_file():
        return None, [Issue("error", "dataset-info-missing",
                            f"{info_path} does not exist, so no dataset name can be resolved",
                            "create dataset_info.json in dataset_dir, or point dataset_dir at the folder that has it")]
    try:
        text = info_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Issue("error", "dataset-info-unreadable", f"cannot read {info_path}: {exc}")]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [Issue("error", "dataset-info-json",
                            f"{info_path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                            "fix the JSON syntax on that line")]
    if not isinstance(data, dict):
        return None, [Issue("error", "dataset-info-json", f"{info_path} must hold a JSON object of dataset entries")]
    return DatasetInfo(directory, data), []


def check_datasets(
    names: Iterable[str], info: DatasetInfo, *, stage: str, offline: bool
) -> list[Issue]:
    """Every named dataset exists in ``info``, suits ``stage``, and its file is readable."""
    issues: list[Issue] = []
    for name in names:
        entry = info.entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(info.entries), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else (
                f"add an entry for it to {info.directory / 'dataset_info.json'}")
            issues.append(Issue("error", "dataset-unknown",
                                f"dataset {name!r} is not in {info.directory / 'dataset_info.json'}", hint))
            continue
        if not isinstance(entry, dict):
            issues.append(Issue("error", "dataset-entry", f"entry {name!r} in dataset_info.json is not an object"))
            continue
        issues += _check_entry(name, entry, info.directory, stage=stage, offline=offline)
    return issues


def _check_entry(name: str, entry: dict[str, Any], directory: Path, *, stage: str, offline: bool) -> list[Issue]:
    issues: list[Issue] = []
    ranking = bool(entry.get("ranking", False))
    if stage in ("rm", "dpo") and not ranking:
        issues.append(Issue("error", "dataset-stage",
                            f"dataset {name!r} has no ranking: true, but stage {stage} needs chosen/rejected pairs",
                            "use a preference dataset, or mark this one ranking: true if it has pairs"))
    elif stage in ("pt", "sft", "kto") and ranking:
        issues.append(Issue("error", "dataset-stage",
                            f"dataset {name!r} is a ranking (preference) dataset, not applicable to stage {stage}",
                            "use it with stage dpo or rm"))
    hub = next((k for k in HUB_SOURCES if entry.get(k)), None)
    if hub is not None:
        if offline and hub in ("hf_hub_url", "ms_hub_url", "om_hub_url"):
            issues.append(Issue("warning", "dataset-offline",
                                f"dataset {name!r} comes from the hub ({entry[hub]}) but HF_HUB_OFFLINE is set",
                                "download it first or unset HF_HUB_OFFLINE"))
        return issues
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        issues.append(Issue("error", "dataset-entry",
                            f"entry {name!r} names no source (file_name, hf_hub_url, ...)",
                            "add file_name (a file or folder inside dataset_dir)"))
        return issues
    path = Path(file_name).expanduser()
    if not path.is_absolute():
        path = directory / path
    if not path.exists():
        issues.append(Issue("error", "dataset-file-missing",
                            f"dataset {name!r}: file {path} does not exist",
                            "fix file_name in dataset_info.json or copy the file there"))
        return issues
    if path.is_dir():
        if not any(path.iterdir()):
            issues.append(Issue("error", "dataset-file-missing", f"dataset {name!r}: folder {path} is empty"))
        return issues
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl"):
        first, issue = check_json_records(path)
        if issue is not None:
            issues.append(Issue(issue.severity, issue.code, f"dataset {name!r}: {issue.message}", issue.fix))
        if first is not None:
            issues += _check_columns(name, entry, first, stage=stage)
    elif path.stat().st_size == 0:
        issues.append(Issue("error", "dataset-file-empty", f"dataset {name!r}: file {path} is empty"))
    return issues


def check_json_records(path: Path) -> tuple[Any | None, Issue | None]:
    """Validate a .json/.jsonl dataset; return its first record and the first problem found.

    Like the ``datasets`` JSON loader, a file is accepted either as one JSON document
    (an array of records) or as JSON Lines; an error names the first bad line.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            raw = fh.read(CHECK_BYTES)
    except OSError as exc:
        return None, Issue("error", "dataset-file-unreadable", f"cannot read {path}: {exc.strerror}")
    if size == 0 or not raw.strip():
        return None, Issue("error", "dataset-file-empty", f"{path} is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if size > CHECK_BYTES and exc.start > len(raw) - 4:
            text = raw[: exc.start].decode("utf-8")
        else:
            line = raw[: exc.start].count(b"\n") + 1
            return None, Issue("error", "dataset-file-encoding", f"{path} line {line} is not valid UTF-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    partial = size > CHECK_BYTES
    stripped = text.lstrip()
    if stripped.startswith("[") and not partial:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, Issue("error", "dataset-file-json",
                               f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                               "fix the JSON syntax at that line")
        if not isinstance(doc, list) or not doc:
            return None, Issue("error", "dataset-file-json", f"{path} must hold a non-empty JSON array of records")
        return doc[0], None
    lines = text.split("\n")
    if partial and lines:
        lines = lines[:-1]  # the cut-off last line is not the file's fault
    first: Any | None = None
    for lineno, raw_line in enumerate(lines, start=1):
        s = raw_line.strip()
        if not s:
            continue
        try:
            rec = json.loads(s)
        except json.JSONDecodeError as exc:
            return first, Issue("error", "dataset-file-json",
                                f"{path} line {lineno} is not valid JSON ({exc.msg} at column {exc.colno})",
                                "each line of a JSON Lines file must be one complete JSON object")
        if not isinstance(rec, dict):
            return first, Issue("error", "dataset-file-json",
                                f"{path} line {lineno} is a JSON {type(rec).__name__}, not an object (record)")
        if first is None:
            first = rec
    if first is None:
        return None, Issue("error", "dataset-file-empty", f"{path} holds no records")
    if partial:
        return first, Issue("advice", "dataset-file-partial",
                            f"{path} is {size / 2**20:.0f} MiB; only its first {CHECK_BYTES // 2**20} MiB were checked")
    return first, None


def _check_columns(name: str, entry: dict[str, Any], record: Any, *, stage: str) -> list[Issue]:
    """The first record has the columns the entry's formatting needs."""
    if not isinstance(record, dict):
        return [Issue("error", "dataset-record", f"dataset {name!r}: the first record is not a JSON object")]
    fmt = entry.get("formatting", "alpaca")
    cols = entry.get("columns") or {}
    if not isinstance(cols, dict):
        return [Issue("error", "dataset-entry", f"entry {name!r}: columns must be an object")]
    need: list[str] = []
    if fmt == "alpaca":
        # pre-training entries map their text field as the prompt ({"prompt": "text"})
        need.append(cols.get("prompt", "instruction"))
        if stage != "pt":
            if entry.get("ranking"):
                need += [cols.get("chosen", "chosen"), cols.get("rejected", "rejected")]
            else:
                need.append(cols.get("response", "output"))
    elif fmt in ("sharegpt", "openai"):
        default_msgs = "conversations" if fmt == "sharegpt" else "messages"
        need.append(cols.get("messages", default_msgs))
        if entry.get("ranking"):
            need += [cols.get("chosen", "chosen"), cols.get("rejected", "rejected")]
    else:
        return [Issue("error", "dataset-entry",
                      f"entry {name!r}: formatting {fmt!r} is not alpaca, sharegpt or openai")]
    if stage == "kto":
        need.append(cols.get("kto_tag", "label"))
    missing = [c for c in need if c not in record]
    if missing:
        return [Issue("error", "dataset-columns",
                      f"dataset {name!r} ({fmt}): the first record has no {', '.join(repr(c) for c in missing)} "
                      f"field (it has {', '.join(sorted(map(str, record))[:8]) or 'none'})",
                      "map the right fields under columns in dataset_info.json")]
    if fmt in ("sharegpt", "openai"):
        msgs = record.get(need[0])
        if not isinstance(msgs, list) or not msgs:
            return [Issue("error", "dataset-columns",
                          f"dataset {name!r}: field {need[0]!r} of the first record is not a non-empty list of messages")]
        tags = entry.get("tags") or {}
        role = tags.get("role_tag", "from" if fmt == "sharegpt" else "role")
        content = tags.get("content_tag", "value" if fmt == "sharegpt" else "content")
        m0 = msgs[0]
        if not isinstance(m0, dict) or role not in m0 or content not in m0:
            return [Issue("error", "dataset-columns",
                          f"dataset {name!r}: messages need {role!r} and {content!r} fields "
                          f"(set tags.role_tag/content_tag in dataset_info.json if they are named otherwise)")]
    return []
