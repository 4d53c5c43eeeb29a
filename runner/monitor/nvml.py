"""A facade over ``pynvml`` (the ``nvidia-ml-py`` distribution) that never raises.

It initialises lazily under a lock, turns "no driver" into one message, returns
``None`` (:data:`NA`) for any field the driver cannot give (MIG instances, old
drivers, a GPU that fell off the bus) and hands out immutable snapshots.

The backend is the real ``pynvml`` module, or, when the environment variable
``TUNEDECK_FAKE_NVML=<scenario>`` is set, the fake of :mod:`tunedeck.runner.monitor.fake_nvml`.
That variable is for testing and demos only.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger("tunedeck.monitor.nvml")

NA = None  # a field the driver cannot give is None

FAKE_ENV = "TUNEDECK_FAKE_NVML"
NO_DRIVER_MESSAGE = "no NVIDIA driver found: GPU monitoring is off"

# NVML's "not available" sentinels for unsigned fields.
_NA_UINT = 0xFFFFFFFF
_NA_ULONGLONG = 0xFFFFFFFFFFFFFFFF

# Errors meaning there is no usable driver at all: final, reported once.
_NO_DRIVER = frozenset({"NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded"})
# Errors meaning the library lost its state (driver reloaded, shut down): re-init next time.
_REINIT = frozenset({"NVMLError_Uninitialized", "NVMLError_LibRmVersionMismatch"})
# Errors meaning this GPU is gone or wedged: stop asking it anything this round
# (a lost GPU can take seconds per call to time out) and say why.
_GPU_FATAL = frozenset(
    {
        "NVMLError_GpuIsLost",
        "NVMLError_ResetRequired",
        "NVMLError_Unknown",
        "NVMLError_IrqIssue",
        "NVMLError_Timeout",
        "NVMLError_GpuNotFound",
        "NVMLError_InvalidState",
    }
)
# Errors meaning "this function does not exist in this driver": log once.
_MISSING = frozenset({"NVMLError_FunctionNotFound"})


@dataclass(frozen=True)
class GpuProcess:
    """A process holding memory on a GPU (host pid: NVML ignores pid namespaces)."""

    pid: int
    used_bytes: int | None
    name: str | None


@dataclass(frozen=True)
class GpuInfo:
    """One GPU at one moment. Memory in bytes; ``None`` = not available."""

    index: int
    name: str | None
    uuid: str | None
    mem_used: int | None
    mem_total: int | None
    mem_reserved: int | None  # driver-reserved memory (v2 memory API); None on old drivers
    util_gpu: int | None
    util_mem: int | None
    temperature: int | None
    power_w: float | None
    power_limit_w: float | None
    processes: tuple[GpuProcess, ...]
    error: str | None  # e.g. "GPU is lost" when it fell off the bus

    @property
    def mem_free(self) -> int | None:
        if self.mem_total is None or self.mem_used is None:
            return None
        return max(0, self.mem_total - self.mem_used - (self.mem_reserved or 0))


@dataclass(frozen=True)
class GpuSnapshot:
    """Every GPU at one moment; ``available`` is False with a ``message`` when NVML is off."""

    available: bool
    message: str | None
    driver_version: str | None
    gpus: tuple[GpuInfo, ...]
    taken_at: float

    @property
    def no_driver(self) -> bool:
        """NVML is off because there is no NVIDIA driver (not because it failed)."""
        return not self.available and self.message == NO_DRIVER_MESSAGE


class _GpuFailed(Exception):
    """Internal: a GPU-fatal error; carries the text for :attr:`GpuInfo.error`."""


def _err_name(exc: BaseException) -> str:
    return type(exc).__name__


def _err_text(exc: BaseException) -> str:
    # pynvml's NVMLError.__str__ may call into the library for unknown codes.
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or _err_name(exc)


def _uint(value: Any, *, limit: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value < 0 or value in (_NA_UINT, _NA_ULONGLONG):
        return None
    if limit is not None and value > limit:
        return None
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        value = value.strip("\x00 ").strip()
        return value or None
    return None


# What the NVIDIA driver shows on Linux: its control device (bare metal, containers given
# GPUs) or WSL2's GPU device, and the kernel module's folder.
_NVIDIA_DEVICE_PATHS = ("/dev/nvidiactl", "/dev/dxg", "/proc/driver/nvidia")


def no_nvidia_device() -> bool:
    """On Linux, no NVIDIA driver is there to talk to: nvmlInit could only fail. Checked
    before importing pynvml, which costs ~50 ms of every ``launch`` and every run's end."""
    return sys.platform.startswith("linux") and not any(os.path.exists(p) for p in _NVIDIA_DEVICE_PATHS)


