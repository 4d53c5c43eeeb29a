"""The NVML facade against every fake scenario and every pynvml error class.

The fake raises pynvml's own exception classes, so these are the code paths a
real driver exercises; nothing here needs a GPU.
"""

from __future__ import annotations

import dataclasses
import logging

import pynvml
import pytest

from tunedeck.runner.monitor import fake_nvml
from tunedeck.runner.monitor.fake_nvml import (
    ERROR_CLASSES,
    FAKE_PID_BASE,
    GiB,
    make_fake_nvml,
    parse_pids,
)
from tunedeck.runner.monitor.nvml import (
    NO_DRIVER_MESSAGE,
    GpuInfo,
    GpuProcess,
    GpuSnapshot,
    Nvml,
    get_nvml,
    pids_on_gpus,
    reset_nvml,
)
from tunedeck.runner.rundir.procs import gpu_users

GPU_FIELDS = (
    "name",
    "uuid",
    "mem_used",
    "mem_total",
    "mem_reserved",
    "util_gpu",
    "util_mem",
    "temperature",
    "power_w",
    "power_limit_w",
)
NVML_ERRORS = [c for c in ERROR_CLASSES if issubclass(c, pynvml.NVMLError)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def facade(scenario: str, **kw: object) -> Nvml:
    return Nvml(make_fake_nvml(scenario, pids=kw.pop("pids", ()), **kw))  # type: ignore[arg-type]


def assert_well_formed(snap: GpuSnapshot) -> None:
    assert isinstance(snap, GpuSnapshot)
    assert snap.available or (snap.message and not snap.gpus)
    for g in snap.gpus:
        assert isinstance(g, GpuInfo)
        for f in ("mem_used", "mem_total", "mem_reserved", "util_gpu", "util_mem", "temperature"):
            v = getattr(g, f)
            assert v is None or (isinstance(v, int) and v >= 0), (f, v)
        for p in g.processes:
            assert isinstance(p, GpuProcess) and p.pid > 0


def test_error_classes_cover_every_pynvml_exception() -> None:
    names = {c.__name__ for c in ERROR_CLASSES}
    real = {
        n
        for n, o in vars(pynvml).items()
        if isinstance(o, type) and issubclass(o, pynvml.NVMLError) and n != "NVMLError"
    }
    assert real <= names and "NVMLLibraryMismatchError" in names
    assert len(real) >= 30


@pytest.mark.parametrize("scenario", ["none", "driver-not-loaded"])
def test_no_driver_says_so_once_and_never_raises(
    scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    nv = facade(scenario)
    with caplog.at_level(logging.INFO, logger="tunedeck.monitor.nvml"):
        snaps = [nv.snapshot() for _ in range(3)]
    for s in snaps:
        assert not s.available and s.no_driver and s.gpus == ()
        assert s.message == NO_DRIVER_MESSAGE
    assert len([r for r in caplog.records if "no NVIDIA driver" in r.getMessage()]) == 1
    # The library is not asked again after it said there is no driver.
    assert nv._backend.fake_backend.calls == 1  # type: ignore[union-attr]


def test_gpu1_reports_every_field_with_v2_reserved_memory() -> None:
    snap = facade("gpu1").snapshot()
    assert snap.available and snap.driver_version == "550.54.15"
    (g,) = snap.gpus
    assert all(getattr(g, f) is not None for f in GPU_FIELDS), g
    assert g.name == "NVIDIA A100-SXM4-80GB" and g.mem_total == 80 * GiB
    # v2 separates the driver's reservation from what processes use.
    assert g.mem_reserved == 512 * 1024**2 and g.mem_used == int(31.2 * GiB)
    assert g.power_w == pytest.approx(312.4) and g.power_limit_w == 400.0
    assert g.processes == (GpuProcess(FAKE_PID_BASE, int(30.7 * GiB), "python3"),)
    assert g.error is None


def test_gpu2_lists_compute_and_graphics_processes() -> None:
    snap = facade("gpu2").snapshot()
    assert [g.index for g in snap.gpus] == [0, 1]
    assert [p.name for p in snap.gpus[1].processes] == ["python3", "Xorg"]
    assert snap.gpus[1].processes[1].used_bytes == 256 * 1024**2
    assert facade("gpu2").snapshot(with_processes=False).gpus[1].processes == ()


def test_gpu8_has_eight_devices_and_an_idle_one() -> None:
    snap = facade("gpu8").snapshot()
    assert len(snap.gpus) == 8
    assert all(len(g.processes) == 1 for g in snap.gpus[:7])
    assert snap.gpus[7].processes == () and snap.gpus[7].util_gpu == 0
    assert len({g.uuid for g in snap.gpus}) == 8


def test_flaky_gpu_reports_error_while_the_other_works() -> None:
    snap = facade("flaky").snapshot()
    ok, lost = snap.gpus
    assert ok.error is None and ok.mem_used == 9 * GiB and ok.processes
    assert lost.error == "GPU is lost"
    assert lost.name == "NVIDIA GeForce RTX 3090"  # from the driver's cache
    assert all(getattr(lost, f) is None for f in GPU_FIELDS[2:]) and lost.processes == ()


def test_mig_fields_are_not_available_not_errors() -> None:
    snap = facade("mig").snapshot()
    (g,) = snap.gpus
    assert g.error is None
    assert g.util_gpu is None and g.util_mem is None
    assert g.power_w is None and g.power_limit_w is None
    # No v2 memory call on MIG: v1 numbers (reserved counted as used), reserved unknown.
    assert g.mem_reserved is None and g.mem_used == int(12.4 * GiB) + 512 * 1024**2
    assert g.temperature == 49
    assert [p.used_bytes for p in g.processes] == [None, None]


def test_filling_memory_grows_until_full() -> None:
    clock = FakeClock()
    nv = facade("filling", clock=clock)
    first = nv.snapshot().gpus[0]
    clock.now += 5
    later = nv.snapshot().gpus[0]
    assert later.mem_used - first.mem_used == 5 * GiB
    assert later.processes[0].used_bytes - first.processes[0].used_bytes == 5 * GiB
    clock.now += 3600
    full = nv.snapshot().gpus[0]
    assert full.mem_used + full.mem_reserved == full.mem_total


def test_errors_everywhere_never_raises() -> None:
    nv = facade("errors-everywhere", seed=7)
    snaps = [nv.snapshot() for _ in range(300)]
    for s in snaps:
        assert_well_formed(s)
    # Half the calls succeed, so both outcomes (and partial GPUs) occur.
    assert any(s.available for s in snaps) and any(not s.available for s in snaps)
    assert any(g.error for s in snaps for g in s.gpus)
    always = facade("errors-everywhere", error_rate=1.0)
    for _ in range(50):
        assert_well_formed(always.snapshot())


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_on_one_gpu_leaves_the_other_intact(cls: type[Exception]) -> None:
    baseline = facade("gpu2").snapshot().gpus[1]
    nv = facade("gpu2", fails={0: {"*": cls.__name__}})
    snap = nv.snapshot()
    assert_well_formed(snap)
    hit, other = snap.gpus
    if cls is pynvml.NVMLError_FunctionNotFound:
        # A missing symbol is missing for every GPU: the facade stops asking for it,
        # so the other GPU loses those fields too (process lists, asked for last).
        assert dataclasses.replace(other, processes=()) == dataclasses.replace(
            baseline, processes=()
        )
    else:
        assert other == baseline
    assert hit.name == "NVIDIA GeForce RTX 4090"
    # Whatever the error, the fields it hides are None, never an exception.
    assert all(getattr(hit, f) is None for f in GPU_FIELDS[2:])
    gone = {"GpuIsLost", "ResetRequired", "Unknown", "IrqIssue", "Timeout", "GpuNotFound"}
    if cls.__name__.removeprefix("NVMLError_") in gone:
        assert hit.error
    if cls.__name__ in ("NVMLError_NotSupported", "NVMLError_NoPermission"):
        assert hit.error is None


@pytest.mark.parametrize("cls", NVML_ERRORS, ids=lambda c: c.__name__)
def test_every_error_at_init_is_a_message_not_an_exception(cls: type[Exception]) -> None:
    nv = facade("gpu1", init_error=cls.__name__)
    snap = nv.snapshot()
    assert not snap.available and snap.message and snap.gpus == ()
    backend = nv._backend.fake_backend  # type: ignore[union-attr]
    if cls.__name__ in ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded"):
        assert snap.no_driver
        nv.snapshot()
        assert backend.calls == 1  # final: not retried
    else:
        assert not snap.no_driver and "init failed" in snap.message
        backend.init_error = None  # the driver recovers: the next snapshot works
        assert nv.snapshot().available


@pytest.mark.parametrize("cls", NVML_ERRORS, ids=lambda c: c.__name__)
def test_every_error_counting_gpus_is_handled(cls: type[Exception]) -> None:
    nv = facade("gpu2")
    nv.snapshot()
    backend = nv._backend.fake_backend  # type: ignore[union-attr]
    original = backend.nvmlDeviceGetCount

    def broken() -> int:
        raise cls()

    nv._backend.nvmlDeviceGetCount = broken  # type: ignore[union-attr]
    snap = nv.snapshot()
    assert not snap.available and snap.message
    nv._backend.nvmlDeviceGetCount = original  # type: ignore[union-attr]
    if nv._state == "new":  # the error meant "driver went away": re-initialises
        assert nv.snapshot().available
    assert nv.snapshot().available


def test_missing_function_is_logged_once_and_reads_as_na(caplog: pytest.LogCaptureFixture) -> None:
    nv = facade("gpu1", fails={0: {"nvmlDeviceGetPowerUsage": "NVMLError_FunctionNotFound"}})
    with caplog.at_level(logging.WARNING, logger="tunedeck.monitor.nvml"):
        snaps = [nv.snapshot() for _ in range(3)]
    assert all(s.gpus[0].power_w is None and s.gpus[0].error is None for s in snaps)
    assert snaps[0].gpus[0].power_limit_w == 400.0
    msgs = [r.getMessage() for r in caplog.records if "nvmlDeviceGetPowerUsage" in r.getMessage()]
    assert len(msgs) == 1
    assert "nvmlDeviceGetPowerUsage" in nv.missing_functions


def test_old_binding_without_versioned_calls_falls_back() -> None:
    mod = make_fake_nvml("gpu2", pids=())
    for name in (
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
    ):
        delattr(mod, name)
    del mod.nvmlMemory_v2
    snap = Nvml(mod).snapshot()
    assert [len(g.processes) for g in snap.gpus] == [1, 2]
    assert snap.gpus[0].mem_reserved is None  # v1 memory only


def test_v3_function_not_found_falls_back_to_the_unversioned_call() -> None:
    nv = facade(
        "gpu1", fails={0: {"nvmlDeviceGetComputeRunningProcesses_v3": "NVMLError_FunctionNotFound"}}
    )
    assert len(nv.snapshot().gpus[0].processes) == 1
    assert "nvmlDeviceGetComputeRunningProcesses_v3" in nv.missing_functions


def test_process_lists_are_cached_for_process_max_age() -> None:
    nv = facade("gpu1")
    mod = nv._backend
    first = nv.snapshot(process_max_age=60).gpus[0].processes
    mod.fake_backend.gpus[0].compute.append((FAKE_PID_BASE + 99, GiB))  # type: ignore[union-attr]
    assert nv.snapshot(process_max_age=60).gpus[0].processes == first
    fresh = nv.snapshot().gpus[0].processes
    assert [p.pid for p in fresh] == [FAKE_PID_BASE, FAKE_PID_BASE + 99]


def test_get_nvml_uses_the_fake_named_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "gpu2")
    monkeypatch.setenv("TUNEDECK_FAKE_NVML_PIDS", "1:4242:2G, junk ,0:77:1024")
    reset_nvml()
    try:
        nv = get_nvml()
        assert get_nvml() is nv
        snap = nv.snapshot()
        assert len(snap.gpus) == 2
        assert (4242, 2 * GiB) in [(p.pid, p.used_bytes) for p in snap.gpus[1].processes]
        assert 77 in [p.pid for p in snap.gpus[0].processes]
        monkeypatch.setenv("TUNEDECK_FAKE_NVML", "no-such-scenario")
        reset_nvml()
        bad = get_nvml().snapshot()
        assert not bad.available and "no-such-scenario" in bad.message
    finally:
        reset_nvml()


def test_parse_pids_accepts_units_and_skips_junk() -> None:
    assert parse_pids("0:10:100,1:11:1.5G,2:12:512MiB,x,3:4") == [
        (0, 10, 100),
        (1, 11, int(1.5 * GiB)),
        (2, 12, 512 * 1024**2),
    ]
    with pytest.raises(ValueError, match="known: none"):
        fake_nvml.make_fake_nvml("gpu3")


def _snap(*gpus: tuple[tuple[int, int | None], ...]) -> GpuSnapshot:
    infos = tuple(
        GpuInfo(i, "g", None, None, None, None, None, None, None, None, None,
                tuple(GpuProcess(pid, used, "p") for pid, used in procs), None)
        for i, procs in enumerate(gpus)
    )  # fmt: skip
    return GpuSnapshot(True, None, "1", infos, 0.0)


@dataclasses.dataclass(frozen=True)
class _Run:
    name: str
    pids: tuple[int, ...]


def test_gpu_users_sums_each_runs_processes_per_gpu() -> None:
    snap = _snap(((1, 10 * GiB), (2, 1 * GiB), (9, 5 * GiB)), ((3, 20 * GiB), (4, None)), ())
    runs = [_Run("run-a", (1, 2, 3)), _Run("run-b", (4, 9)), _Run("run-c", (100,))]
    assert gpu_users(snap, runs) == {
        0: (("run-a", 11 * GiB), ("run-b", 5 * GiB)),
        1: (("run-a", 20 * GiB), ("run-b", 0)),
    }
    assert pids_on_gpus(snap, [4, 9, 77]) == {
        0: [GpuProcess(9, 5 * GiB, "p")],
        1: [GpuProcess(4, None, "p")],
    }
