"""tunedeck against LLaMA-Factory 0.9.5 on the same config, side by side.

    python bench/vs_llamafactory.py                       # 5 rounds, 120 steps (creates the peer venv once)
    python bench/vs_llamafactory.py --rounds 7 --steps 200
    python bench/vs_llamafactory.py --setup-only          # only create / check the LLaMA-Factory venv
    python bench/vs_llamafactory.py --venv /path/to/venv  # reuse (or create) the peer venv there

The peer is LLaMA-Factory itself in its own venv (default
``~/.cache/tunedeck-bench/lfvenv``), made from scratch on first use with the same torch
version as the Python running this script:

1. ``python -m venv``; ``pip install torch==<ours>`` first;
2. ``pip install --no-deps llamafactory==0.9.5 torchaudio``: LLaMA-Factory requires
   torchvision/torchaudio, whose wheels pin one exact torch each (a CUDA build). torchvision
   is left out (LLaMA-Factory's text path never imports it); torchaudio is imported at
   module level by LLaMA-Factory's multimodal plugin, so it is installed without its
   dependencies and, when its compiled extension does not load into our torch, the
   extension is removed (torchaudio then imports in pure-Python mode; no audio is used);
3. the rest of LLaMA-Factory's requirements with ``torch==<ours>`` as a constraint, minus
   gradio (the web UI only; its pins send pip's resolver backtracking for minutes).

What was done is written to ``<venv>/tunedeck-bench-setup.json``.

Both tools get the same tiny LLaMA (``runner/train/tiny.py``), the same demo data and the
same YAML, which leaves every other key at each tool's default. Each round runs the pairs
side by side, one process tree pinned to each core (cores swapped every round), so both
meet the same background load:

- ``train``: ``llamafactory-cli train cfg.yaml`` vs ``python -m tunedeck.runner.train cfg.yaml``;
- ``launch``: ``tunedeck launch cfg.yaml --follow`` vs tunedeck's trainer alone;
- ``packing``: unpacked / packing / neat_packing on mixed-length data, both tools (CPU per epoch).

Measured from outside, the same way for both: CPU of the whole process tree (every
process started for the run, sampled from /proc every 20 ms), wall time, the moment each
record appears in ``trainer_log.jsonl``, peak RSS (VmHWM) of each process. Reported, as
medians of the rounds:

- trainer CPU per optimizer step: tree CPU between the first and the last logged step
  over the steps between them (no start-up, no final save);
- samples/s: batch x steps over wall time in the same window;
- time to first logged step: spawn to the first record (start-up, data, model, 5 steps);
- peak RSS of the largest process;
- ``launch --follow``, read within its own tree: wall outside the trainer (spawn to the
  trainer's start + the trainer's end to the exit), CPU and summed peak RSS of every process
  but the trainer's, and the load average; also its whole tree's wall, CPU and RSS minus the
  trainer alone's, side by side (at the mercy of the other core's load);
- packing speed-ups: CPU per epoch unpacked over packed;
- the largest loss difference at any logged step (same seed, same data order).

On a CUDA machine the same script runs unchanged; records then also carry VRAM
(``RECORD_VRAM=1`` for LLaMA-Factory) and tokens/s (both count non-padding tokens).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
LF_VERSION = "0.9.5"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunedeck-bench" / "lfvenv"

TARGETS = {  # measure -> (tunedeck / LLaMA-Factory at most, unit)
    "cpu_per_step": 0.97,
    "cpu_per_step_packed": 0.97,
    "first_step": 0.8,
    "peak_rss": 0.8,
}
LAUNCH_WALL_MAX_S = 1.0
LAUNCH_RSS_MAX_MIB = 60.0
LOSS_MAX_DIFF = 1e-4


# -- the peer venv ------------------------------------------------------------------
def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def _pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *args],
                   check=True)


def _venv_ok(venv: Path, torch_version: str) -> bool:
    py = venv / "bin" / "python"
    if not py.exists():
        return False
    code = ("import llamafactory, torch, sys; "
            f"sys.exit(0 if llamafactory.__version__ == {LF_VERSION!r} and torch.__version__.split('+')[0] == "
            f"{torch_version!r} else 1); ")
    check = ("from llamafactory.data import mm_plugin")  # imports torchaudio
    return subprocess.run([str(py), "-c", code + check], capture_output=True, env=_quiet_env()).returncode == 0


def ensure_lf_venv(venv: Path) -> Path:
    """The LLaMA-Factory venv at ``venv`` (created when missing); returns its python."""
    tv = _torch_version()
    if _venv_ok(venv, tv):
        return venv / "bin" / "python"
    print(f"creating the LLaMA-Factory {LF_VERSION} venv at {venv} (torch {tv}); this takes a few minutes",
          flush=True)
    notes: list[str] = []
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(venv, f"torch=={tv}")
    _pip(venv, "--no-deps", f"llamafactory=={LF_VERSION}", "torchaudio")
    notes.append("llamafactory and torchaudio installed with --no-deps; torchvision not installed")
    py = venv / "bin" / "python"
    ta = subprocess.run([str(py), "-c", "import torchaudio"], capture_output=True, text=True)
    if ta.returncode != 0:
        lib = Path(subprocess.run([str(py), "-c", "import importlib.util as u; "
                                   "print(u.find_spec('torchaudio').submodule_search_locations[0])"],
                                  capture_output=True, text=True, check=True).stdout.strip()) / "lib"
        removed = sorted(p.name for p in lib.glob("*.so"))
        for p in lib.glob("*.so"):
            p.unlink()
        notes.append(f"torchaudio's compiled extension does not load into torch {tv}; removed {removed} "
                     "(pure-Python torchaudio; LLaMA-Factory only imports it)")
    reqs = subprocess.run([str(py), "-c", (
        "import importlib.metadata as m, re\n"
        "for r in m.requires('llamafactory') or []:\n"
        "    if ';' in r and 'extra' in r.split(';', 1)[1]: continue\n"
        "    n = re.split(r'[<>=!~ \\[;]', r, maxsplit=1)[0].lower()\n"
        "    if n in ('torch', 'torchaudio', 'torchvision', 'gradio'): continue\n"
        "    print(r.split(';')[0].strip())\n")], capture_output=True, text=True, check=True).stdout.split("\n")
    reqs = [r for r in reqs if r.strip()]
    cons = venv / "torch-constraint.txt"
    cons.write_text(f"torch=={tv}\n")
    _pip(venv, "-c", str(cons), *reqs)
    notes.append(f"requirements installed with torch=={tv} as a constraint, gradio (web UI only) left out")
    if not _venv_ok(venv, tv):
        raise SystemExit(f"the venv at {venv} does not import llamafactory {LF_VERSION} with torch {tv}")
    versions = subprocess.run([str(py), "-c", (
        "import json, llamafactory, transformers, torch, datasets, peft, accelerate, trl;"
        "print(json.dumps({m.__name__: m.__version__ for m in (llamafactory, transformers, torch, datasets, "
        "peft, accelerate, trl)}))")], capture_output=True, text=True, env=_quiet_env()).stdout
    (venv / "tunedeck-bench-setup.json").write_text(json.dumps(
        {"versions": json.loads(versions or "{}"), "notes": notes}, indent=1) + "\n")
    return py


# -- process-tree sampling -----------------------------------------------------------
def _quiet_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "DISABLE_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("TUNEDECK_FAULT", None)
    # Cached bytecode, as in any user's venv: without it every start compiles part of
    # pandas/torch again, which is noise, not either tool's cost.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _stat(pid: int) -> tuple[int, float, int, bool] | None:
    """(parent pid, CPU seconds, start time in ticks, exited) of a process still in /proc.
    ``exited``: a zombie, whose parent has not collected it yet (it holds no memory and
    uses no CPU; a detached supervisor whose launcher exited first waits as one until init
    reaps it, which some containers' init does only every second or two)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[19]), fields[0] in "ZX"


def _running(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and not st[3]


def _boot_time() -> float:
    """The wall-clock moment of boot, to the microsecond: a process's start in /proc is
    counted in ticks since boot (CLOCK_BOOTTIME). /proc/stat's ``btime`` is the same moment
    truncated to the second, which would put every start up to 1 s early."""
    with contextlib.suppress(AttributeError, OSError):
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


_BOOT = _boot_time()


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Sampled:
    spawned: float
    ended: float
    root: int
    cpu: list[tuple[float, float]]            # (wall time, tree CPU seconds)
    records: list[tuple[float, dict]]         # (wall time first seen, record)
    peak_rss_kib: dict[int, int] = field(default_factory=dict)
    cmd: dict[int, str] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)     # pid -> start (epoch seconds)
    last_seen: dict[int, float] = field(default_factory=dict)   # pid -> last sample it was alive
    cpu_by_pid: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds at its last sample
    parent: dict[int, int] = field(default_factory=dict)        # pid -> parent pid
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)          # load average at the end

    def trainer_pid(self) -> int | None:
        """The trainer process of a wrapped run (the command itself is not one)."""
        trainers = [p for p, c in self.cmd.items() if p != self.root and "tunedeck.runner.train" in c]
        return min(trainers, key=lambda p: self.started.get(p, 0.0)) if trainers else None

    def _trainer_tree(self) -> set[int]:
        t = self.trainer_pid()
        if t is None:
            return set()
        tree = {t}
        grew = True
        while grew:
            more = {p for p, pp in self.parent.items() if pp in tree} - tree
            tree |= more
            grew = bool(more)
        return tree

    def wrapper_overhead_s(self) -> tuple[float, float] | None:
        """Wall time the run spent outside the trainer: (spawning the command to the
        trainer's start, the trainer's end to the command's end)."""
        t = self.trainer_pid()
        if t is None or t not in self.started:
            return None
        return self.started[t] - self.spawned, self.ended - self.last_seen[t]

    def outside_cpu_s(self) -> float | None:
        """CPU seconds of every process but the trainer and its children."""
        tree = self._trainer_tree()
        if not tree:
            return None
        return sum(c for p, c in self.cpu_by_pid.items() if p not in tree)

    def outside_rss_mib(self) -> float | None:
        """Summed peak RSS of every process but the trainer and its children."""
        tree = self._trainer_tree()
        if not tree:
            return None
        return sum(k for p, k in self.peak_rss_kib.items() if p not in tree) / 1024

    def cpu_at(self, t: float) -> float:
        best = self.cpu[0][1]
        for when, c in self.cpu:
            if when > t:
                break
            best = c
        return best


