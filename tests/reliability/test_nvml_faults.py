"""NVML faults: every pynvml error class, raised at every call, never crashes the dashboard,
``tunedeck gpus`` or ``tunedeck watch``; a GPU that falls off the bus mid-run is shown as such.

The backend is the fake pynvml (``tunedeck.runner.monitor.fake_nvml``) wrapped so that each call of
each function raises the next error class in turn: after one full cycle every function has
raised every class (the facade's handling runs exactly as against a real driver, because
the classes are pynvml's own).
"""

from __future__ import annotations

import io
import json
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tunedeck.runner.monitor import nvml as nvml_mod
from tunedeck.runner.monitor.fake_nvml import ERROR_CLASSES, make_fake_nvml
from tunedeck.runner.monitor.nvml import GpuSnapshot, Nvml, snapshot_to_dict

from .helpers import cli_env, tunedeck, write_run_dir


def _raise(cls: type[Exception]) -> None:
    try:
        raise cls()
    except TypeError:  # NVMLLibraryMismatchError wants a message
        raise cls("fake: library mismatch") from None


def cycling_backend(base: types.ModuleType, *, init: bool) -> types.ModuleType:
    """``base`` whose every function raises, per function, the next pynvml error class in turn.

    ``init=False`` leaves ``nvmlInit`` working (a "no driver" answer there would switch the
    facade off for good, and the calls behind it would never be reached).
    """
    counts: dict[str, int] = defaultdict(int)
    mod = types.ModuleType("cycling_pynvml")
    for name in dir(base):
        obj = getattr(base, name)
        if name.startswith("nvml") and callable(obj) and not isinstance(obj, type) and name != "nvmlMemory_v2":
            def wrapper(*args: Any, _name: str = name, _fn: Any = obj, **kwargs: Any) -> Any:
                if _name in ("nvmlInit", "nvmlInitWithFlags", "nvmlShutdown") and not init:
                    return _fn(*args, **kwargs)
                i = counts[_name]
                counts[_name] += 1
                if i < len(ERROR_CLASSES):
                    _raise(ERROR_CLASSES[i])
                return _fn(*args, **kwargs)  # after the full cycle: answers, so recovery is seen

            setattr(mod, name, wrapper)
        else:
            setattr(mod, name, obj)
    mod.cycle_counts = counts  # type: ignore[attr-defined]
    return mod


