"""The reliability summary: one row per scenario (trials, passed, data lost), printed at the
end of the session and, with ``--write-summary``, written to ``docs/reliability.md``.

A test opens a scenario and runs each trial inside ``with sc.trial() as t:``; a trial that
raises counts as failed (and the exception still fails the test), ``t.lost()`` marks data
lost in that trial (a checkpoint, a config, a loss step, a secret shown: anything the
promise says must never be lost). A test that fails outside a trial marks its rows failed.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"


@dataclass
class Row:
    scenario: str
    trials: int = 0
    passed: int = 0
    data_lost: int = 0
    notes: list[str] = field(default_factory=list)
    tests: set[str] = field(default_factory=set)
    test_failed: bool = False

    @property
    def ok(self) -> bool:
        return (
            not self.test_failed
            and self.trials > 0
            and self.passed == self.trials
            and not self.data_lost
        )


class Trial:
    def __init__(self) -> None:
        self.data_lost = False
        self.notes: list[str] = []

    def lost(self, what: str = "") -> None:
        """Data was lost in this trial (the suite's one unforgivable outcome)."""
        self.data_lost = True
        if what:
            self.notes.append(what)


class Scenario:
    """Handle a test uses to count its trials."""

    def __init__(self, row: Row) -> None:
        self.row = row

    @contextmanager
    def trial(self) -> Iterator[Trial]:
        t = Trial()
        self.row.trials += 1
        try:
            yield t
        except BaseException:
            if t.data_lost:
                self.row.data_lost += 1
            raise
        if t.data_lost:
            self.row.data_lost += 1
        else:
            self.row.passed += 1

    def note(self, text: str) -> None:
        if text not in self.row.notes:
            self.row.notes.append(text)

    def record(self, passed: bool, data_lost: bool = False) -> None:
        """Count a trial whose outcome was observed elsewhere (a driver thread)."""
        self.row.trials += 1
        self.row.passed += int(passed and not data_lost)
        self.row.data_lost += int(data_lost)

    @property
    def failures(self) -> int:
        return self.row.trials - self.row.passed


ROWS: dict[str, Row] = {}
_ORDER: list[str] = []

# What each scenario does (for docs/reliability.md), in the order the table lists them.
DESCRIPTIONS: dict[str, str] = {
    "TUI / watch SIGKILL or SIGHUP mid-run":
        "A real run (odd output_dir name, launched under umask 002) is watched by the TUI and by "
        "`tunedeck watch`, each in a real pty as its controlling terminal; they are SIGKILLed or "
        "the terminal is closed (kernel SIGHUP) at random moments. The run finishes with every "
        "loss step 1..N logged once; a fresh reader and a new TUI show the whole history; nothing "
        "of the run is left running.",
    "Secrets planted in a real run: files, CLI, TUI":
        "SWANLAB_API_KEY, WANDB_API_KEY, HF_TOKEN in the environment and hf_hub_token, "
        "swanlab_api_key, hub_token in the config: searched byte for byte in every file of the run "
        "directory and the registry, in status/runs/logs/checkpoints/triage/watch output, and on "
        "the dashboard, logs, checkpoints, triage and editor screens (each secret field, the YAML "
        "preview).",
    "Two launches on one output_dir at once":
        "Two `tunedeck launch` processes released in the same instant on one config: exactly one "
        "run exists, the other exits 4 with one line; the winner is stopped and checked.",
    "Trainer SIGKILLed mid-checkpoint (real run), then resume --from latest":
        "The trainer is frozen (SIGSTOP) at a point of writing checkpoint-8 seen by a 1 ms poll, "
        "then SIGKILLed; `resume --from latest` (or the supervisor's automatic restart) must pick "
        "the newest complete checkpoint and the run must finish.",
    "Death after each step of a checkpoint save (in-process, save_total_limit)":
        "transformers' own `_save_checkpoint` under our mixin, with the process 'dying' right "
        "after each of its steps (weights, optimizer, RNG, trainer_state, rotation of old "
        "checkpoints): a complete checkpoint must always remain.",
    "Runs started together on one dataset (shared tokenized cache)":
        "Two runs storing the same tokenized-dataset cache entry at once (the second store "
        "checked just before the first renamed its entry into place): the second keeps the "
        "first's entry instead of dying with ENOTEMPTY.",
    "2-process (gloo) run: stop leaves no process":
        "`tunedeck stop` on a 2-rank CPU run: stopped with a checkpoint; psutil finds no process "
        "of the run (by recorded pid+start time, by TUNEDECK_RUN_ID, by command line).",
    "2-process (gloo) runs finish and every worker exits":
        "2-rank CPU runs left to finish: status finished, no process of the run left, and the "
        "supervisor's exit watchdog never had to end a worker stuck in torch's teardown "
        "(a gloo/DDP destructor deadlock hung about 1 in 20 such runs before the fix).",
    "Supervisor SIGKILLed: lost, and stop still stops the trainer":
        "The supervisor of a 2-rank run is SIGKILLed: status and runs say lost while training "
        "goes on; `tunedeck stop` stops the trainer itself and nothing survives.",
    "Disk full while saving a checkpoint":
        "output_dir on an 8 MiB tmpfs filled after checkpoint-4 (or, where mount is refused, "
        "the ENOSPC fault switch): the run ends failed naming the disk, triage's first diagnosis "
        "is disk_full, checkpoint-4 is intact.",
    "Pid reused by an unrelated process after the run":
        "A run's dead supervisor and trainer pids are given to unrelated processes (ns_last_pid); "
        "status never says running and stop never signals them.",
    "NVML: every pynvml error class at every call":
        "The fake pynvml wrapped so every function raises each of pynvml's 32 error classes in "
        "turn (and each class at init): the facade never raises, watch/gpus render every "
        "snapshot, and the GPUs come back when the driver answers again; `gpus`/`watch` CLI "
        "with the errors-everywhere backend.",
    "NVML faults: the dashboard (Pilot) never crashes":
        "The dashboard polls NVML through the same cycling backend (every class at every call) "
        "and keeps rendering; it shows the GPUs again once the errors stop.",
    "NVML: a GPU disappears mid-run":
        "GPU 1 of two falls off the bus (GpuIsLost on every call) while the dashboard runs: the "
        "GPU panel, watch and gpus say it is lost; GPU 0 keeps working.",
    "Security: no shell (argv lists only)":
        "An AST scan of the product code for shell=, os.system/popen/exec*/spawn*, getoutput, "
        "create_subprocess_shell, pty.spawn, command strings to subprocess, [\"sh\", \"-c\"]; "
        "the scanner is itself tested on a file with each form.",
    "Security: run dirs/manifests without g/o write; untrusted manifests":
        "Run dirs, created parents, manifests and registry entries stay 0755/0644 under umask "
        "000/002/022, and so does everything a real run writes under umask 002; a group-/world-"
        "writable manifest or one owned by another user makes `stop` refuse, and no process is "
        "signalled.",
    "Security: trust_remote_code warned and confirmed in the TUI":
        "`validate` warns (with the line); in the TUI, launch from the editor asks a separate "
        "question after the launch modal, and only 'y' launches.",
    "Security: no browser-served mode beyond localhost":
        "No command or module serves the TUI over the network; a future one must bind to "
        "localhost and mention an SSH tunnel.",
    "Config save killed by SIGKILL mid-write":
        "A process saving a config in a loop through ConfigDoc.save is SIGKILLed at random "
        "offsets into a save: the config and its .bak are always complete versions.",
    "Config fuzzing (hypothesis): loader + validator":
        "Generated YAML (wrong types, huge numbers, unicode keys, nesting, anchors, tabs, BOMs, "
        "CRs, truncation, other encodings): findings, never a traceback; file errors carry a line.",
    "Hostile config files (alias bomb, 50 MB, nesting, BOM, tabs ...)":
        "Billion laughs and a quieter alias bomb, a 50 MB file, 5000-deep nesting, 5000-digit "
        "numbers, python tags, NUL bytes...: refused with a line, memory bounded.",
    "trainer_log.jsonl fuzzing: truncated, interleaved, binary":
        "Records, garbage, blank lines, torn and interleaved writes appended in random slices: the "
        "reader returns exactly the valid records and counts every garbage line.",
    "tunedeck_run.json fuzzing: truncated, binary, wrong types":
        "Manifests truncated, spliced with binary, with every field of the wrong type: every "
        "reader and `status --json` survives, and a file never makes a process look alive.",
    "CLI run ids/paths with .., quotes, newlines, $(...)":
        "Every RUN-taking command with hostile ids: exit 3 and one line, nothing executed, no "
        "registry entry outside the registry; a run named with metacharacters works normally.",
}


def open_scenario(name: str, nodeid: str) -> Scenario:
    row = ROWS.get(name)
    if row is None:
        row = ROWS[name] = Row(name)
        _ORDER.append(name)
    row.tests.add(nodeid)
    return Scenario(row)


def mark_test_failed(nodeid: str) -> None:
    for row in ROWS.values():
        if nodeid in row.tests:
            row.test_failed = True


def rows() -> list[Row]:
    order = list(DESCRIPTIONS)
    return sorted((ROWS[n] for n in _ORDER), key=lambda r: order.index(r.scenario)
                  if r.scenario in order else len(order))


def table_lines() -> list[str]:
    out = [
        "| scenario | trials | passed | data lost | result | notes |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows():
        result = "ok" if r.ok else "FAILED"
        notes = "; ".join(r.notes).replace("|", "\\|")
        out.append(
            f"| {r.scenario} | {r.trials} | {r.passed} | {r.data_lost} | {result} | {notes} |"
        )
    return out


def _section(text: str, name: str) -> str | None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        return text[text.index(start):text.index(end) + len(end)]
    return None


def write_doc(soak: bool, duration_s: float, path: Path = DOC) -> Path:
    """Write this session's table into its section of ``docs/reliability.md`` (``soak`` or
    ``ci``), keeping the other set's section from an earlier run."""
    name = "soak" if soak else "ci"
    total_trials = sum(r.trials for r in rows())
    lost = sum(r.data_lost for r in rows())
    title = ("Soak: the issue's trial counts (`--soak`)" if soak else "CI set (the default run)")
    section = "\n".join([
        f"<!-- {name}:start -->",
        f"## {title}",
        "",
        f"`python -m pytest tests/reliability {'--soak ' if soak else ''}--write-summary` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node() or 'host'} ({platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs shared with other work): {len(rows())} scenarios, "
        f"{total_trials} trials, data lost in {lost}, {duration_s / 60:.1f} min.",
        "",
        *table_lines(),
        f"<!-- {name}:end -->",
    ])
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    sections = {n: _section(old, n) for n in ("soak", "ci")}
    sections[name] = section
    about = ["<!-- about:start -->", "## What each scenario does", ""]
    about += [f"- **{k}**: {v}" for k, v in DESCRIPTIONS.items()]
    about.append("<!-- about:end -->")
    head = [
        "# Reliability",
        "",
        "The promise of issue 7, as tests with numbers: nothing tunedeck does, and nothing that "
        "happens to it, loses a run, a checkpoint or a config, leaks a secret or runs something "
        "the user did not ask for. Real processes, real signals, the tiny model on CPU "
        "(`tests/reliability/`). The tables below are written by the suite itself "
        "(`--write-summary`); do not edit them by hand.",
        "",
    ]
    body = [sec for sec in (sections["soak"], sections["ci"]) if sec]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head) + "\n" + "\n\n".join([*body, "\n".join(about)]) + "\n", encoding="utf-8")
    return path