class Tree:
    """A command plus every process started for it: its descendants, and processes that
    name ``marker`` (the run directory) on their command line, such as a detached supervisor
    and its trainer."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path, marker: str,
                 cpu: int | None) -> None:
        self.log_path, self.marker = log, marker
        log.unlink(missing_ok=True)  # both tools start a fresh log (overwrite_output_dir); never read an old one
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.spawned = time.time()
        self.err = open(cwd / f"stderr-{os.getpid()}-{time.monotonic_ns()}.txt", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.err, stderr=subprocess.STDOUT,
                                     preexec_fn=pin)
        self.tracked: dict[int, int] = {self.proc.pid: -1}  # pid -> start ticks
        self.cpu_by_pid: dict[int, float] = {}
        self.hwm: dict[int, int] = {}
        self.cmd: dict[int, str] = {}
        self.parent: dict[int, int] = {}
        self.last_seen: dict[int, float] = {}
        self.samples: list[tuple[float, float]] = []
        self.records: list[tuple[float, dict]] = []
        self._offset = 0
        self._seen: set[int] = set()
        self.finished_at: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _scan(self) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self._seen:
                continue
            st = _stat(pid)
            if st is None:
                continue
            self._seen.add(pid)
            ppid = st[0]
            if ppid in self.tracked or self.marker in _cmdline(pid):
                self.tracked[pid] = st[2]
                self.parent[pid] = ppid

    def _poll_log(self, now: float) -> None:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for line in data[: end + 1].splitlines():
            with contextlib.suppress(ValueError):
                self.records.append((now, json.loads(line)))

    def _run(self) -> None:
        while not self._done.is_set():
            now = time.time()
            self._scan()
            for pid in list(self.tracked):
                st = _stat(pid)
                if st is None:
                    continue
                self.cpu_by_pid[pid] = st[1]
                if st[3]:
                    continue  # exited: its CPU is final, it is not running any more
                self.last_seen[pid] = now
                self.hwm[pid] = max(self.hwm.get(pid, 0), _hwm_kib(pid))
                # Read at every sample: a child seen between fork and exec still shows
                # its parent's command line.
                cmd = _cmdline(pid)[:200]
                if cmd:
                    self.cmd[pid] = cmd
            self.samples.append((now, sum(self.cpu_by_pid.values())))
            self._poll_log(now)
            if self.finished_at is None and self.proc.poll() is not None and not any(
                    _running(p) for p in self.tracked if p != self.proc.pid):
                self.finished_at = time.time()  # the command and every process it started are gone
            time.sleep(0.02)

    def wait(self, timeout: float = 3600) -> Sampled:
        self.proc.wait(timeout=timeout)
        # A detached supervisor may outlive the command by a moment. The end is the moment
        # the sampler saw everything gone, not this call's (side by side, the other tree is
        # waited for first every other round).
        deadline = time.time() + 30
        while self.finished_at is None and time.time() < deadline:
            time.sleep(0.02)
        ended = self.finished_at or time.time()
        self._done.set()
        self._thread.join()
        self._poll_log(ended)
        self.err.seek(0)
        out = self.err.read()
        self.err.close()
        if self.proc.returncode != 0:
            raise SystemExit(f"failed ({self.proc.returncode}): {' '.join(self.proc.args)}\n{out[-3000:]}")
        started = {p: _BOOT + ticks / CLK_TCK for p, ticks in self.tracked.items() if ticks >= 0}
        return Sampled(self.spawned, ended, self.proc.pid, self.samples, self.records, dict(self.hwm), dict(self.cmd),
                       started, dict(self.last_seen), dict(self.cpu_by_pid), dict(self.parent), os.getloadavg())


# -- the shared inputs -----------------------------------------------------------------
def yaml_file(path: Path, values: dict) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
    return path


def mixed_length_data(out: Path, n: int, seed: int = 0) -> None:
    """Alpaca rows whose answers have long-tailed lengths (2 to ~190 words)."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "sort", "reverse", "add", "the", "numbers", "letters",
             "model", "loss", "step", "train", "data", "value", "list", "word", "count", "copy"]
    rows = [{"instruction": "Repeat the words.", "input": "",
             "output": " ".join(rng.choice(words) for _ in range(int(round(2 ** rng.uniform(1, 7.6)))))}
            for _ in range(n)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixed.json").write_text(json.dumps(rows))
    (out / "dataset_info.json").write_text(json.dumps({"mixed": {"file_name": "mixed.json"}}))


def shared_config(model: Path, out: Path, *, steps: int | None, batch: int, cuda: bool, **extra) -> dict:
    """The one YAML both tools get: what a user's LLaMA-Factory SFT config says, every
    other key left at each tool's default (checkpointing on, fused AdamW ...)."""
    cfg = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": 8, "lora_target": "all", "template": "default",
        "per_device_train_batch_size": batch, "learning_rate": 3.0e-3, "lr_scheduler_type": "cosine",
        "logging_steps": 5, "save_strategy": "no", "report_to": "none", "seed": 42,
        "output_dir": str(out), "overwrite_output_dir": True, "disable_tqdm": True,
    }
    if steps is not None:
        cfg["max_steps"] = steps
    if cuda:
        cfg["include_num_input_tokens_seen"] = "non_padding"  # tokens/s on both sides
    cfg.update(extra)
    return cfg