def _render_everything(snap: GpuSnapshot) -> None:
    """Every headless face of a snapshot: watch's frame, gpus' text and JSON."""
    from rich.console import Console

    from tunedeck.runner.commands.gpus import render
    from tunedeck.runner.commands.watch import Histories, build_frame

    Console(file=io.StringIO(), width=120).print(build_frame([], snap, Histories()))
    render(snap, lambda _pid: None)
    json.dumps(snapshot_to_dict(snap), allow_nan=False)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_class_at_every_call_never_escapes_the_facade(cls: type[Exception], scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("NVML: every pynvml error class at every call")
    for init_fails in (True, False):
        with sc.trial():
            base = make_fake_nvml("gpu2")
            mod = types.ModuleType("always")
            for name in dir(base):
                obj = getattr(base, name)
                if name.startswith("nvml") and callable(obj) and not isinstance(obj, type) and name != "nvmlMemory_v2":
                    if name.startswith("nvmlInit") and not init_fails:
                        setattr(mod, name, obj)
                    else:
                        setattr(mod, name, lambda *a, **k: _raise(cls))
                else:
                    setattr(mod, name, obj)
            nv = Nvml(backend=mod)
            for _ in range(3):
                snap = nv.snapshot()
                assert isinstance(snap, GpuSnapshot)
                _render_everything(snap)
                assert not nv.available or all(g.error or g.mem_used is None for g in snap.gpus)


def test_cycling_errors_reach_every_call_site_and_recover(scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("NVML: every pynvml error class at every call")
    mod = cycling_backend(make_fake_nvml("gpu2"), init=False)
    nv = Nvml(backend=mod)
    snaps = []
    counts = mod.cycle_counts  # type: ignore[attr-defined]
    # Until every function that gets called has been through the whole cycle (calls behind a
    # failed handle are reached less often), with a cap that a stuck facade would hit.
    for _ in range(len(ERROR_CLASSES) * 20):
        with sc.trial():
            snap = nv.snapshot()
            _render_everything(snap)
            snaps.append(snap)
        if counts and min(counts.values()) > len(ERROR_CLASSES):
            break
    for _ in range(2):  # and a clean look once all of them answer
        snaps.append(nv.snapshot())
    reached = {n for n, c in counts.items() if c >= len(ERROR_CLASSES)}
    assert {"nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetMemoryInfo",
            "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage"} <= reached, counts
    # Once the cycle is over the driver answers again and the facade shows both GPUs.
    assert snaps[-1].available and len(snaps[-1].gpus) == 2 and all(g.error is None for g in snaps[-1].gpus)
    sc.note(f"{len(reached)} NVML functions each raised all {len(ERROR_CLASSES)} error classes")


@pytest.fixture
def fake_facade(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Install a facade over a given backend as the process-wide one (what the app samples)."""
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path / "home"))

    def install(backend: types.ModuleType) -> Nvml:
        nvml_mod.reset_nvml()
        nv = Nvml(backend=backend)
        monkeypatch.setattr(nvml_mod, "_NVML", nv)
        return nv

    yield install
    nvml_mod.reset_nvml()


def _gpu_panel(text: str) -> str:
    """The lines of the dashboard's GPU panel."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if "GPUs" in ln)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("╰"))
    return "\n".join(lines[start:end + 1])


async def _wait(pilot: Any, pred: Any, what: str, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def test_dashboard_survives_every_error_class_at_every_call(
        fake_facade, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario) -> None:  # type: ignore[no-untyped-def]
    from tests.tui_helpers import screen_text
    from tunedeck.tui import app as app_mod
    from tunedeck.tui.app import TunedeckApp

    sc = scenario("NVML faults: the dashboard (Pilot) never crashes")
    monkeypatch.setattr(app_mod, "GPU_INTERVAL", 0.02)  # many polls quickly; the cost is not under test
    mod = cycling_backend(make_fake_nvml("gpu2"), init=False)
    fake_facade(mod)
    root = tmp_path / "runs"
    write_run_dir(root / "a-run", run_id="20250101-000000-nvml", name="a-run")
    app = TunedeckApp(root=root, settings_file=tmp_path / "settings.json")
    polls = {"n": 0}
    async with app.run_test(size=(120, 40)) as pilot:
        target = len(ERROR_CLASSES) + 5
        seen_errors: set[str] = set()
        while polls["n"] < target:
            with sc.trial():
                before = app.gpu_view
                # Each GPU poll posts a new immutable view: wait for the next one.
                await _wait(pilot, lambda b=before: app.gpu_view is not b, "a GPU poll")  # type: ignore[misc]
                polls["n"] += 1
                text = screen_text(app)
                assert "GPU" in text or "NVML" in text or "driver" in text
                view = app.gpu_view
                if view is not None:
                    seen_errors.update(g.error for g in view.snapshot.gpus if g.error)
        counts = mod.cycle_counts  # type: ignore[attr-defined]
        assert counts["nvmlDeviceGetCount"] >= len(ERROR_CLASSES)
        # After the cycle the GPUs come back on their own.
        await _wait(pilot, lambda: app.gpu_view is not None and app.gpu_view.snapshot.available
                    and len(app.gpu_view.snapshot.gpus) == 2
                    and all(g.error is None for g in app.gpu_view.snapshot.gpus), "the GPUs to recover")
        panel = _gpu_panel(screen_text(app))
        assert panel.count("/24G") == 2 and "error" not in panel, panel
    assert app.return_code in (None, 0)
    sc.note(f"{polls['n']} dashboard polls through {len(ERROR_CLASSES)} error classes; "
            f"{len(seen_errors)} distinct GPU errors shown")


async def test_gpu_falling_off_the_bus_mid_run_is_shown_as_lost(
        fake_facade, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario) -> None:  # type: ignore[no-untyped-def]
    from tests.tui_helpers import screen_text
    from tunedeck.tui import app as app_mod
    from tunedeck.tui.app import TunedeckApp

    sc = scenario("NVML: a GPU disappears mid-run")
    monkeypatch.setattr(app_mod, "GPU_INTERVAL", 0.05)
    backend = make_fake_nvml("gpu2")
    fake_facade(backend)
    root = tmp_path / "runs"
    write_run_dir(root / "a-run", run_id="20250101-000000-lost", name="a-run")
    app = TunedeckApp(root=root, settings_file=tmp_path / "settings.json")
    async with app.run_test(size=(120, 40)) as pilot:
        with sc.trial():
            await _wait(pilot, lambda: app.gpu_view is not None and len(app.gpu_view.snapshot.gpus) == 2,
                        "two GPUs on the dashboard")
            assert "lost" not in screen_text(app).lower()
            backend.fake_backend.gpus[1].fails["*"] = "NVMLError_GpuIsLost"  # type: ignore[attr-defined]
            await _wait(pilot, lambda: app.gpu_view is not None and app.gpu_view.snapshot.gpus[1].error,
                        "GPU 1 to be reported lost")
            await _wait(pilot, lambda: "lost" in _gpu_panel(screen_text(app)).lower(), "the GPU panel to say so")
            gpu0 = app.gpu_view.snapshot.gpus[0]  # type: ignore[union-attr]
            assert gpu0.error is None and gpu0.mem_total, "the other GPU must keep working"
    with sc.trial():
        # watch and gpus say it too.
        from rich.console import Console

        from tunedeck.runner.commands.gpus import render
        from tunedeck.runner.commands.watch import Histories, build_frame

        snap = nvml_mod.get_nvml().snapshot()
        buf = io.StringIO()
        Console(file=buf, width=160).print(build_frame([], snap, Histories()))
        assert "lost" in buf.getvalue().lower()
        assert "lost" in render(snap, lambda _pid: None).lower()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gpus_and_watch_cli_with_errors_everywhere(seed: int, tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("NVML: every pynvml error class at every call")
    env = cli_env(tmp_path / "home", TUNEDECK_FAKE_NVML="errors-everywhere", TUNEDECK_FAKE_NVML_SEED=str(seed))
    write_run_dir(tmp_path / "root" / "r", run_id="20250101-000000-errs", name="r")
    for argv in (["gpus", "--json"], ["gpus"], ["watch", "--once", "--root", str(tmp_path / "root")]):
        with sc.trial():
            res = tunedeck(argv, env, timeout=120)
            # gpus exits 1 when NVML answered with errors (documented: 1 = failure), with one
            # line saying why; it never crashes, and --json still prints the snapshot.
            assert res.returncode in ((0, 1) if argv[0] == "gpus" else (0,)), (argv, res.stderr)
            assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) <= 1, res.stderr
            if "--json" in argv:
                json.loads(res.stdout)

