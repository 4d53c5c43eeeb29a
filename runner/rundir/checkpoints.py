"""Scanning ``checkpoint-N/`` directories: step, time, size, kind, completeness, loss.

A checkpoint is *complete* when it holds weights (an adapter, full model files —
every shard its index names —, or a DeepSpeed ``global_stepN/``), a
``trainer_state.json`` that is not truncated, and no
``checkpoint-is-incomplete.txt`` (transformers' jit-checkpoint sentinel, removed
when the save finishes). A full resume (optimizer, scheduler, RNG) also needs
the optimizer state: ``resumable_full``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.runner.rundir.logs import MetricHistory, history_from_trainer_state
from tunedeck.runner.rundir.protocol import CHECKPOINT_PREFIX, INCOMPLETE_MARKER, TRAINER_STATE

if TYPE_CHECKING:
    from tunedeck.runner.monitor.host import DiskInfo

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")


@dataclass(frozen=True)
class CheckpointInfo:
    """One ``checkpoint-N`` directory. Sizes in bytes; ``mtime`` is the newest entry's."""

    path: Path
    step: int
    mtime: float
    size_bytes: int
    kind: str  # "adapter" | "full" | "deepspeed" | "unknown"
    complete: bool
    reason: str | None  # why it is incomplete
    loss: float | None
    eval_loss: float | None
    resumable_full: bool = False  # complete and holds optimizer state
    # The step whose logged value ``loss`` / ``eval_loss`` is (the last logged at or before
    # ``step``): differs from ``step`` when the checkpoint falls between logging steps.
    loss_step: int | None = None
    eval_loss_step: int | None = None

    @property
    def name(self) -> str:
        return self.path.name


def checkpoint_step(name: str) -> int | None:
    """N for a directory named ``checkpoint-N``, else None."""
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    digits = name[len(CHECKPOINT_PREFIX) :]
    return int(digits) if digits.isdigit() else None