def _load_backend() -> tuple[ModuleType | None, str | None]:
    """The pynvml-shaped module to use, or (None, why not)."""
    scenario = os.environ.get(FAKE_ENV, "").strip()
    if scenario:
        from tunedeck.runner.monitor import fake_nvml

        try:
            return fake_nvml.make_fake_nvml(scenario), None
        except ValueError as exc:
            return None, f"{FAKE_ENV}: {exc}"
    if no_nvidia_device():
        return None, NO_DRIVER_MESSAGE
    try:
        import pynvml
    except Exception as exc:  # not installed, or a broken/shadowed copy
        return None, f"pynvml (nvidia-ml-py) cannot be imported ({exc}): GPU monitoring is off"
    return pynvml, None


class Nvml:
    """The NVML facade. Thread-safe; :meth:`snapshot` never raises.

    ``backend`` is a pynvml-shaped module (tests pass a fake); ``None`` picks the
    real ``pynvml`` or the fake named by ``TUNEDECK_FAKE_NVML`` at first use.
    """

    def __init__(self, backend: ModuleType | None = None) -> None:
        self._backend = backend
        self._backend_given = backend is not None
        self._lock = threading.RLock()
        self._state = "new"  # new | ready | off
        self._off_message: str | None = None
        self._driver_version: str | None = None
        self._mem_v1_only: set[int] = set()  # GPUs where the v2 memory call failed
        self._logged: set[str] = set()
        self.missing_functions: set[str] = set()
        self._proc_cache: dict[int, tuple[GpuProcess, ...]] = {}
        self._proc_cache_at = 0.0
        self._shutdown_registered = False

    # -- lifecycle -----------------------------------------------------------
    def _ensure_init(self) -> bool:
        if self._state == "ready":
            return True
        if self._state == "off":
            return False
        if self._backend is None and not self._backend_given:
            self._backend, why = _load_backend()
            if self._backend is None:
                self._go_off(why or NO_DRIVER_MESSAGE)
                return False
        nv = self._backend
        assert nv is not None
        try:
            nv.nvmlInit()
        except Exception as exc:
            if _err_name(exc) in _NO_DRIVER:
                self._go_off(NO_DRIVER_MESSAGE, detail=_err_text(exc))
            else:
                # A transient failure (driver busy, permissions being fixed):
                # report it but try again on the next snapshot.
                self._log_once(f"init:{_err_name(exc)}", "NVML init failed: %s", _err_text(exc))
                self._off_message = f"NVML init failed: {_err_text(exc)}"
            return False
        self._state = "ready"
        self._off_message = None
        if not self._shutdown_registered:
            atexit.register(_shutdown_weak, weakref.ref(self))
            self._shutdown_registered = True
        try:
            self._driver_version = _text(self._call(nv, "nvmlSystemGetDriverVersion"))
        except _GpuFailed:
            self._driver_version = None
        return True

    def _go_off(self, message: str, detail: str | None = None) -> None:
        self._state = "off"
        self._off_message = message
        if "off" not in self._logged:  # normal on a GPU-less box: info, once
            self._logged.add("off")
            log.info("%s%s", message, f" ({detail})" if detail else "")

    def shutdown(self) -> None:
        """Release NVML (registered with atexit); the next snapshot re-initialises."""
        with self._lock:
            if self._state != "ready":
                return
            self._state = "new"
            with contextlib.suppress(Exception):
                self._backend.nvmlShutdown()  # type: ignore[union-attr]

    @property
    def available(self) -> bool:
        """Whether NVML works (initialises on first call)."""
        with self._lock:
            return self._ensure_init()

    # -- queries -------------------------------------------------------------
    def _log_once(self, key: str, msg: str, *args: Any) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        log.warning(msg, *args)

    def _classify(self, name: str, exc: BaseException) -> bool:
        """Handle an error from ``nv.<name>``: True if the function is missing.

        Raises :class:`_GpuFailed` for errors that mean the GPU (or driver) is gone;
        anything else means "not available" and returns False.
        """
        ename = _err_name(exc)
        if ename in _MISSING:
            self.missing_functions.add(name)
            self._log_once(f"missing:{name}", "NVML has no %s (old driver): N/A", name)
            return True
        if ename in _GPU_FATAL:
            raise _GpuFailed(_err_text(exc)) from exc
        if ename in _REINIT or ename in _NO_DRIVER:
            self._state = "new"  # the driver went away under us: initialise again next time
            raise _GpuFailed(_err_text(exc)) from exc
        if not ename.startswith("NVMLError"):
            # NVMLLibraryMismatchError, a TypeError from an odd binding...
            self._log_once(f"odd:{name}:{ename}", "NVML %s failed: %s", name, _err_text(exc))
        return False

    def _call(self, nv: ModuleType, name: str, *args: Any, **kwargs: Any) -> Any:
        """``nv.<name>(...)``, or NA for anything the driver can't give.

        Raises :class:`_GpuFailed` for errors that mean the GPU is gone.
        """
        fn = getattr(nv, name, None)
        if fn is None:
            self.missing_functions.add(name)
            self._log_once(f"missing:{name}", "NVML has no %s (old driver/binding): N/A", name)
            return NA
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._classify(name, exc)
            return NA

    def _memory(
        self, nv: ModuleType, index: int, handle: Any
    ) -> tuple[int | None, int | None, int | None]:
        fn = getattr(nv, "nvmlDeviceGetMemoryInfo", None)
        version = getattr(nv, "nvmlMemory_v2", None)
        if fn is not None and version is not None and index not in self._mem_v1_only:
            # v2 separates driver-reserved memory from "used" (v1 lumps them together).
            try:
                mem = fn(handle, version=version)
            except Exception as exc:
                name = _err_name(exc)
                if name in _GPU_FATAL or name in _REINIT or name in _NO_DRIVER:
                    self._classify("nvmlDeviceGetMemoryInfo_v2", exc)
                # Old driver (FunctionNotFound), MIG (NotSupported), an old binding
                # (TypeError): use v1 for this GPU from now on.
                self._mem_v1_only.add(index)
            else:
                total = _uint(getattr(mem, "total", None))
                if total is not None:
                    return (
                        _uint(getattr(mem, "used", None)),
                        total,
                        _uint(getattr(mem, "reserved", None)),
                    )
                self._mem_v1_only.add(index)
        mem = self._call(nv, "nvmlDeviceGetMemoryInfo", handle)
        if mem is None:
            return NA, NA, NA
        return _uint(getattr(mem, "used", None)), _uint(getattr(mem, "total", None)), NA

    def _processes(self, nv: ModuleType, handle: Any) -> tuple[GpuProcess, ...]:
        found: dict[int, int | None] = {}
        for family in ("Compute", "Graphics"):
            raw = None
            # Newest struct first; a driver without it says FunctionNotFound (logged once).
            for suffix in ("_v3", "_v2", ""):
                name = f"nvmlDeviceGet{family}RunningProcesses{suffix}"
                fn = getattr(nv, name, None)
                if fn is None or name in self.missing_functions:
                    continue
                try:
                    raw = fn(handle)
                except Exception as exc:
                    if self._classify(name, exc):
                        continue
                    raw = None
                break
            for p in raw or ():
                pid = _uint(getattr(p, "pid", None))
                if pid is None:
                    continue
                used = getattr(p, "usedGpuMemory", None)
                used = _uint(used) if used is not None else None
                if pid in found:
                    # Listed as compute and graphics: keep the larger figure.
                    prev = found[pid]
                    used = max(prev or 0, used or 0) if (prev, used) != (None, None) else None
                found[pid] = used
        return tuple(
            GpuProcess(pid=pid, used_bytes=found[pid], name=self._proc_name(nv, pid))
            for pid in sorted(found)
        )

    def _proc_name(self, nv: ModuleType, pid: int) -> str | None:
        try:
            name = _text(self._call(nv, "nvmlSystemGetProcessName", pid))
        except _GpuFailed:
            name = None
        if name:
            return os.path.basename(name) or name
        try:
            import psutil

            return psutil.Process(pid).name()
        except Exception:
            return None

    def _gpu(self, nv: ModuleType, index: int, with_processes: bool, use_cache: bool) -> GpuInfo:
        fields: dict[str, Any] = dict(
            name=NA, uuid=NA, mem_used=NA, mem_total=NA, mem_reserved=NA, util_gpu=NA,
            util_mem=NA, temperature=NA, power_w=NA, power_limit_w=NA,
        )  # fmt: skip
        processes: tuple[GpuProcess, ...] = ()
        error: str | None = None
        try:
            handle = self._call(nv, "nvmlDeviceGetHandleByIndex", index)
            if handle is None:
                error = "cannot get a handle for this GPU"
            else:
                fields["name"] = _text(self._call(nv, "nvmlDeviceGetName", handle))
                fields["uuid"] = _text(self._call(nv, "nvmlDeviceGetUUID", handle))
                used, total, reserved = self._memory(nv, index, handle)
                fields.update(mem_used=used, mem_total=total, mem_reserved=reserved)
                util = self._call(nv, "nvmlDeviceGetUtilizationRates", handle)
                if util is not None:
                    fields["util_gpu"] = _uint(getattr(util, "gpu", None), limit=100)
                    fields["util_mem"] = _uint(getattr(util, "memory", None), limit=100)
                sensor = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
                fields["temperature"] = _uint(
                    self._call(nv, "nvmlDeviceGetTemperature", handle, sensor), limit=200
                )
                mw = _uint(self._call(nv, "nvmlDeviceGetPowerUsage", handle))
                fields["power_w"] = mw / 1000.0 if mw is not None else NA
                limit = _uint(self._call(nv, "nvmlDeviceGetEnforcedPowerLimit", handle))
                if limit is None:
                    limit = _uint(self._call(nv, "nvmlDeviceGetPowerManagementLimit", handle))
                fields["power_limit_w"] = limit / 1000.0 if limit is not None else NA
                if with_processes:
                    if use_cache and index in self._proc_cache:
                        processes = self._proc_cache[index]
                    else:
                        processes = self._processes(nv, handle)
        except _GpuFailed as exc:
            error = str(exc)
        return GpuInfo(index=index, processes=processes, error=error, **fields)

    def snapshot(self, with_processes: bool = True, *, process_max_age: float = 0.0) -> GpuSnapshot:
        """Every GPU now. Never raises.

        ``process_max_age`` > 0 reuses process lists younger than that many seconds
        (process queries are the expensive part; poll devices at ~1 Hz and let
        processes refresh every ~2 s).
        """
        with self._lock:
            try:
                return self._snapshot(with_processes, process_max_age)
            except Exception as exc:  # a bug or a truly odd backend: still never raise
                self._log_once(f"snapshot:{_err_name(exc)}", "NVML snapshot failed: %r", exc)
                return GpuSnapshot(False, f"NVML failure: {_err_text(exc)}", None, (), time.time())

    def _snapshot(self, with_processes: bool, process_max_age: float) -> GpuSnapshot:
        now = time.time()
        if not self._ensure_init():
            return GpuSnapshot(False, self._off_message or NO_DRIVER_MESSAGE, None, (), now)
        nv = self._backend
        assert nv is not None
        try:
            count = _uint(self._call(nv, "nvmlDeviceGetCount"))
        except _GpuFailed as exc:
            return GpuSnapshot(False, f"NVML error: {exc}", self._driver_version, (), now)
        if count is None:
            return GpuSnapshot(False, "NVML cannot count the GPUs", self._driver_version, (), now)
        mono = time.monotonic()
        use_cache = (
            with_processes
            and process_max_age > 0
            and mono - self._proc_cache_at < process_max_age
            and len(self._proc_cache) == count
        )
        gpus = tuple(self._gpu(nv, i, with_processes, use_cache) for i in range(count))
        if with_processes and not use_cache:
            self._proc_cache = {g.index: g.processes for g in gpus}
            self._proc_cache_at = mono
        return GpuSnapshot(True, None, self._driver_version, gpus, now)


