"""Incremental reading of ``trainer_log.jsonl``, metric history, downsampling, text tails.

The reader keeps a byte offset and reads only what was appended; an idle poll
is one ``stat``. It tolerates a partial last line (it waits for the newline),
garbage lines (skipped and counted), a truncated or replaced file (detected by
size, inode and the first bytes; it starts over) and LLaMA-Factory's older
``learning_rate`` key. Metrics are kept as ``array('d')`` columns, so a
1,000,000-line log costs ~16 MB per metric, not a million dicts.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.rundir.protocol import TRAINER_LOG, TRAINER_STATE

# Metrics kept as columns. LLaMA-Factory's keys plus ours (see DESIGN.md).
METRICS: tuple[str, ...] = (
    "loss",
    "eval_loss",
    "lr",
    "grad_norm",
    "throughput",
    "vram_allocated",
    "vram_reserved",
    "step_time",
    "epoch",
)
# Older LLaMA-Factory versions and transformers' log_history say learning_rate.
ALIASES = {"learning_rate": "lr"}

_CHUNK = 4 << 20  # read size: big binary reads are what makes a cold load cheap
_MAX_LINE = 16 << 20  # a "line" longer than this is garbage (a binary file, a runaway writer)
_HEAD = 256  # bytes compared to tell an in-place rewrite from an append
_MAX_STEP = 2**53  # steps beyond what a float counts exactly are garbage

_decoder = json.JSONDecoder()
# The C scanner behind json.loads: scan_once(text, idx) -> (value, end index).
_scan_once = getattr(_decoder, "scan_once", None) or _decoder.raw_decode


def _is_num(v: Any) -> bool:
    t = type(v)
    return t is float or t is int


class MetricHistory:
    """Per-metric (step, value) columns, steps non-decreasing.

    A record whose step goes backwards (a resume from an earlier checkpoint)
    drops the abandoned trajectory from that step on (``rewinds`` counts it), so
    a loss curve shows what the model actually went through; a step logged twice
    (a resume at the last logged step) keeps the later value, once. Values may be NaN
    (a diverged loss is information); :func:`downsample` and :meth:`min` skip it.
    The arrays returned by :meth:`steps`/:meth:`values` are live: copy them
    (or use :meth:`snapshot`) before handing them to another thread.
    """

    __slots__ = ("_cols", "_apps", "_last_step", "_last_record", "records", "rewinds")

    def __init__(self) -> None:
        self._cols: dict[str, tuple[array[float], array[float]]] = {
            m: (array("d"), array("d")) for m in METRICS
        }
        # Bound appends, so the per-record path does no attribute lookups.
        self._apps = tuple((m, st.append, va.append) for m, (st, va) in self._cols.items())
        self._last_step: float = -math.inf
        self._last_record: dict[str, Any] | None = None
        self.records = 0
        self.rewinds = 0

    def append(self, rec: dict[str, Any]) -> None:
        """Add one log record (renames ``learning_rate`` to ``lr`` in place).

        The step is ``current_steps`` (LLaMA-Factory) or ``step`` (transformers'
        log_history), else the previous one. A metric logged again at its last step
        replaces the earlier value (the later line wins). A record without any metric
        (eval/predict progress lines) changes nothing but :meth:`last_record`.
        """
        if "learning_rate" in rec and "lr" not in rec:
            rec["lr"] = rec.pop("learning_rate")
        self.records += 1
        self._last_record = rec
        get = rec.get
        step: Any = get("current_steps")
        stepless = False  # a record without a step of its own adds to the last one
        if step.__class__ is not int and not _is_num(step):
            step = get("step")
            if not _is_num(step):
                step = self._last_step if self._last_step > -math.inf else 0
                stepless = True
        if step.__class__ is int and not -_MAX_STEP <= step <= _MAX_STEP:
            # No float holds it (array('d') would raise OverflowError): not a real step.
            step = self._last_step if self._last_step > -math.inf else 0
            stepless = True
        if step <= self._last_step and any(_is_num(get(m)) for m in METRICS):
            if step < self._last_step:
                self._rewind(step)
            elif not stepless:
                self._replace_at(step, get)
        had = False
        for name, st_append, va_append in self._apps:
            v = get(name)
            if v is not None:
                try:
                    va_append(v)  # array('d') refuses str/list/dict (TypeError), huge ints
                except (TypeError, OverflowError):
                    continue
                st_append(step)
                had = True
        if had:
            self._last_step = step

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        """:meth:`append` each record."""
        append = self.append
        for rec in records:
            append(rec)

    def _replace_at(self, step: float, get: Any) -> None:
        # The same step logged again (LLaMA-Factory's auto-resume repeats the step it
        # resumed at; a crash between the log line and the checkpoint): the later line
        # wins. Only the metrics this record carries are dropped, so an eval record at
        # the step of a loss record adds to it. Counted as a rewind: readers that cache
        # by length notice that a value changed in place.
        dropped = False
        for name, (steps, values) in self._cols.items():
            if steps and steps[-1] == step and _is_num(get(name)):
                del steps[-1]
                del values[-1]
                dropped = True
        if dropped:
            self.rewinds += 1

    def _rewind(self, step: float) -> None:
        self.rewinds += 1
        for steps, values in self._cols.values():
            i = bisect.bisect_left(steps, step)
            del steps[i:]
            del values[i:]

    def steps(self, name: str) -> array[float]:
        col = self._cols.get(ALIASES.get(name, name))
        return col[0] if col else array("d")

    def values(self, name: str) -> array[float]:
        col = self._cols.get(ALIASES.get(name, name))
        return col[1] if col else array("d")

    def last(self, name: str) -> float | None:
        """The newest value (NaN included: a diverged loss shows as NaN), or None."""
        vals = self.values(name)
        return vals[-1] if vals else None

    def last_step(self, name: str) -> float | None:
        st = self.steps(name)
        return st[-1] if st else None

    def min(self, name: str) -> float | None:
        """The smallest finite value, or None."""
        vals = self.values(name)
        if not vals:
            return None
        m = min(vals)
        # min() skips a NaN unless it comes first (then it returns NaN); -inf wins: in
        # both cases the result is not finite and the slow path below decides.
        if math.isfinite(m):
            return m
        finite = [v for v in vals if math.isfinite(v)]
        return min(finite) if finite else None

    def at_step(self, name: str, step: float) -> float | None:
        """The last value logged at or before ``step`` (what a checkpoint at that step saw)."""
        steps = self.steps(name)
        i = bisect.bisect_right(steps, step)
        return self.values(name)[i - 1] if i else None

    def logged_at_or_before(self, name: str, step: float) -> tuple[float, float] | None:
        """(the step it was logged at, the value) of :meth:`at_step`'s answer, or None: a
        checkpoint between logging steps shows an earlier step's loss, and says which."""
        steps = self.steps(name)
        i = bisect.bisect_right(steps, step)
        return (steps[i - 1], self.values(name)[i - 1]) if i else None

    def last_record(self) -> dict[str, Any] | None:
        """The newest record read (progress, ETA fields), metrics or not."""
        return self._last_record

    @property
    def last_step_seen(self) -> float | None:
        return self._last_step if self._last_step > -math.inf else None

    def names(self) -> list[str]:
        """Metrics with at least one value."""
        return [m for m, (st, _) in self._cols.items() if st]

    def snapshot(self) -> MetricHistory:
        """An independent copy (arrays copied: ~1 ms per million points)."""
        h = MetricHistory()
        h._cols = {m: (array("d", st), array("d", va)) for m, (st, va) in self._cols.items()}
        h._last_step = self._last_step
        h._last_record = dict(self._last_record) if self._last_record else None
        h.records = self.records
        h.rewinds = self.rewinds
        return h

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def __len__(self) -> int:
        """Number of records appended (including progress-only lines)."""
        return self.records


