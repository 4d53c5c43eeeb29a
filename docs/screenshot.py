"""Regenerate ``docs/screenshot-dashboard.png``: the dashboard over realistic run
directories, the fake 8-GPU NVML backend (one run's trainer shown on two GPUs),
exported with ``App.save_screenshot`` (SVG) and rendered to PNG with cairosvg.

    python docs/screenshot.py [--size 160x48] [--out docs/screenshot-dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="160x48")
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshot-dashboard.png"))
    ap.add_argument("--theme", default=None)
    args = ap.parse_args()
    width, height = (int(x) for x in args.size.split("x"))

    import psutil

    from tests.tui_helpers import SNAPSHOT_RUNS, RunSpec, build_runs, write_run
    from tunedeck.runner.rundir.manifest import ProcRef

    tmp = Path(tempfile.mkdtemp(prefix="tunedeck-shot-"))
    root = tmp / "runs"
    # A stand-in for a live run's supervisor, so the run is "running" for real.
    sup = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        ref = ProcRef(pid=sup.pid, create_time=psutil.Process(sup.pid).create_time())
        now = time.time()
        build_runs(root, [s for s in SNAPSHOT_RUNS if s.name != "llama3-8b-lora-sft"], now=now)
        write_run(root, RunSpec("llama3-8b-lora-sft", "running", 640, 1000, checkpoints=(200, 400, 600),
                                gpus=(0, 1), seed=1, age_s=3.0), now=now, supervisor=ref)
        os.environ["TUNEDECK_HOME"] = str(tmp / "home")
        os.environ["TUNEDECK_FAKE_NVML"] = "gpu8"
        os.environ["TUNEDECK_FAKE_NVML_PIDS"] = f"0:{sup.pid}:12G,1:{sup.pid}:11G"
        svg = asyncio.run(_shoot(root, width, height, args.theme, tmp))
    finally:
        sup.kill()
        sup.wait()
    import cairosvg

    # Rich's SVG asks for Fira Code; use the monospace font this machine has.
    text = svg.read_text().replace('"Fira Code"', '"DejaVu Sans Mono"').replace(
        "Fira Code, monospace", "DejaVu Sans Mono, monospace")
    cairosvg.svg2png(bytestring=text.encode(), write_to=args.out)
    print(f"wrote {args.out}")
    return 0


async def _shoot(root: Path, width: int, height: int, theme: str | None, tmp: Path) -> Path:
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.widgets.runs_table import RunsTable

    app = TunedeckApp(root=root, theme=theme, poll=False)
    async with app.run_test(size=(width, height)) as pilot:
        for _ in range(12):  # a short history for the GPU sparklines
            await app.sample_once()
            await pilot.pause(0.05)
        table = app.screen.query_one(RunsTable)
        names = [table._runs[str(k.value)].name for k in table.rows]
        table.move_cursor(row=names.index("llama3-8b-lora-sft"))
        table.focus()
        await pilot.pause()
        await app.sample_once()
        await pilot.pause(0.3)
        path = app.save_screenshot(filename="dashboard.svg", path=str(tmp))
    return Path(path)


if __name__ == "__main__":
    sys.exit(main())