def _shutdown_weak(ref: weakref.ReferenceType[Nvml]) -> None:
    nv = ref()
    if nv is not None:
        nv.shutdown()


_NVML: Nvml | None = None
_NVML_LOCK = threading.Lock()


def get_nvml() -> Nvml:
    """The process-wide facade (backend chosen from the environment at first use)."""
    global _NVML
    with _NVML_LOCK:
        if _NVML is None:
            _NVML = Nvml()
        return _NVML


def reset_nvml() -> None:
    """Forget the process-wide facade (tests that switch ``TUNEDECK_FAKE_NVML``)."""
    global _NVML
    with _NVML_LOCK:
        if _NVML is not None:
            _NVML.shutdown()
        _NVML = None


def pids_on_gpus(snapshot: GpuSnapshot, pids: Iterable[int]) -> dict[int, list[GpuProcess]]:
    """GPU index -> the processes among ``pids`` still holding memory there.

    What a stop uses to verify that no process of a run is left on a GPU.
    """
    wanted = set(pids)
    out: dict[int, list[GpuProcess]] = {}
    for gpu in snapshot.gpus:
        hits = [p for p in gpu.processes if p.pid in wanted]
        if hits:
            out[gpu.index] = hits
    return out


def snapshot_to_dict(
    snapshot: GpuSnapshot, owner: Callable[[int], tuple[str, str] | None] | None = None
) -> dict[str, Any]:
    """JSON-ready form (``tunedeck gpus --json``); ``owner(pid)`` -> (run id, run name)."""
    gpus = []
    for g in snapshot.gpus:
        procs = []
        for p in g.processes:
            who = owner(p.pid) if owner else None
            procs.append(
                {
                    "pid": p.pid,
                    "used_bytes": p.used_bytes,
                    "name": p.name,
                    "run_id": who[0] if who else None,
                    "run_name": who[1] if who else None,
                }
            )
        gpus.append(
            {
                "index": g.index,
                "name": g.name,
                "uuid": g.uuid,
                "mem_used": g.mem_used,
                "mem_total": g.mem_total,
                "mem_reserved": g.mem_reserved,
                "util_gpu": g.util_gpu,
                "util_mem": g.util_mem,
                "temperature": g.temperature,
                "power_w": g.power_w,
                "power_limit_w": g.power_limit_w,
                "error": g.error,
                "processes": procs,
            }
        )
    return {
        "available": snapshot.available,
        "message": snapshot.message,
        "driver_version": snapshot.driver_version,
        "taken_at": snapshot.taken_at,
        "gpus": gpus,
    }
