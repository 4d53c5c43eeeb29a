"""Load and save LLaMA-Factory-style YAML configs without losing anything.

Loading follows LLaMA-Factory's semantics: one flat mapping, comma-list strings,
``key=value`` overrides after the path. Saving goes through ruamel's round-trip
mode so the user's comments, key order and quoting survive an edit; it is atomic
(temp file, fsync, rename), keeps the previous version as ``<file>.bak`` and
refuses to overwrite a file that changed on disk since it was loaded.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    SingleQuotedScalarString,
)
from ruamel.yaml.tokens import CommentToken

from tunedeck.runner.errors import ConfigError, StaleFileError
from tunedeck.runner.fsutil import atomic_write_bytes, atomic_write_text

# Hard limits that keep a hostile or broken file from costing unbounded time/memory.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ALIASES = 64
MAX_EXPANDED_NODES = 100_000  # values a document may hold once its aliases are expanded
MAX_DEPTH = 32
MAX_LINES = 10_000

BOM = "\ufeff"


@dataclass(frozen=True)
class Location:
    """1-based line and column of a key; ``source`` is the file or "command line"."""

    source: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column or 1}"


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _check_structure(text: str, source: str) -> None:
    """Refuse alias bombs and absurd nesting before composing the document.

    An alias bomb is judged by what it would expand to, not by its alias count:
    eight levels of eight aliases (56 of them) already expand to 16 million values.
    The event pass tracks the expanded size of every anchored node and refuses as
    soon as the document would hold more than :data:`MAX_EXPANDED_NODES` values.
    """
    if text.count("*") and text.count("&"):
        y = YAML(typ="rt")
        aliases = 0
        anchors: dict[str, int] = {}
        stack: list[list[Any]] = [[None, 0]]  # [anchor, expanded size so far] per open container
        total = 0
        try:
            for ev in y.parse(io.StringIO(text)):
                kind = type(ev).__name__
                size = 0
                if kind == "AliasEvent":
                    aliases += 1
                    size = anchors.get(getattr(ev, "anchor", None) or "", 1)
                elif kind == "ScalarEvent":
                    size = 1
                    if getattr(ev, "anchor", None):
                        anchors[ev.anchor] = 1
                elif kind in ("SequenceStartEvent", "MappingStartEvent"):
                    stack.append([getattr(ev, "anchor", None), 1])
                    continue
                elif kind in ("SequenceEndEvent", "MappingEndEvent") and len(stack) > 1:
                    anchor, size = stack.pop()
                    if anchor:
                        anchors[anchor] = size
                    stack[-1][1] += size
                    continue
                else:
                    continue
                stack[-1][1] += size
                total += size
                if aliases > MAX_ALIASES or total > MAX_EXPANDED_NODES:
                    mark = getattr(ev, "start_mark", None)
                    what = (f"more than {MAX_ALIASES} YAML aliases" if aliases > MAX_ALIASES
                            else f"YAML aliases that would expand to more than {MAX_EXPANDED_NODES} values")
                    raise ConfigError(
                        f"{what}; refusing to expand what looks like an alias bomb",
                        file=source,
                        line=(mark.line + 1) if mark else None,
                        column=(mark.column + 1) if mark else None,
                    )
        except YAMLError:
            return  # the real parse reports the syntax error with its position
    depth = 0
    max_depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            max_depth = max(max_depth, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    if max_depth > MAX_DEPTH:
        raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels is not a config", file=source, line=1)


def _check_depth(data: Any, source: str) -> None:
    """Refuse block-style nesting deeper than :data:`MAX_DEPTH` (the flow-style count in
    :func:`_check_structure` cannot see indentation), naming the line where it goes too deep.
    Aliases are followed, so a self-referencing alias ends here too, not in a recursion."""
    todo: list[tuple[Any, int]] = [(data, 0)]
    while todo:
        node, depth = todo.pop()
        if not isinstance(node, (CommentedMap, CommentedSeq)):
            continue
        if depth >= MAX_DEPTH:
            line = None
            lc = getattr(node, "lc", None)
            if lc is not None and getattr(lc, "line", None) is not None:
                line = lc.line + 1
            raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels is not a config",
                              file=source, line=line or 1)
        children = node.values() if isinstance(node, CommentedMap) else node
        todo.extend((c, depth + 1) for c in children)


_LONG_INT = re.compile(r"(?<![\w.])[-+]?[0-9][0-9_]{4000,}")


def _unreadable_value(exc: ValueError, text: str, source: str) -> ConfigError:
    """A value the YAML constructor could not turn into Python (an integer with more
    digits than Python converts, a malformed date...), located when we can."""
    m = _LONG_INT.search(text)
    line = text.count("\n", 0, m.start()) + 1 if m else 1
    return ConfigError(f"a value cannot be read: {exc}", file=source, line=line,
                       hint="write the number in a normal size, or quote it to keep it as text")


def _yaml_error(exc: YAMLError, source: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    msg = f"YAML syntax error: {problem}"
    if context:
        msg += f" ({context})"
    if "\\t" in str(problem) or "\t" in str(problem) or "tab" in str(problem).lower():
        hint = "YAML does not allow tabs for indentation; use spaces"
    else:
        hint = "check the indentation and the quoting on that line"
    if isinstance(exc, MarkedYAMLError) and mark is not None:
        return ConfigError(msg, file=source, line=mark.line + 1, column=mark.column + 1, hint=hint)
    return ConfigError(msg, file=source, line=1, hint=hint)


def to_plain(value: Any, _depth: int = 0) -> Any:
    """Convert ruamel's round-trip types into plain Python values."""
    if _depth > MAX_DEPTH:
        raise ConfigError("nesting too deep")
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, CommentedSeq)):
        return [to_plain(v, _depth + 1) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def parse_scalar(text: str) -> Any:
    """Parse a ``key=value`` override value the way YAML would read it."""
    if text == "":
        return None
    try:
        v = _yaml().load(text)
    except (YAMLError, ValueError, RecursionError):
        return text  # not YAML we can read (or a number Python will not convert): the text itself
    try:
        return to_plain(v)
    except ConfigError:
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["lr=1e-4", "dataset=a,b"]`` -> dict; ``--flag`` style is refused with the fix."""
    out: dict[str, Any] = {}
    for item in items:
        if item.startswith("-") or "=" not in item:
            raise ConfigError(
                f"override {item!r} is not of the form key=value",
                file="command line",
                hint="write overrides after the config path as key=value, e.g. learning_rate=1e-4",
            )
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has no key", file="command line")
        out[key] = parse_scalar(raw.strip())
    return out


class ConfigDoc:
    """One config file held in round-trip form, plus command-line overrides."""

    def __init__(
        self,
        data: CommentedMap,
        *,
        path: Path | None = None,
        source: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.data = data
        self.path = path
        self.source = source or (str(path) if path else "<string>")
        self.overrides: dict[str, Any] = dict(overrides or {})
        self._fingerprint = fingerprint

    # -- loading ---------------------------------------------------------------
    @classmethod
    def loads(cls, text: str, *, source: str = "<string>", path: Path | None = None) -> ConfigDoc:
        if text.startswith(BOM):
            text = text[1:]
        if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
            raise ConfigError(
                f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; a config is a few KiB",
                file=source,
                line=1,
            )
        if "\x00" in text:
            raise ConfigError("file contains NUL bytes; it is not a text config", file=source, line=1)
        if text.count("\n") > MAX_LINES:
            # ruamel parses ~3000 lines a second: cap the lines as well as the bytes.
            raise ConfigError(f"file has more than {MAX_LINES} lines; a config is a few hundred",
                              file=source, line=MAX_LINES + 1)
        _check_structure(text, source)
        try:
            data = _yaml().load(text)
        except YAMLError as exc:
            raise _yaml_error(exc, source) from None
        except RecursionError:
            raise ConfigError("nesting too deep to be a config", file=source, line=1) from None
        except ValueError as exc:
            raise _unreadable_value(exc, text, source) from None
        _check_depth(data, source)
        if data is None:
            data = CommentedMap()
        if not isinstance(data, CommentedMap):
            kind = "list" if isinstance(data, list) else type(data).__name__
            raise ConfigError(
                f"top level must be a mapping of key: value pairs, not a {kind}",
                file=source,
                line=1,
                column=1,
            )
        for key in list(data.keys()):
            if not isinstance(key, str):
                line, col = _lc(data, key)
                raise ConfigError(
                    f"key {key!r} is not a string", file=source, line=line, column=col
                )
        return cls(data, path=path, source=source, fingerprint=_digest(text.encode("utf-8", "surrogatepass")))

    @classmethod
    def load(cls, path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = ()) -> ConfigDoc:
        """Read ``path``; ``overrides`` are ``key=value`` strings or a mapping."""
        p = Path(path)
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            raise ConfigError("config file not found", file=p) from None
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc.strerror}", file=p) from None
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"file is {size / 1048576:.1f} MiB; refusing to parse a config over "
                f"{MAX_FILE_BYTES // 1048576} MiB",
                file=p,
                line=1,
            )
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc.strerror}", file=p) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError("file is not valid UTF-8", file=p, line=line) from None
        doc = cls.loads(text, source=str(p), path=p)
        doc._fingerprint = _digest(raw)
        if isinstance(overrides, Mapping):
            doc.overrides = dict(overrides)
        else:
            doc.overrides = parse_overrides(overrides)
        return doc

    # -- reading ---------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """The effective config as plain values: file contents with overrides applied."""
        out = to_plain(self.data)
        out.update(self.overrides)
        return out

    def file_values(self) -> dict[str, Any]:
        return to_plain(self.data)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.overrides:
            return self.overrides[key]
        if key in self.data:
            return to_plain(self.data[key])
        return default

    def __contains__(self, key: object) -> bool:
        return key in self.overrides or key in self.data

    def keys(self) -> list[str]:
        ks = [str(k) for k in self.data]
        ks += [k for k in self.overrides if k not in self.data]
        return ks

    def location(self, key: str) -> Location:
        """Where ``key`` is set: the override on the command line wins over the file."""
        if key in self.overrides:
            return Location("command line")
        if key in self.data:
            line, col = _lc(self.data, key)
            return Location(self.source, line, col)
        return Location(self.source)

    def value_location(self, key: str) -> Location:
        """Where the *value* of ``key`` starts (for errors about the value)."""
        if key in self.overrides:
            return Location("command line")
        if key in self.data:
            try:
                line, col = self.data.lc.value(key)
                return Location(self.source, line + 1, col + 1)
            except (AttributeError, KeyError, TypeError):
                return self.location(key)
        return Location(self.source)

    # -- editing ---------------------------------------------------------------
    def set(self, key: str, value: Any) -> None:
        """Set ``key`` in the file's mapping, keeping its comment and quoting style."""
        old = self.data.get(key) if key in self.data else None
        if isinstance(value, str):
            if isinstance(old, DoubleQuotedScalarString):
                value = DoubleQuotedScalarString(value)
            elif isinstance(old, SingleQuotedScalarString):
                value = SingleQuotedScalarString(value)
        self.data[key] = value
        self.overrides.pop(key, None)

    def delete(self, key: str) -> None:
        """Remove ``key``; comment lines that followed its value stay in the file."""
        if key in self.data:
            _keep_following_comments(self.data, key)
            del self.data[key]
        self.overrides.pop(key, None)

    def apply(self, patch: Mapping[str, Any]) -> None:
        """Apply ``{key: value}``; a value of ``None`` removes the key."""
        for k, v in patch.items():
            if v is None:
                self.delete(k)
            else:
                self.set(k, v)

    def dumps(self) -> str:
        buf = io.StringIO()
        _yaml().dump(self.data, buf)
        return buf.getvalue()

    # -- saving ----------------------------------------------------------------
    def changed_on_disk(self) -> bool:
        if self.path is None or self._fingerprint is None:
            return False
        try:
            return _digest(self.path.read_bytes()) != self._fingerprint
        except FileNotFoundError:
            return True

    def save(self, path: str | Path | None = None, *, force: bool = False, backup: bool = True) -> Path:
        """Write atomically; keep ``<file>.bak``; refuse if the file changed since load."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError("no path to save to")
        same_file = self.path is not None and target.resolve() == self.path.resolve()
        if same_file and not force and self.changed_on_disk():
            raise StaleFileError(
                "file changed on disk since it was loaded; not overwriting it",
                file=target,
                hint="reload it (your edits would be lost) or save under another name",
            )
        text = self.dumps()
        mode = 0o644
        if target.exists():
            mode = target.stat().st_mode & 0o777 & ~0o022
            if backup:
                bak = target.with_name(target.name + ".bak")
                atomic_write_bytes(bak, target.read_bytes(), mode=mode)
        atomic_write_text(target, text, mode=mode)
        self.path = target
        self.source = str(target)
        self._fingerprint = _digest(text.encode("utf-8"))
        return target


def _last_comment_slot(m: CommentedMap, key: Any) -> tuple[Any, Any]:
    """(container, key) whose post-value comment holds the lines after ``m[key]``.

    ruamel attaches full-line comments to the entry *before* them, so for a nested
    value they live on its deepest last entry.
    """
    owner: Any = m
    k: Any = key
    value = m[key]
    while isinstance(value, (CommentedMap, CommentedSeq)) and len(value):
        owner, k = value, (list(value.keys())[-1] if isinstance(value, CommentedMap) else len(value) - 1)
        value = owner[k]
    return owner, k


def _keep_following_comments(m: CommentedMap, key: Any) -> None:
    """Before deleting ``key``, hand the comment lines after it to the previous entry."""
    owner, k = _last_comment_slot(m, key)
    slot = owner.ca.items.get(k)
    token = slot[2] if slot and len(slot) > 2 else None
    if token is None or "\n" not in token.value:
        return
    rest = token.value.split("\n", 1)[1]  # drop the deleted line's own end-of-line comment
    if not rest.strip():
        return
    keys = list(m.keys())
    idx = keys.index(key)
    if idx == 0:
        top = m.ca.comment
        if top is None:
            m.ca.comment = [None, []]
            top = m.ca.comment
        if top[1] is None:
            top[1] = []
        top[1].append(CommentToken(rest, start_mark=CommentMark(0)))
        return
    prev_owner, prev_k = _last_comment_slot(m, keys[idx - 1])
    prev_slot = prev_owner.ca.items.setdefault(prev_k, [None, None, None, None])
    while len(prev_slot) < 3:
        prev_slot.append(None)
    if prev_slot[2] is not None:
        prev_slot[2].value = prev_slot[2].value + rest
    else:
        prev_slot[2] = CommentToken("\n" + rest, start_mark=CommentMark(0))


def _lc(m: CommentedMap, key: Any) -> tuple[int | None, int | None]:
    try:
        line, col = m.lc.key(key)
        return line + 1, col + 1
    except (AttributeError, KeyError, TypeError):
        pass
    # A key merged in with ``<<: *anchor`` has no position in this mapping: it is written
    # where the anchored mapping defines it.
    for merged in getattr(m, "merge", None) or ():
        if isinstance(merged, CommentedMap) and key in merged:
            return _lc(merged, key)
    return None, None


def _digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def split_list(value: Any) -> list[str]:
    """LLaMA-Factory's comma-list convention: ``"a, b"`` or ``[a, b]`` -> ``["a", "b"]``."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [s.strip() for s in str(value).split(",") if s.strip()]


def load_config(path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = ()) -> ConfigDoc:
    return ConfigDoc.load(path, overrides)