class TrainerLogReader:
    """Incremental reader of a ``trainer_log.jsonl`` (LLaMA-Factory's format and ours).

    ``poll()`` returns the records appended since the last poll and adds every
    one of them to :attr:`history`. Counters: ``garbage`` (lines that were not
    a JSON object), ``resets`` (file truncated/replaced: history restarted),
    ``lines`` (records read).
    """

    def __init__(self, path: str | os.PathLike[str], history: MetricHistory | None = None) -> None:
        self.path = Path(path)
        self.history = history if history is not None else MetricHistory()
        self.garbage = 0
        self.resets = 0
        self.lines = 0
        self._offset = 0
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino)
        self._head = b""
        self._partial = b""
        self._skipping = False  # inside an over-long line: drop bytes up to its newline
        self._missing = False

    def start_at_tail(self, nbytes: int) -> None:
        """Read only the last ``nbytes`` of the file from the next poll (the first, cut
        line is skipped): what ``status`` needs, without reading a long log."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return
        if size > nbytes:
            self._offset = size - nbytes
            self._skipping = True

    @property
    def offset(self) -> int:
        """Bytes consumed so far (including a partial last line held back)."""
        return self._offset

    @property
    def pending(self) -> bytes:
        """The partial last line waiting for its newline."""
        return self._partial

    def _reset(self) -> None:
        self.resets += 1
        self._offset = 0
        self._ident = None
        self._head = b""
        self._partial = b""
        self._skipping = False
        self.history.clear()

    def poll(self, limit: int | None = 10_000) -> list[dict[str, Any]]:
        """Records appended since the last poll (at most the newest ``limit``; None = all).

        Every new record goes into :attr:`history` whatever ``limit`` says; the
        cap only keeps a cold load of a huge log from building a million dicts.
        Never raises for a missing, unreadable or odd file.
        """
        try:
            st = os.stat(self.path)
        except OSError:
            self._missing = self._ident is not None
            return []
        ident = (st.st_dev, st.st_ino)
        if self._ident is not None and (
            ident != self._ident or st.st_size < self._offset or self._missing
        ):
            self._reset()
        self._missing = False
        self._ident = ident
        if st.st_size == self._offset:
            return []
        try:
            with open(self.path, "rb") as fh:
                # Same inode, not smaller: an append, unless it was rewritten in place.
                if self._offset and os.pread(fh.fileno(), len(self._head), 0) != self._head:
                    self._reset()
                    self._ident = ident
                return self._read(fh, st.st_size, limit)
        except OSError:
            return []

    @property
    def exists(self) -> bool:
        """Whether the last poll found the file."""
        return self._ident is not None and not self._missing

    def _read(self, fh: Any, size: int, limit: int | None) -> list[dict[str, Any]]:
        out: deque[dict[str, Any]] | list[dict[str, Any]]
        out = [] if limit is None else deque(maxlen=max(0, limit))
        fh.seek(self._offset)
        # Up to the size stat() saw: what is appended meanwhile is for the next poll,
        # and asking for exactly what is there avoids allocating a whole chunk.
        while self._offset < size:
            chunk = fh.read(min(_CHUNK, size - self._offset))
            if not chunk:
                break
            if len(self._head) < _HEAD and self._offset < _HEAD:
                self._head = (self._head + chunk[: _HEAD - self._offset])[:_HEAD]
            self._offset += len(chunk)
            if self._skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                chunk = chunk[nl + 1 :]
                self._skipping = False
            buf = self._partial + chunk if self._partial else chunk
            cut = buf.rfind(b"\n")
            if cut < 0:
                self._partial = buf
                if len(buf) > _MAX_LINE:
                    self.garbage += 1
                    self._partial = b""
                    self._skipping = True
                continue
            self._partial = buf[cut + 1 :]
            # A newline byte never occurs inside a UTF-8 sequence, so cutting there is
            # safe; bytes that are not UTF-8 become U+FFFD and fail only their own line.
            self._ingest(buf[: cut + 1].decode("utf-8", "replace"), out.append)
        return list(out)

    def _ingest(self, text: str, keep: Any) -> None:
        """Parse complete lines (``text`` ends with a newline) into history and ``keep``."""
        append = self.history.append
        scan = _scan_once
        find = text.find
        n = len(text)
        idx = 0
        garbage = 0
        lines = 0
        while idx < n:
            nl = find("\n", idx)
            # Scan the record straight out of the chunk: no per-line string and none of
            # json.loads' whitespace regexes. Valid JSONL never holds a raw newline, so
            # the record must end exactly at this line's end (else see below).
            try:
                rec, end = scan(text, idx)
            except (StopIteration, ValueError, RecursionError):  # [[[[... nests too deep
                rec, end = None, -1
            if end != nl:
                line = text[idx:nl]
                if 0 <= end < nl and not text[end:nl].strip():
                    pass  # trailing whitespace or a CR: fine
                elif end > nl:
                    rec = None  # a broken line that only "parses" together with the next
                elif not line.strip():
                    idx = nl + 1
                    continue  # a blank line is not garbage
                else:
                    try:
                        rec = json.loads(line)  # leading whitespace; or garbage
                    except (ValueError, RecursionError):
                        rec = None
            idx = nl + 1
            if type(rec) is dict:
                append(rec)
                keep(rec)
                lines += 1
            else:
                garbage += 1
        self.garbage += garbage
        self.lines += lines


def downsample(values: Sequence[float], width: int, how: str = "mean") -> list[float]:
    """Reduce ``values`` to at most ``width`` columns (``how``: mean, max, min, last).

    NaN and inf are left out (a column of nothing but them is dropped). Pure
    Python over array slices: 1,000,000 points -> 200 columns in a few ms.
    """
    if how not in ("mean", "max", "min", "last"):
        raise ValueError(f"downsample how={how!r}: use mean, max, min or last")
    n = len(values)
    if width <= 0 or n == 0:
        return []
    if n <= width:
        return [v for v in values if v - v == 0.0]  # x - x is 0 only for finite x
    out: list[float] = []
    isfinite = math.isfinite
    for col in range(width):
        lo = col * n // width
        hi = (col + 1) * n // width
        bucket = values[lo:hi]
        if how == "mean":
            s = sum(bucket)
            if isfinite(s):
                out.append(s / (hi - lo))
                continue
        elif how == "last":
            for v in reversed(bucket):
                if isfinite(v):
                    out.append(v)
                    break
            continue
        else:
            r = max(bucket) if how == "max" else min(bucket)
            # max()/min() skip a NaN unless it comes first; inf wins: both are caught here.
            if isfinite(r):
                out.append(r)
                continue
        finite = [v for v in bucket if isfinite(v)]
        if finite:
            if how == "mean":
                k = len(finite)  # scaled first: the sum of finite values may overflow
                out.append(math.fsum(v / k for v in finite))
            else:
                out.append(max(finite) if how == "max" else min(finite))
    return out


def trainer_state_path(run_dir: str | os.PathLike[str]) -> Path | None:
    """``trainer_state.json`` of a run: the top-level one (written at the end of training),
    else the newest checkpoint's (the only one that exists while a plain transformers run trains).
    """
    run = Path(run_dir)
    top = run / TRAINER_STATE
    if top.is_file():
        return top
    from tunedeck.runner.rundir.checkpoints import checkpoint_dirs  # it imports this module

    for _, ck in reversed(checkpoint_dirs(run)):
        if (ck / TRAINER_STATE).is_file():
            return ck / TRAINER_STATE
    return None


def _step_of(rec: dict[str, Any]) -> float | None:
    for key in ("current_steps", "step"):
        v = rec.get(key)
        if (type(v) is int or type(v) is float) and -_MAX_STEP <= v <= _MAX_STEP:
            return float(v)
    return None


def merge_steps(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as :class:`MetricHistory` sees them: a step logged twice is one record (the
    later line's keys win), a step going backwards (a resume from an earlier checkpoint)
    drops the abandoned records from that step on."""
    out: list[dict[str, Any]] = []
    last: float | None = None
    for rec in records:
        step = _step_of(rec)
        if step is not None and last is not None and step <= last:
            while out and (prev := _step_of(out[-1])) is not None and prev > step:
                out.pop()
            if out and _step_of(out[-1]) == step:
                out[-1] = {**out[-1], **rec}
                last = step
                continue
        out.append(rec)
        if step is not None:
            last = step
    return out