# -- measures ------------------------------------------------------------------------------
@dataclass
class Result:
    cpu_per_step: float
    samples_per_s: float
    first_step_s: float
    peak_rss_mib: float      # largest process
    tree_rss_mib: float      # all processes, summed
    wall_s: float
    tree_cpu_s: float
    losses: dict[int, float]
    epoch_cpu_s: float
    tokens_per_s: float | None
    vram_gib: float | None
    outside_trainer_s: float | None   # wall outside the trainer (a wrapped run only)
    outside_start_s: float | None     # of which: spawn to the trainer's start
    outside_end_s: float | None       # of which: the trainer's end to the command's exit
    outside_cpu_s: float | None       # CPU of the processes other than the trainer's
    outside_rss_mib: float | None     # their peak RSS, summed
    load1: float                      # 1-minute load average when the run ended


def measure(s: Sampled, batch: int) -> Result:
    recs = [(t, r) for t, r in s.records if isinstance(r.get("current_steps"), int) and "loss" in r]
    if len(recs) < 2:
        raise SystemExit(f"fewer than two logged steps in {s.cmd}")
    (t0, r0), (t1, r1) = recs[0], recs[-1]
    steps = r1["current_steps"] - r0["current_steps"]
    total = int(r1.get("total_steps") or r1["current_steps"])
    window_cpu = s.cpu_at(t1) - s.cpu_at(t0)
    tokens = [r.get("total_tokens") for _, r in recs]
    tps = (tokens[-1] - tokens[0]) / (t1 - t0) if tokens[0] and tokens[-1] and t1 > t0 else None
    vram = [r.get("vram_allocated") for _, r in recs if r.get("vram_allocated") is not None]
    wo = s.wrapper_overhead_s()
    return Result(
        cpu_per_step=window_cpu / steps,
        samples_per_s=batch * steps / (t1 - t0) if t1 > t0 else float("nan"),
        first_step_s=t0 - s.spawned,
        peak_rss_mib=max(s.peak_rss_kib.values()) / 1024,
        tree_rss_mib=sum(s.peak_rss_kib.values()) / 1024,
        wall_s=s.ended - s.spawned,
        tree_cpu_s=s.cpu[-1][1] if s.cpu else 0.0,
        losses={r["current_steps"]: float(r["loss"]) for _, r in recs},
        epoch_cpu_s=window_cpu / steps * total,
        tokens_per_s=tps,
        vram_gib=max(vram) if vram else None,
        outside_trainer_s=sum(wo) if wo else None,
        outside_start_s=wo[0] if wo else None,
        outside_end_s=wo[1] if wo else None,
        outside_cpu_s=s.outside_cpu_s(),
        outside_rss_mib=s.outside_rss_mib(),
        load1=s.load[0],
    )


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:  # noqa: C901 - one linear script
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--mixed-rows", type=int, default=600, help="rows of the mixed-length packing data")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"LLaMA-Factory venv (default {DEFAULT_VENV})")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    p.add_argument("--only", choices=("train", "launch", "packing"), action="append",
                   help="run only these pairs (repeatable; default all)")
    p.add_argument("--sequential", action="store_true", help="one after the other instead of side by side")
    p.add_argument("--same-libs", action="store_true",
                   help="also run tunedeck's trainer on LLaMA-Factory's venv (its transformers, peft, accelerate, "
                        "datasets): what is left of a difference then is tunedeck's own code")
    p.add_argument("--setup-only", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write every round's numbers here")
    a = p.parse_args()

    lf_py = ensure_lf_venv(a.venv.expanduser())
    lf_cli = [str(lf_py), "-m", "llamafactory.cli", "train"]
    if a.setup_only:
        print(f"LLaMA-Factory venv ready: {lf_py}")
        return 0
    import torch

    cuda = torch.cuda.is_available()
    only = set(a.only or ("train", "launch", "packing"))
    work = (a.work or Path(tempfile.mkdtemp(prefix="tunedeck-vs-lf-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**_quiet_env(), "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TUNEDECK_CACHE_DIR": str(work / "td-cache"), "HF_HOME": str(work / "hf"),
           "TUNEDECK_HOME": str(work / "td-home")}
    lf_env = {**env, "PYTHONPATH": "", "RECORD_VRAM": "1" if cuda else "0"}
    all_rounds: dict[str, list[dict]] = {}
    try:
        model = work / "tiny-llama"
        subprocess.run([PY, "-m", "tunedeck.runner.train.tiny", str(model)], env=env, check=True,
                       capture_output=True)
        subprocess.run([PY, "-c", "from tunedeck.runner.data.demo import write_demo_data; "
                        f"write_demo_data({str(work / 'data')!r})"], env=env, check=True)
        mixed_length_data(work / "mixed", a.mixed_rows)
        demo = {"dataset": "demo_alpaca", "dataset_dir": str(work / "data"), "cutoff_len": 128}
        mixed = {"dataset": "mixed", "dataset_dir": str(work / "mixed"), "cutoff_len": 256,
                 "num_train_epochs": 1.0}

        def variant(tool: str, name: str, **cfg) -> tuple[list[str], Path, dict[str, str]]:
            out = work / f"{name}-{tool}-out"
            path = yaml_file(work / f"{name}-{tool}.yaml", shared_config(model, out, batch=a.batch, cuda=cuda, **cfg))
            if tool == "lf":
                return [*lf_cli, str(path)], out, lf_env
            if tool == "tdlf":
                return [str(lf_py), "-m", "tunedeck.runner.train", str(path)], out, {**env, "PYTHONPATH": str(REPO)}
            if tool == "launch":
                return [PY, "-m", "tunedeck.runner.cli", "launch", str(path), "--follow", "--overwrite"], out, env
            return [PY, "-m", "tunedeck.runner.train", str(path)], out, env

        pairs: dict[str, tuple[tuple[str, str], ...]] = {}
        variants: dict[str, tuple[list[str], Path, dict[str, str]]] = {}
        if "train" in only or "launch" in only:
            variants["lf"] = variant("lf", "train", steps=a.steps, **demo)
            variants["td"] = variant("td", "train", steps=a.steps, **demo)
        if "train" in only:
            pairs["train"] = (("td", "lf"),)
            if a.same_libs:
                # tunedeck's own dependencies that LLaMA-Factory's venv lacks.
                _pip(a.venv.expanduser(), "-q", "ruamel.yaml", "psutil")
                variants["tdlf"] = variant("tdlf", "train", steps=a.steps, **demo)
                pairs["train-same-libs"] = (("tdlf", "lf"),)
        if "launch" in only:
            variants["launch"] = variant("launch", "launch", steps=a.steps, **demo)
            pairs["launch"] = (("launch", "td"),)
        if "packing" in only:
            for tool in ("td", "lf"):
                variants[f"unpacked-{tool}"] = variant(tool, "unpacked", steps=None, packing=False, **mixed)
                variants[f"packed-{tool}"] = variant(tool, "packed", steps=None, packing=True, **mixed)
                variants[f"neat-{tool}"] = variant(tool, "neat", steps=None, neat_packing=True, **mixed)
            pairs["packing"] = (("unpacked-td", "unpacked-lf"), ("packed-td", "packed-lf"), ("neat-td", "neat-lf"))

        # Warm each tool's tokenized-data cache once, unmeasured (a user's second run).
        for name, (argv, out, venv_env) in variants.items():
            print(f"warm-up: {name}", flush=True)
            Tree(argv, venv_env, work, out / "trainer_log.jsonl", str(out), None).wait()

        results: dict[str, list[Result]] = {k: [] for k in variants}
        by_pair: dict[tuple[str, str], list[tuple[Result, Result]]] = {}
        for r in range(a.rounds):
            for group_pairs in pairs.values():
                for x, y in group_pairs:
                    first, second = (x, y) if r % 2 == 0 else (y, x)
                    runs: dict[str, Sampled] = {}
                    if a.sequential:
                        for n in (first, second):
                            argv, out, venv_env = variants[n]
                            runs[n] = Tree(argv, venv_env, work, out / "trainer_log.jsonl", str(out), None).wait()
                    else:
                        trees = {}
                        for core, n in enumerate((first, second)):
                            argv, out, venv_env = variants[n]
                            trees[n] = Tree(argv, venv_env, work, out / "trainer_log.jsonl", str(out), core)
                        runs = {n: t.wait() for n, t in trees.items()}
                    by_pair.setdefault((x, y), []).append((measure(runs[x], a.batch), measure(runs[y], a.batch)))
                    for n in (x, y):
                        res = measure(runs[n], a.batch)
                        results[n].append(res)
                        all_rounds.setdefault(n, []).append({k: v for k, v in res.__dict__.items() if k != "losses"})
                        print(f"round {r + 1} {n:<12} CPU/step {res.cpu_per_step * 1000:7.1f} ms  "
                              f"samples/s {res.samples_per_s:7.1f}  first step {res.first_step_s:5.2f} s  "
                              f"wall {res.wall_s:6.2f} s  tree CPU {res.tree_cpu_s:6.2f} s  "
                              f"peak RSS {res.peak_rss_mib:6.0f} MiB (tree {res.tree_rss_mib:6.0f})", flush=True)
                        if res.outside_trainer_s is not None:
                            print(f"round {r + 1} {n:<12} outside the trainer: wall {res.outside_trainer_s:5.2f} s "
                                  f"({res.outside_start_s:.2f} before it, {res.outside_end_s:.2f} after it)  "
                                  f"CPU {res.outside_cpu_s or 0:5.2f} s  peak RSS {res.outside_rss_mib or 0:4.0f} MiB"
                                  f"  load {res.load1:.1f}", flush=True)

        def ratio(x: str, y: str, attr: str) -> tuple[float, list[float]]:
            if (x, y) in by_pair:
                per = [getattr(rx, attr) / getattr(ry, attr) for rx, ry in by_pair[(x, y)]]
            else:
                per = [getattr(rx, attr) / getattr(ry, attr) for rx, ry in zip(results[x], results[y], strict=True)]
            return med(per), per

        rows: list[tuple[str, str, str, str]] = []   # measure, value, target, met

        def row(label: str, value: float, fmt: str, target: float | None, rounds: list[float] | None = None,
                lower_is_better: bool = True) -> None:
            met = "" if target is None else ("yes" if (value <= target if lower_is_better else value >= target)
                                            else "NO")
            spread = f" ({min(rounds):{fmt}}-{max(rounds):{fmt}})" if rounds else ""
            rows.append((label, f"{value:{fmt}}{spread}", "" if target is None else
                         f"{'<=' if lower_is_better else '>='} {target:{fmt}}", met))

        if "train" in pairs:
            v, per = ratio("td", "lf", "cpu_per_step")
            row("trainer CPU per optimizer step, td/LF", v, ".3f", TARGETS["cpu_per_step"], per)
            v, per = ratio("td", "lf", "samples_per_s")
            row("samples/s, td/LF", v, ".3f", None, per)
            v, per = ratio("td", "lf", "first_step_s")
            row("time to first logged step, td/LF", v, ".3f", TARGETS["first_step"], per)
            v, per = ratio("td", "lf", "peak_rss_mib")
            row("peak RSS of the largest process, td/LF", v, ".3f", TARGETS["peak_rss"], per)
            if "tdlf" in results:
                v, per = ratio("tdlf", "lf", "cpu_per_step")
                row("trainer CPU per optimizer step, td on LF's libraries/LF", v, ".3f", None, per)
                v, per = ratio("tdlf", "lf", "first_step_s")
                row("time to first logged step, td on LF's libraries/LF", v, ".3f", None, per)
            diffs = []
            for rt, rl in by_pair[("td", "lf")]:
                common = set(rt.losses) & set(rl.losses)
                diffs.append(max(abs(rt.losses[s] - rl.losses[s]) for s in common))
            row("largest loss difference at a logged step", max(diffs), ".2e", LOSS_MAX_DIFF)
            if cuda:
                pairs_tl = by_pair[("td", "lf")]
                if all(x.tokens_per_s and y.tokens_per_s for x, y in pairs_tl):
                    row("tokens/s, td/LF", ratio("td", "lf", "tokens_per_s")[0], ".3f", None)
                if all(x.vram_gib and y.vram_gib for x, y in pairs_tl):
                    row("peak VRAM allocated, td/LF", ratio("td", "lf", "vram_gib")[0], ".3f", None)
            print()
            tl = by_pair[("td", "lf")]
            print(f"medians: tunedeck CPU/step {med([x.cpu_per_step for x, _ in tl]) * 1000:.1f} ms, "
                  f"LLaMA-Factory {med([y.cpu_per_step for _, y in tl]) * 1000:.1f} ms; first step "
                  f"{med([x.first_step_s for x, _ in tl]):.2f} s vs {med([y.first_step_s for _, y in tl]):.2f} s")
        if "launch" in pairs:
            lt = by_pair[("launch", "td")]
            dw = [x.wall_s - y.wall_s for x, y in lt]
            dc = [x.tree_cpu_s - y.tree_cpu_s for x, y in lt]
            dm = [x.tree_rss_mib - y.tree_rss_mib for x, y in lt]
            def got(attr: str) -> list[float]:
                return [getattr(x, attr) for x, _ in lt if getattr(x, attr) is not None]

            # The strict measure: what launch --follow's own processes cost, read in its tree.
            for attr, label, fmt, target in (
                    ("outside_trainer_s", "launch --follow: wall outside the trainer, s", ".2f", LAUNCH_WALL_MAX_S),
                    ("outside_start_s", "  of which spawn to the trainer's start, s", ".2f", None),
                    ("outside_end_s", "  of which the trainer's end to the exit, s", ".2f", None),
                    ("outside_cpu_s", "launch --follow: CPU of the processes outside the trainer, s", ".2f", None),
                    ("outside_rss_mib", "launch --follow: summed peak RSS of the processes outside the trainer, "
                     "MiB", ".0f", LAUNCH_RSS_MAX_MIB)):
                vals = got(attr)
                if vals:
                    row(label, med(vals), fmt, target, vals)
            row("launch --follow minus trainer alone (side by side): wall s", med(dw), ".2f", None, dw)
            row("launch --follow minus trainer alone (side by side): tree CPU s", med(dc), ".2f", None, dc)
            row("launch --follow minus trainer alone (side by side): summed peak RSS MiB", med(dm), ".0f", None, dm)
            loads = [x.load1 for x, _ in lt]
            row("1-minute load average at the end of the launch rounds", med(loads), ".1f", None, loads)
            row("launch --follow / trainer alone: wall", ratio("launch", "td", "wall_s")[0], ".3f", None)
            row("launch --follow / trainer alone: tree CPU", ratio("launch", "td", "tree_cpu_s")[0], ".3f", None)
        if "packing" in pairs:
            v, per = ratio("packed-td", "packed-lf", "cpu_per_step")
            row("packed: trainer CPU per optimizer step, td/LF", v, ".3f", TARGETS["cpu_per_step_packed"], per)
            for tool, label in (("td", "tunedeck"), ("lf", "LLaMA-Factory")):
                for kind in ("packed", "neat"):
                    sp = [u.epoch_cpu_s / q.epoch_cpu_s for u, q in
                          zip(results[f"unpacked-{tool}"], results[f"{kind}-{tool}"], strict=True)]
                    name = "packing" if kind == "packed" else "neat_packing"
                    row(f"{name} speed-up over unpacked (CPU per epoch), {label}", med(sp), ".2f", None, sp)

        print()
        print(f"LLaMA-Factory {LF_VERSION} vs tunedeck, {a.rounds} rounds, medians of per-round ratios "
              f"({'CUDA' if cuda else 'CPU'}, torch {_torch_version()}):")
        print()
        print("| measure | result (range) | target | met |")
        print("|---|---|---|---|")
        for label, value, target, met in rows:
            print(f"| {label} | {value} | {target} | {met} |")
        if a.json:
            a.json.write_text(json.dumps({"rounds": all_rounds, "table": rows}, indent=1))
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
