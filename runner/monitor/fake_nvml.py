"""A fake ``pynvml`` for tests and demos on machines without a GPU.

Selected by ``TUNEDECK_FAKE_NVML=<scenario>`` (for testing only; see
:func:`tunedeck.runner.monitor.nvml.get_nvml`). The object returned by
:func:`make_fake_nvml` is module-shaped like ``pynvml``: the same function names,
the same struct field names, and it raises ``pynvml``'s own exception classes, so
the facade runs exactly the code paths it runs against a real driver.

Scenarios:

- ``none``: no driver (``nvmlInit`` raises ``NVMLError_LibraryNotFound``);
  ``driver-not-loaded``: the library is there, the kernel module is not.
- ``gpu1``, ``gpu2``, ``gpu8``: 1 A100-80GB, 2 RTX 4090, 8 H100 with processes
  (gpu2 also has a graphics process on GPU 1; GPU 7 of gpu8 is idle).
- ``flaky``: 2 GPUs; GPU 1 fell off the bus (name/UUID answer from the driver's
  cache, every other call raises ``NVMLError_GpuIsLost``).
- ``mig``: an A100 in MIG mode: no v2 memory info, utilisation or power
  (``NVMLError_NotSupported``); process memory not available.
- ``filling``: 1 RTX 4090 whose memory grows by ``fill_rate`` bytes/s (default
  1 GiB/s) from 2 GiB up to full.
- ``errors-everywhere``: ``nvmlInit`` works; every other call raises a random
  pynvml error class (all of them, plus ``NVMLLibraryMismatchError``) with
  probability ``error_rate`` (default 0.5, so that every code path behind a
  successful call is reached too; 1.0 = always). Seeded by
  ``TUNEDECK_FAKE_NVML_SEED`` (default 0).

Fake processes have pids above Linux's PID_MAX_LIMIT (2**22), so they never
match a real process. ``TUNEDECK_FAKE_NVML_PIDS="gpu:pid:bytes,..."`` adds
processes (``bytes`` may end in K/M/G, binary units), e.g. to put a real run's
trainer on fake GPU 1: ``TUNEDECK_FAKE_NVML_PIDS="1:12345:30G"``.
"""

from __future__ import annotations

import logging
import os
import random
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pynvml

log = logging.getLogger("tunedeck.monitor.fake_nvml")

SCENARIOS = (
    "none",
    "driver-not-loaded",
    "gpu1",
    "gpu2",
    "gpu8",
    "flaky",
    "mig",
    "filling",
    "errors-everywhere",
)
PIDS_ENV = "TUNEDECK_FAKE_NVML_PIDS"
SEED_ENV = "TUNEDECK_FAKE_NVML_SEED"
FAKE_PID_BASE = 4_194_305  # > PID_MAX_LIMIT on Linux: can never be a live process

# The driver answers these from its cache even for a GPU that fell off the bus.
_CACHED = frozenset({"nvmlDeviceGetName", "nvmlDeviceGetUUID"})

GiB = 1 << 30
MiB = 1 << 20

# Every exception class pynvml can raise from a call: NVMLError's subclasses plus
# the version-mismatch error raised by unversioned wrappers.
ERROR_CLASSES: tuple[type[Exception], ...] = tuple(
    sorted(
        (
            obj
            for name, obj in vars(pynvml).items()
            if name.startswith("NVMLError_")
            and isinstance(obj, type)
            and issubclass(obj, pynvml.NVMLError)
        ),
        key=lambda c: c.__name__,
    )
) + (pynvml.NVMLLibraryMismatchError,)