@dataclass(frozen=True)
class LogRecords:
    """A run's metric records, oldest first (see :func:`read_log_records`)."""

    records: list[dict[str, Any]]
    source: str | None             # TRAINER_LOG | TRAINER_STATE | None (nothing logged)
    path: Path | None = None       # the file they came from
    state: dict[str, Any] = field(default_factory=dict)  # trainer_state.json, for the fallback


def read_log_records(run_dir: str | os.PathLike[str], *, tail_bytes: int | None = None) -> LogRecords:
    """THE record reader of a run: ``trainer_log.jsonl`` (garbage and a partial last line
    skipped, steps merged by :func:`merge_steps`), else ``trainer_state.json``'s
    ``log_history`` with LLaMA-Factory's keys added (``current_steps``, ``total_steps``).
    ``tail_bytes`` reads only the end of the log (``status``: cheap on a long run)."""
    run = Path(run_dir)
    log = run / TRAINER_LOG
    reader = TrainerLogReader(log)
    if tail_bytes is not None:
        reader.start_at_tail(tail_bytes)
    recs = reader.poll(limit=None)
    if recs:
        return LogRecords(merge_steps(recs), TRAINER_LOG, log)
    sp = trainer_state_path(run)
    if sp is None:
        return LogRecords([], None)
    try:
        data = json.loads(sp.read_bytes())
    except (OSError, ValueError, RecursionError):
        return LogRecords([], None)
    if not isinstance(data, dict):
        return LogRecords([], None)
    hist = data.get("log_history")
    total = data.get("max_steps")
    out = []
    for rec in hist if isinstance(hist, list) else []:
        if isinstance(rec, dict):
            r = dict(rec)
            r.setdefault("current_steps", rec.get("step"))
            if isinstance(total, int) and not isinstance(total, bool):
                r.setdefault("total_steps", total)
            out.append(r)
    return LogRecords(merge_steps(out), TRAINER_STATE, sp, data)