def checkpoint_dirs(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """THE checkpoint listing: ``(N, path)`` of each ``checkpoint-N`` directory directly in
    ``run_dir`` (symlinks not followed), by step; nothing for an unreadable directory."""
    out = []
    try:
        with os.scandir(run_dir) as it:
            for e in it:
                step = checkpoint_step(e.name)
                if step is not None and e.is_dir(follow_symlinks=False):
                    out.append((step, Path(e.path)))
    except OSError:
        return []
    out.sort()
    return out


def _tree_size(path: str) -> tuple[int, float]:
    """Total bytes and newest mtime under ``path`` (no symlink following)."""
    size = 0
    newest = 0.0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    newest = max(newest, st.st_mtime)
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    else:
                        size += st.st_size
        except OSError:
            continue
    return size, newest


def _json_looks_whole(path: Path) -> bool:
    """Cheap truncation check: non-empty and the last non-blank byte closes the object."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            if end == 0:
                return False
            fh.seek(max(0, end - 64))
            return fh.read().rstrip().endswith(b"}")
    except OSError:
        return False


def _missing_shards(index: Path, names: set[str]) -> list[str] | None:
    """Shards named by a ``*.index.json`` that are absent; None if the index is unreadable."""
    try:
        data = json.loads(index.read_bytes())
        shards = set(data["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return sorted(s for s in shards if s not in names)


def _inspect(path: Path, step: int, *, with_size: bool = True) -> CheckpointInfo:
    """Layout and completeness of one checkpoint (loss filled in by the caller)."""
    files: dict[str, int] = {}
    subdirs: list[str] = []
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        subdirs.append(e.name)
                    else:
                        files[e.name] = e.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except OSError as exc:
        return CheckpointInfo(
            path, step, 0.0, 0, "unknown", False, f"unreadable: {exc}", None, None
        )

    names = set(files)
    ds_dirs = [d for d in subdirs if d.startswith("global_step")]
    fsdp_dirs = [d for d in subdirs if d.startswith("pytorch_model_fsdp")]
    adapter = [n for n in ADAPTER_WEIGHTS if n in names]
    full = sorted(
        n
        for n in names
        if (n.startswith("model") and n.endswith(".safetensors"))
        or (n.startswith("pytorch_model") and n.endswith(".bin"))
    )
    if ds_dirs:
        kind = "deepspeed"
    elif adapter:
        kind = "adapter"
    elif full or fsdp_dirs or any(i in names for i in SHARD_INDEXES):
        kind = "full"
    else:
        kind = "unknown"

    reason = _incomplete_reason(path, files, adapter + full, ds_dirs, fsdp_dirs)
    complete = reason is None
    has_optimizer = any(n in names for n in OPTIMIZER_FILES) or any(
        d.startswith("optimizer") for d in subdirs
    )
    if ds_dirs and not has_optimizer:
        has_optimizer = any("optim_states" in f for f in _listdir(path / sorted(ds_dirs)[-1]))
    if with_size:
        size, newest = _tree_size(str(path))
    else:
        size, newest = sum(files.values()), 0.0
    with contextlib.suppress(OSError):
        newest = max(newest, path.stat().st_mtime)
    return CheckpointInfo(
        path=path,
        step=step,
        mtime=newest,
        size_bytes=size,
        kind=kind,
        complete=complete,
        reason=reason,
        loss=None,
        eval_loss=None,
        resumable_full=complete and has_optimizer,
    )


def _incomplete_reason(path: Path, files: dict[str, int], weights: list[str], ds_dirs: list[str],
                       fsdp_dirs: list[str]) -> str | None:
    """Why the checkpoint in ``path`` (its ``files`` with their sizes) is incomplete; None
    when it is complete (the one completeness rule)."""
    names = set(files)
    if INCOMPLETE_MARKER in names:
        return f"{INCOMPLETE_MARKER} present: the save was interrupted"
    if not (weights or ds_dirs or fsdp_dirs):
        return "no weights (adapter_model.*, model*.safetensors, pytorch_model*.bin or global_step*/)"
    if empty := [n for n in weights if files[n] == 0]:
        return f"empty weights file: {empty[0]}"
    for index_name in SHARD_INDEXES:
        if index_name in names:
            missing = _missing_shards(path / index_name, names)
            if missing is None:
                return f"{index_name} is unreadable"
            if missing:
                more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
                return f"missing shard {missing[0]}{more}"
    if ds_dirs:
        ds_files = _listdir(path / sorted(ds_dirs)[-1])
        if not any(f.endswith(".pt") for f in ds_files):
            return f"{sorted(ds_dirs)[-1]}/ holds no DeepSpeed state"
    if TRAINER_STATE not in names:
        return f"no {TRAINER_STATE}"
    if not _json_looks_whole(path / TRAINER_STATE):
        return f"{TRAINER_STATE} is empty or truncated"
    return None


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _with_metrics(infos: list[CheckpointInfo], history: MetricHistory) -> list[CheckpointInfo]:
    out = []
    for c in infos:
        # NaN stays NaN (a diverged checkpoint is worth seeing); None = not logged.
        loss = history.logged_at_or_before("loss", c.step)
        ev = history.logged_at_or_before("eval_loss", c.step)
        out.append(dataclasses.replace(
            c,
            loss=loss[1] if loss else None,
            eval_loss=ev[1] if ev else None,
            loss_step=int(loss[0]) if loss else None,
            eval_loss_step=int(ev[0]) if ev else None,
        ))
    return out


def _history_for(infos: list[CheckpointInfo]) -> MetricHistory | None:
    # The newest checkpoint's trainer_state.json holds the log history of the
    # trajectory that led to every older checkpoint still on disk.
    for c in reversed(infos):
        state = c.path / TRAINER_STATE
        if state.is_file():
            return history_from_trainer_state(state)
    return None


def scan_checkpoints(
    run_dir: str | os.PathLike[str], history: MetricHistory | None = None
) -> list[CheckpointInfo]:
    """Every ``checkpoint-N`` directly under ``run_dir``, sorted by step.

    ``loss``/``eval_loss`` are the last values logged at or before N, from
    ``history`` or else from the newest checkpoint's ``trainer_state.json``.
    """
    infos = [_inspect(p, step) for step, p in checkpoint_dirs(Path(run_dir))]
    if history is None:
        history = _history_for(infos)
    return _with_metrics(infos, history) if history is not None else infos


def checkpoint_paths(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The ``checkpoint-N`` directories of ``run_dir``, by step."""
    return [p for _, p in checkpoint_dirs(run_dir)]


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Layout and completeness of one checkpoint directory (no metrics, no tree size)."""
    p = Path(path)
    return _inspect(p, checkpoint_step(p.name) or 0, with_size=False)


def list_checkpoints(run_dir: str | os.PathLike[str], *, with_size: bool = False) -> list[CheckpointInfo]:
    """Every checkpoint of ``run_dir`` judged by THE rule, by step, without metrics."""
    return [_inspect(p, step, with_size=with_size) for step, p in checkpoint_dirs(run_dir)]


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes of every file under ``path`` (symlinks not followed)."""
    return _tree_size(str(path))[0]


def checkpoint_complete(path: str | os.PathLike[str]) -> bool:
    """The one completeness rule (status, stop, resume, the TUI): weights present and
    non-empty, every shard of an index, trainer_state.json whole, no incomplete marker."""
    return inspect_checkpoint(path).complete


def latest_complete(run_dir: str | os.PathLike[str]) -> CheckpointInfo | None:
    """The newest complete checkpoint (for ``resume_from_checkpoint: latest``), or None.

    Cheap: inspects from the newest down and stops at the first complete one;
    no metrics are read.
    """
    for step, p in reversed(checkpoint_dirs(Path(run_dir))):
        info = _inspect(p, step, with_size=False)
        if info.complete:
            return _inspect(p, step)
    return None


def newest_complete(run_dir: str | os.PathLike[str]) -> Path | None:
    """Path of the newest complete checkpoint (what ``resume`` and a restart start from)."""
    found = latest_complete(run_dir)
    return found.path if found is not None else None


class CheckpointWatcher:
    """Re-scans a run's checkpoints only when the run directory or a checkpoint
    directory changed (mtime); otherwise :meth:`poll` returns the cached list.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.scans = 0
        self.changed = False
        self._key: tuple[object, ...] | None = None
        self._raw: list[CheckpointInfo] = []
        self._annotated: list[CheckpointInfo] = []
        self._history_key: tuple[int, int, int] | None = None

    def _fingerprint(self) -> tuple[object, ...] | None:
        try:
            top = os.stat(self.run_dir).st_mtime_ns
        except OSError:
            return None
        children = []
        for step, p in checkpoint_dirs(self.run_dir):
            try:
                children.append((step, os.stat(p).st_mtime_ns))
            except OSError:
                continue
        return (top, tuple(children))

    def poll(self, history: MetricHistory | None = None) -> list[CheckpointInfo]:
        """The checkpoints now; ``changed`` says whether anything differs from last time."""
        key = self._fingerprint()
        rescanned = key != self._key
        if rescanned:
            self._key = key
            self.scans += 1
            self._raw = [_inspect(p, step) for step, p in checkpoint_dirs(self.run_dir)]
        hkey = (id(history), len(history), history.rewinds) if history is not None else None
        if rescanned or hkey != self._history_key:
            self._history_key = hkey
            h = history if history is not None else _history_for(self._raw)
            annotated = _with_metrics(self._raw, h) if h is not None else list(self._raw)
            self.changed = annotated != self._annotated
            self._annotated = annotated
        else:
            self.changed = False
        return list(self._annotated)


@dataclass(frozen=True)
class DiskHeadroom:
    """Free space where the checkpoints go versus what one checkpoint takes."""

    disk: DiskInfo | None
    checkpoint_bytes: int | None  # size of the newest checkpoint
    saves_left: int | None  # how many more checkpoints of that size fit
    low: bool  # the next save may not fit
    message: str | None


def disk_headroom(
    run_dir: str | os.PathLike[str],
    checkpoints: list[CheckpointInfo] | None = None,
    *,
    margin: float = 1.2,
) -> DiskHeadroom:
    """Will the next checkpoint fit? (``save_total_limit`` deletes old ones only *after*
    the new one is written, so room for one more is always needed.) A full disk
    kills a long run at its next save.
    """
    from tunedeck.runner.monitor.host import disk_info  # psutil: only when asked

    disk = disk_info(run_dir)
    if checkpoints is None:
        checkpoints = scan_checkpoints(run_dir, history=MetricHistory())
    sizes = [c.size_bytes for c in checkpoints if c.size_bytes > 0]
    ckpt = sizes[-1] if sizes else None
    if disk is None or ckpt is None:
        return DiskHeadroom(disk, ckpt, None, False, None)
    saves_left = disk.free_bytes // ckpt
    low = disk.free_bytes < ckpt * margin
    message = None
    if low:
        message = (
            f"only {disk.free_bytes / 2**30:.1f} GiB free on {disk.mount}; the last checkpoint "
            f"took {ckpt / 2**30:.1f} GiB: the next save will probably fail (ENOSPC). "
            "Free space, lower save_total_limit, or set save_only_model"
        )
    return DiskHeadroom(disk, ckpt, int(saves_left), low, message)