def error_class(name: str) -> type[Exception]:
    """pynvml's exception class by name, e.g. ``"NVMLError_GpuIsLost"``."""
    cls = getattr(pynvml, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        raise ValueError(f"pynvml has no exception class {name!r}")
    return cls


def _raise(name: str) -> None:
    cls = error_class(name)
    if cls is pynvml.NVMLLibraryMismatchError:
        raise cls("fake: unversioned function and library versions differ")
    raise cls()


@dataclass
class FakeGpu:
    """The state of one fake device; ``fails`` maps a function name (or ``"*"``) to an error."""

    name: str
    total: int
    used: int
    reserved: int = 512 * MiB
    util_gpu: int = 0
    util_mem: int = 0
    temperature: int = 35
    power_mw: int = 60_000
    limit_mw: int = 450_000
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    fails: dict[str, str] = field(default_factory=dict)
    fill_rate: float = 0.0  # bytes per second of the fake clock
    uuid: str = ""


@dataclass(frozen=True)
class _Handle:
    index: int


@dataclass
class _Proc:
    pid: int
    usedGpuMemory: int | None  # noqa: N815 - pynvml's field name
    gpuInstanceId: int = 0xFFFFFFFF  # noqa: N815
    computeInstanceId: int = 0xFFFFFFFF  # noqa: N815


class _Backend:
    def __init__(
        self,
        scenario: str,
        gpus: list[FakeGpu],
        *,
        init_error: str | None = None,
        error_rate: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        names: Mapping[int, str] | None = None,
    ) -> None:
        self.scenario = scenario
        self.gpus = gpus
        self.init_error = init_error
        self.error_rate = error_rate
        self.rng = random.Random(seed)
        self.clock = clock
        self.t0 = clock()
        self.names = dict(names or {})
        self.initialized = 0
        self.calls = 0

    # -- helpers -------------------------------------------------------------
    def _enter(self, fn: str, handle: _Handle | None = None) -> FakeGpu | None:
        self.calls += 1
        if self.error_rate and self.rng.random() < self.error_rate:
            _raise(self.rng.choice(ERROR_CLASSES).__name__)
        if not self.initialized:
            _raise("NVMLError_Uninitialized")
        if handle is None:
            return None
        if not isinstance(handle, _Handle) or not 0 <= handle.index < len(self.gpus):
            _raise("NVMLError_InvalidArgument")
        gpu = self.gpus[handle.index]
        err = gpu.fails.get(fn)
        if err is None and fn not in _CACHED:
            err = gpu.fails.get("*")
        if err:
            _raise(err)
        return gpu

    def _used(self, gpu: FakeGpu) -> int:
        if not gpu.fill_rate:
            return gpu.used
        grown = gpu.used + int(gpu.fill_rate * max(0.0, self.clock() - self.t0))
        return min(grown, gpu.total - gpu.reserved)

    # -- the pynvml API ------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.calls += 1
        if self.init_error:
            _raise(self.init_error)
        self.initialized += 1

    def nvmlInitWithFlags(self, flags: int) -> None:  # noqa: N802
        self.nvmlInit()

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._enter("nvmlShutdown")
        self.initialized = max(0, self.initialized - 1)

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        self._enter("nvmlSystemGetDriverVersion")
        return "550.54.15"

    def nvmlSystemGetProcessName(self, pid: int) -> str:  # noqa: N802
        self._enter("nvmlSystemGetProcessName")
        name = self.names.get(pid)
        if name is None:
            _raise("NVMLError_NotFound")
        return name  # type: ignore[return-value]

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:  # noqa: N802
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            _raise("NVMLError_InvalidArgument")
        return _Handle(index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:  # noqa: N802
        return self._enter("nvmlDeviceGetName", handle).name  # type: ignore[union-attr]

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:  # noqa: N802
        gpu = self._enter("nvmlDeviceGetUUID", handle)
        return gpu.uuid  # type: ignore[union-attr]

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> Any:  # noqa: N802
        fn = "nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo"
        gpu = self._enter(fn, handle)
        assert gpu is not None
        used = self._used(gpu)
        if version:
            if version != pynvml.nvmlMemory_v2:
                _raise("NVMLError_ArgumentVersionMismatch")
            free = gpu.total - used - gpu.reserved
            return types.SimpleNamespace(
                version=version, total=gpu.total, reserved=gpu.reserved, free=free, used=used
            )
        # v1 counts the driver's reservation as used.
        return types.SimpleNamespace(
            total=gpu.total, free=gpu.total - used - gpu.reserved, used=used + gpu.reserved
        )

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:  # noqa: N802
        gpu = self._enter("nvmlDeviceGetUtilizationRates", handle)
        assert gpu is not None
        return types.SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_mem)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:  # noqa: N802
        gpu = self._enter("nvmlDeviceGetTemperature", handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            _raise("NVMLError_InvalidArgument")
        return gpu.temperature  # type: ignore[union-attr]

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:  # noqa: N802
        return self._enter("nvmlDeviceGetPowerUsage", handle).power_mw  # type: ignore[union-attr]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:  # noqa: N802
        return self._enter("nvmlDeviceGetEnforcedPowerLimit", handle).limit_mw  # type: ignore[union-attr]

    def nvmlDeviceGetPowerManagementLimit(self, handle: _Handle) -> int:  # noqa: N802
        return self._enter("nvmlDeviceGetPowerManagementLimit", handle).limit_mw  # type: ignore[union-attr]

    def _procs(self, fn: str, handle: _Handle, which: str) -> list[_Proc]:
        gpu = self._enter(fn, handle)
        assert gpu is not None
        rows = gpu.compute if which == "compute" else gpu.graphics
        grown = self._used(gpu) - gpu.used
        out = []
        for i, (pid, used) in enumerate(rows):
            # In the filling scenario the first process is the one growing.
            if used is not None and i == 0 and grown:
                used += grown
            out.append(_Proc(pid, used))
        return out

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: _Handle) -> list[_Proc]:  # noqa: N802
        return self._procs("nvmlDeviceGetComputeRunningProcesses_v3", handle, "compute")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[_Proc]:  # noqa: N802
        return self._procs("nvmlDeviceGetComputeRunningProcesses", handle, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: _Handle) -> list[_Proc]:  # noqa: N802
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses_v3", handle, "graphics")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[_Proc]:  # noqa: N802
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses", handle, "graphics")


_API = (
    "nvmlInit", "nvmlInitWithFlags", "nvmlShutdown", "nvmlSystemGetDriverVersion",
    "nvmlSystemGetProcessName", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses",
)  # fmt: skip


def _uuid(i: int, prefix: str = "GPU") -> str:
    return f"{prefix}-fa4e{i:04x}-0000-4000-8000-{i:012x}"


def _scenario_gpus(scenario: str, fill_rate: float) -> tuple[list[FakeGpu], dict[int, str]]:
    b = FAKE_PID_BASE
    names: dict[int, str] = {}
    if scenario == "gpu1":
        gpus = [
            FakeGpu("NVIDIA A100-SXM4-80GB", 80 * GiB, int(31.2 * GiB), util_gpu=87, util_mem=45,
                    temperature=63, power_mw=312_400, limit_mw=400_000,
                    compute=[(b, int(30.7 * GiB))]),
        ]  # fmt: skip
        names[b] = "python3"
    elif scenario == "gpu2":
        gpus = [
            FakeGpu("NVIDIA GeForce RTX 4090", 24 * GiB, int(20.5 * GiB), util_gpu=98,
                    util_mem=61, temperature=71, power_mw=402_500, limit_mw=450_000,
                    compute=[(b, 20 * GiB)]),
            FakeGpu("NVIDIA GeForce RTX 4090", 24 * GiB, int(18.6 * GiB), util_gpu=95,
                    util_mem=58, temperature=68, power_mw=388_000, limit_mw=450_000,
                    compute=[(b + 1, int(17.8 * GiB))], graphics=[(b + 2, 256 * MiB)]),
        ]  # fmt: skip
        names.update({b: "python3", b + 1: "python3", b + 2: "Xorg"})
    elif scenario == "gpu8":
        gpus = []
        for i in range(8):
            busy = i < 7
            used = int((61.5 + i) * GiB) if busy else 0
            gpus.append(
                FakeGpu("NVIDIA H100 80GB HBM3", 80 * GiB, used, util_gpu=90 + i % 4 if busy else 0,
                        util_mem=40 + i if busy else 0, temperature=55 + i if busy else 31,
                        power_mw=(610_000 + 5_000 * i) if busy else 70_000, limit_mw=700_000,
                        compute=[(b + 10 + i, used - 500 * MiB)] if busy else [])
            )  # fmt: skip
            if busy:
                names[b + 10 + i] = "python3"
    elif scenario == "flaky":
        gpus = [
            FakeGpu("NVIDIA GeForce RTX 3090", 24 * GiB, 9 * GiB, util_gpu=40, util_mem=20,
                    temperature=60, power_mw=220_000, limit_mw=350_000,
                    compute=[(b, int(8.5 * GiB))]),
            FakeGpu("NVIDIA GeForce RTX 3090", 24 * GiB, 0,
                    fails={"*": "NVMLError_GpuIsLost",
                           "nvmlDeviceGetUtilizationRates": "NVMLError_Unknown"}),
        ]  # fmt: skip
        names[b] = "python3"
    elif scenario == "mig":
        na = "NVMLError_NotSupported"
        gpus = [
            FakeGpu("NVIDIA A100-SXM4-40GB MIG 3g.20gb", 40 * GiB, int(12.4 * GiB), temperature=49,
                    compute=[(b, None), (b + 1, None)],
                    fails={"nvmlDeviceGetMemoryInfo_v2": na, "nvmlDeviceGetUtilizationRates": na,
                           "nvmlDeviceGetPowerUsage": na, "nvmlDeviceGetEnforcedPowerLimit": na,
                           "nvmlDeviceGetPowerManagementLimit": na}),
        ]  # fmt: skip
        names.update({b: "python3", b + 1: "python3"})
    elif scenario == "filling":
        gpus = [
            FakeGpu("NVIDIA GeForce RTX 4090", 24 * GiB, 2 * GiB, util_gpu=99, util_mem=70,
                    temperature=74, power_mw=430_000, limit_mw=450_000,
                    compute=[(b, int(1.7 * GiB))], fill_rate=fill_rate),
        ]  # fmt: skip
        names[b] = "python3"
    elif scenario == "errors-everywhere":
        gpus = [FakeGpu("NVIDIA GeForce RTX 4090", 24 * GiB, 4 * GiB, compute=[(b, 3 * GiB)])]
        names[b] = "python3"
    else:  # none / driver-not-loaded: never asked
        gpus = []
    for i, g in enumerate(gpus):
        g.uuid = _uuid(i, "MIG" if scenario == "mig" else "GPU")
    return gpus, names


def parse_pids(spec: str) -> list[tuple[int, int, int]]:
    """``"gpu:pid:bytes,..."`` -> [(gpu, pid, bytes)]; malformed entries are skipped (logged)."""
    out = []
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            gpu_s, pid_s, size_s = item.split(":")
            size_s = size_s.strip().upper().removesuffix("IB").removesuffix("B")
            mult = units.get(size_s[-1:], 1)
            size = float(size_s[:-1]) if size_s[-1:] in units else float(size_s)
            out.append((int(gpu_s), int(pid_s), int(size * mult)))
        except ValueError:
            log.warning("%s: ignoring %r (want gpu:pid:bytes)", PIDS_ENV, item)
    return out


def make_fake_nvml(
    scenario: str,
    *,
    clock: Callable[[], float] | None = None,
    seed: int | None = None,
    fill_rate: float = 1.0 * GiB,
    pids: Iterable[tuple[int, int, int]] | None = None,
    fails: Mapping[int, Mapping[str, str]] | None = None,
    error_rate: float = 0.5,
    init_error: str | None = None,
) -> types.ModuleType:
    """A pynvml-shaped module for ``scenario`` (see the module doc).

    ``pids`` adds (gpu, pid, bytes) compute processes (default: from
    ``TUNEDECK_FAKE_NVML_PIDS``); ``error_rate`` is for errors-everywhere; ``fails``
    maps a GPU index to ``{function name or "*": pynvml error class name}`` and
    ``init_error`` names the error ``nvmlInit`` raises (both for tests).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown fake NVML scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    gpus, names = _scenario_gpus(scenario, fill_rate)
    if pids is None:
        pids = parse_pids(os.environ.get(PIDS_ENV, ""))
    for gpu_index, pid, size in pids:
        if 0 <= gpu_index < len(gpus):
            gpus[gpu_index].compute.append((pid, size))
            gpus[gpu_index].used += size
    for gpu_index, table in (fails or {}).items():
        gpus[gpu_index].fails.update(table)
    if seed is None:
        try:
            seed = int(os.environ.get(SEED_ENV, "0"))
        except ValueError:
            seed = 0
    backend = _Backend(
        scenario,
        gpus,
        init_error=init_error or {"none": "NVMLError_LibraryNotFound",
                                  "driver-not-loaded": "NVMLError_DriverNotLoaded"}.get(scenario),
        error_rate=error_rate if scenario == "errors-everywhere" else 0.0,
        seed=seed,
        clock=clock or time.monotonic,
        names=names,
    )  # fmt: skip
    mod = types.ModuleType(f"fake_pynvml[{scenario}]")
    mod.__doc__ = f"fake pynvml, scenario {scenario!r} (tunedeck.runner.monitor.fake_nvml)"
    for name, obj in vars(pynvml).items():
        if name.startswith(("NVMLError", "NVML_ERROR_", "NVML_TEMPERATURE_")):
            setattr(mod, name, obj)
    mod.NVMLLibraryMismatchError = pynvml.NVMLLibraryMismatchError  # type: ignore[attr-defined]
    mod.nvmlMemory_v2 = pynvml.nvmlMemory_v2  # type: ignore[attr-defined]
    for name in _API:
        setattr(mod, name, getattr(backend, name))
    mod.fake_backend = backend  # type: ignore[attr-defined]  # for tests: gpus, calls, clock
    mod.fake_scenario = scenario  # type: ignore[attr-defined]
    return mod