def history_from_trainer_state(path: str | os.PathLike[str]) -> MetricHistory:
    """A history from a transformers ``trainer_state.json`` ``log_history``."""
    h = MetricHistory()
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return h
    log_history = data.get("log_history") if isinstance(data, dict) else None
    if isinstance(log_history, list):
        for rec in log_history:
            if isinstance(rec, dict):
                h.append(rec)
    return h


def load_history(run_dir: str | os.PathLike[str]) -> MetricHistory:
    """The metric history of a run: ``trainer_log.jsonl``, else ``trainer_state.json``'s log_history."""
    log_path = Path(run_dir) / TRAINER_LOG
    if log_path.is_file():
        reader = TrainerLogReader(log_path)
        reader.poll(limit=0)
        return reader.history
    state = trainer_state_path(run_dir)
    return history_from_trainer_state(state) if state else MetricHistory()


class RunHistory:
    """Follows a run's metrics whatever wrote them: ``trainer_log.jsonl`` incrementally,
    or (plain transformers runs) ``trainer_state.json`` re-read when it changes.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.reader = TrainerLogReader(self.run_dir / TRAINER_LOG)
        self.source: str | None = None  # "trainer_log" | "trainer_state" | None
        self._state_key: tuple[str, int, int] | None = None
        self._state_history = MetricHistory()

    @property
    def history(self) -> MetricHistory:
        return self.reader.history if self.source != "trainer_state" else self._state_history

    def poll(self) -> bool:
        """Read what is new; True if the history changed."""
        before = (self.reader.lines, self.reader.resets)
        self.reader.poll(limit=0)
        if self.reader.exists:
            self.source = "trainer_log"
            return (self.reader.lines, self.reader.resets) != before
        state = trainer_state_path(self.run_dir)
        if state is None:
            return False
        try:
            st = state.stat()
        except OSError:
            return False
        key = (str(state), st.st_mtime_ns, st.st_size)
        if key == self._state_key:
            return False
        self._state_key = key
        self._state_history = history_from_trainer_state(state)
        self.source = "trainer_state"
        return True


_CR_SPLIT = re.compile(r"\r+")


def _collapse_cr(line: str) -> str:
    # A terminal shows only what follows the last carriage return (tqdm bars).
    if "\r" not in line:
        return line
    parts = [p for p in _CR_SPLIT.split(line) if p]
    return parts[-1] if parts else ""


def _tail_bytes(fd: int, end: int, n: int, max_bytes: int) -> tuple[bytes, bool]:
    """The bytes holding the last ``n`` lines before ``end``; bool: reached the file start."""
    block = 64 << 10
    pos = end
    parts: list[bytes] = []
    newlines = 0
    total = 0
    # n lines need n+1 newlines in view (the one before the first line; a trailing one).
    while pos > 0 and newlines <= n and total < max_bytes:
        size = min(block, pos)
        pos -= size
        chunk = os.pread(fd, size, pos)
        parts.append(chunk)
        newlines += chunk.count(b"\n")
        total += len(chunk)
    parts.reverse()
    return b"".join(parts), pos == 0


def tail_lines(
    path: str | os.PathLike[str], n: int, *, collapse_cr: bool = True, max_bytes: int = 8 << 20
) -> list[str]:
    """The last ``n`` lines of a text file, reading backwards from the end (never the whole file).

    Undecodable bytes are replaced; with ``collapse_cr`` a line shows what a
    terminal would (the text after its last ``\\r``). [] if the file is missing.
    """
    if n <= 0:
        return []
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return []
    try:
        end = os.fstat(fd).st_size
        data, at_start = _tail_bytes(fd, end, n, max_bytes)
    except OSError:
        return []
    finally:
        os.close(fd)
    return _split_tail(data, at_start, n, collapse_cr)


def _split_tail(data: bytes, at_start: bool, n: int, collapse_cr: bool) -> list[str]:
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline
    if not at_start and lines:
        lines = lines[1:]  # the first piece starts mid-line
    lines = lines[-n:]
    if collapse_cr:
        lines = [_collapse_cr(x) for x in lines]
    return lines


class TextTail:
    """Offset-based follower of a text log (``stdout.log``) for ``logs --follow``.

    The first :meth:`poll` returns the last ``initial_lines`` lines (or the
    whole file with ``from_start``); later polls return only complete new lines.
    A truncated or replaced file starts over (``resets``). :attr:`partial` is the
    unfinished last line (a progress bar being redrawn).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        initial_lines: int = 0,
        from_start: bool = False,
        collapse_cr: bool = True,
    ) -> None:
        self.path = Path(path)
        self.initial_lines = initial_lines
        self.from_start = from_start
        self.collapse_cr = collapse_cr
        self.resets = 0
        self._offset: int | None = None
        self._ident: tuple[int, int] | None = None
        self._partial = b""

    @property
    def partial(self) -> str:
        text = self._partial.decode("utf-8", "replace")
        return _collapse_cr(text) if self.collapse_cr else text

    def poll(self, max_bytes: int = 32 << 20) -> list[str]:
        """New complete lines (reads at most ``max_bytes`` per call; the rest next time)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        ident = (st.st_dev, st.st_ino)
        if self._offset is not None and (ident != self._ident or st.st_size < self._offset):
            self.resets += 1
            self._offset = 0  # a new file: read it from its start
            self._partial = b""
        self._ident = ident
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return []
        try:
            if self._offset is None:
                return self._first(fd, st.st_size)
            if st.st_size == self._offset:
                return []
            data = os.pread(fd, min(st.st_size - self._offset, max_bytes), self._offset)
        except OSError:
            return []
        finally:
            os.close(fd)
        self._offset += len(data)
        return self._lines(self._partial + data)

    def _first(self, fd: int, size: int) -> list[str]:
        if self.from_start:
            self._offset = 0
            data = os.pread(fd, size, 0) if size else b""
            self._offset = len(data)
            return self._lines(data)
        # Start at the end, keeping an unfinished last line as the partial.
        data, at_start = _tail_bytes(fd, size, max(self.initial_lines, 0), 8 << 20)
        cut = data.rfind(b"\n")
        self._partial = data[cut + 1 :] if cut >= 0 else (data if at_start else b"")
        self._offset = size
        if self.initial_lines <= 0 or cut < 0:
            return []
        return _split_tail(data[: cut + 1], at_start, self.initial_lines, self.collapse_cr)

    def _lines(self, buf: bytes) -> list[str]:
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._partial = buf
            return []
        self._partial = buf[cut + 1 :]
        lines = buf[:cut].decode("utf-8", "replace").split("\n")
        if self.collapse_cr:
            lines = [_collapse_cr(x) for x in lines]
        return lines
