"""trainer_log.jsonl reading (every malformed-log case), metric history, downsampling,
trainer_state.json fallback, and tails of stdout.log."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from tunedeck.runner.rundir import logs
from tunedeck.runner.rundir.logs import (
    MetricHistory,
    RunHistory,
    TextTail,
    TrainerLogReader,
    downsample,
    load_history,
    tail_lines,
)


def rec(step: int, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {"current_steps": step, "total_steps": 100, "loss": 2.0 - step / 100}
    base.update(extra)
    return base


def line(r: dict[str, object]) -> str:
    return json.dumps(r) + "\n"


def write(path: Path, text: str, mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as fh:
        fh.write(text)


def test_reads_only_what_was_appended(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    r = TrainerLogReader(p)
    assert r.poll() == [] and not r.exists  # missing file: nothing, no error
    write(p, line(rec(1)) + line(rec(2)))
    assert [x["current_steps"] for x in r.poll()] == [1, 2]
    assert r.poll() == []
    write(p, line(rec(3)))
    assert [x["current_steps"] for x in r.poll()] == [3]
    assert list(r.history.steps("loss")) == [1, 2, 3]
    assert r.history.last("loss") == pytest.approx(1.97)
    assert r.offset == p.stat().st_size and r.resets == 0 and r.garbage == 0


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    full = line(rec(2, lr=1e-4))
    write(p, line(rec(1)) + full[:17])
    r = TrainerLogReader(p)
    assert [x["current_steps"] for x in r.poll()] == [1]
    assert r.pending == full[:17].encode()
    write(p, full[17:-1])  # still no newline
    assert r.poll() == []
    write(p, "\n")
    (got,) = r.poll()
    assert got == rec(2, lr=1e-4) and r.garbage == 0 and r.pending == b""


def test_garbage_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    text = (
        line(rec(1))
        + "not json at all\n"
        + "[1, 2, 3]\n"  # valid JSON, not a record
        + '{"current_steps": 2, "loss": \n'  # a broken line...
        + "1.5}\n"  # ...that would parse only together with the next one
        + "\n"  # blank lines are not garbage
        + "   \n"
        + '  {"current_steps": 3, "loss": 1.2}  \r\n'  # surrounding whitespace, CRLF: fine
        + "[" * 100_000
        + "\n"  # nests deeper than the parser recurses (RecursionError)
        + line(rec(4))
    )
    with open(p, "wb") as fh:
        fh.write(
            text.encode() + b'{"current_steps": 5, "loss": \xff\xfe}\n' + line(rec(6)).encode()
        )
    r = TrainerLogReader(p)
    got = r.poll()
    assert [x["current_steps"] for x in got] == [1, 3, 4, 6]
    assert r.garbage == 6
    assert list(r.history.steps("loss")) == [1, 3, 4, 6]


def test_over_long_line_is_dropped_as_garbage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_MAX_LINE", 1000)
    monkeypatch.setattr(logs, "_CHUNK", 256)
    p = tmp_path / "trainer_log.jsonl"
    write(p, line(rec(1)) + "x" * 5000 + "\n" + line(rec(2)))
    r = TrainerLogReader(p)
    assert [x["current_steps"] for x in r.poll()] == [1, 2]
    assert r.garbage == 1


def test_records_across_read_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_CHUNK", 100)  # every record straddles chunk boundaries
    p = tmp_path / "trainer_log.jsonl"
    write(p, "".join(line(rec(i, lr=1e-4 * i, note="é" * i)) for i in range(1, 201)))
    r = TrainerLogReader(p)
    got = r.poll(limit=None)
    assert [x["current_steps"] for x in got] == list(range(1, 201))
    assert got[-1]["note"] == "é" * 200 and r.garbage == 0


def test_truncated_file_starts_over(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    write(p, "".join(line(rec(i)) for i in range(1, 6)))
    r = TrainerLogReader(p)
    assert len(r.poll()) == 5
    with open(p, "w", encoding="utf-8") as fh:  # same inode, truncated
        fh.write(line(rec(1, loss=9.0)))
    got = r.poll()
    assert got == [rec(1, loss=9.0)] and r.resets == 1
    assert list(r.history.values("loss")) == [9.0]


def test_replaced_file_with_a_new_inode_starts_over(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    write(p, "".join(line(rec(i)) for i in range(1, 4)))
    r = TrainerLogReader(p)
    r.poll()
    old_inode = p.stat().st_ino
    new = tmp_path / "new.jsonl"  # bigger than the old one: only the inode tells
    write(new, "".join(line(rec(i, loss=5.0)) for i in range(1, 9)))
    os.replace(new, p)
    assert p.stat().st_ino != old_inode
    got = r.poll()
    assert len(got) == 8 and r.resets == 1 and len(r.history) == 8
    assert set(r.history.values("loss")) == {5.0}


def test_in_place_rewrite_of_the_same_size_or_bigger_starts_over(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    write(p, line(rec(1, tag="first-run")))
    r = TrainerLogReader(p)
    r.poll()
    with open(p, "r+", encoding="utf-8") as fh:  # same inode, rewritten from byte 0
        fh.write(line(rec(1, tag="other-run")) + line(rec(2, tag="other-run")))
    got = r.poll()
    assert [x["tag"] for x in got] == ["other-run", "other-run"] and r.resets == 1


def test_deleted_then_recreated_file_starts_over(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    write(p, line(rec(1)) + line(rec(2)))
    r = TrainerLogReader(p)
    r.poll()
    p.unlink()
    assert r.poll() == [] and not r.exists
    write(p, line(rec(1, loss=7.0)) + line(rec(2, loss=7.0)) + line(rec(3, loss=7.0)))
    assert len(r.poll()) == 3 and r.resets == 1 and set(r.history.values("loss")) == {7.0}


def test_learning_rate_is_read_as_lr(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    write(p, line({"current_steps": 1, "loss": 1.0, "learning_rate": 2e-4}) + line(rec(2, lr=1e-4)))
    r = TrainerLogReader(p)
    got = r.poll()
    assert got[0]["lr"] == 2e-4 and "learning_rate" not in got[0]
    assert list(r.history.values("lr")) == [2e-4, 1e-4]


def test_poll_limit_caps_the_returned_records_not_the_history(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    write(p, "".join(line(rec(i)) for i in range(1, 51)))
    r = TrainerLogReader(p)
    got = r.poll(limit=10)
    assert [x["current_steps"] for x in got] == list(range(41, 51))
    assert len(r.history) == 50 and r.history.last_record()["current_steps"] == 50


def test_resume_from_an_earlier_step_drops_the_abandoned_trajectory() -> None:
    h = MetricHistory()
    h.extend([rec(s, eval_loss=1.0) if s % 4 == 0 else rec(s) for s in range(1, 11)])
    # Eval/predict progress lines restart their own counter: they carry no metric.
    h.append({"current_steps": 2, "total_steps": 10, "percentage": 20.0})
    assert h.rewinds == 0
    h.extend([rec(s, loss=0.5) for s in range(6, 9)])  # resumed from checkpoint-5
    assert h.rewinds == 1
    assert list(h.steps("loss")) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert list(h.values("loss"))[5:] == [0.5, 0.5, 0.5]
    assert list(h.steps("eval_loss")) == [4]  # step 8's eval belonged to the old trajectory


def test_a_step_logged_twice_counts_once_and_the_later_line_wins(tmp_path: Path) -> None:
    # LLaMA-Factory resumed after a crash: step 7 was logged, the crash came before
    # checkpoint-7, the resume from checkpoint-6 logs step 7 again.
    path = tmp_path / "trainer_log.jsonl"
    first = [rec(s, throughput=100.0) for s in range(1, 8)]
    again = [rec(s, loss=0.5, throughput=200.0) for s in range(7, 13)]
    write(path, "".join(line(r) for r in first))
    r = TrainerLogReader(path)
    r.poll()
    rewinds = r.history.rewinds
    write(path, "".join(line(r) for r in again))
    r.poll()
    h = r.history
    assert list(h.steps("loss")) == list(range(1, 13))
    assert list(h.steps("throughput")) == list(range(1, 13))
    assert h.values("loss")[6] == 0.5 and h.values("throughput")[6] == 200.0
    assert h.rewinds > rewinds  # readers that cache by length see the change in place
    # An eval record at the step of a loss record adds to it; it replaces nothing.
    h.append({"current_steps": 12, "total_steps": 100, "eval_loss": 0.7})
    assert list(h.steps("loss"))[-1] == 12 and len(h.steps("loss")) == 12
    assert list(h.steps("eval_loss")) == [12]
    # The same again, from a cold load of the finished file.
    cold = load_history(tmp_path)
    assert list(cold.steps("loss")) == list(range(1, 13)) and cold.values("loss")[6] == 0.5


def test_watch_once_draws_a_step_logged_twice_once(tmp_path: Path) -> None:
    # LLaMA-Factory's auto-resume after a crash at step 7 (checkpoint-6) logs step 7 again;
    # `watch --once` draws one curve column per step (12 steps, not 13 points).
    import subprocess
    import sys

    from tests.control_helpers import control_env

    out = tmp_path / "lf-run"
    out.mkdir()
    lines = [rec(s, loss=3.0 - s / 10) for s in range(1, 8)] + [rec(s, loss=3.0 - s / 10) for s in range(7, 13)]
    (out / "trainer_log.jsonl").write_text("".join(line(r) for r in lines))
    w = subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "watch", "--once", "--all", "--root",
                        str(tmp_path)], capture_output=True, text=True, timeout=120,
                       env={**control_env(tmp_path / "home"), "COLUMNS": "200", "TUNEDECK_FAKE_NVML": "none"})
    assert w.returncode == 0, w.stderr
    row = next(t for t in w.stdout.splitlines() if "lf-run" in t)
    curve = max(row.split(), key=lambda word: sum(ch in "▁▂▃▄▅▆▇█" for ch in word))
    assert len(curve) == 12, row


def test_nan_loss_is_kept_but_skipped_by_min_and_downsample() -> None:
    h = MetricHistory()
    h.extend([rec(1, loss=float("nan")), rec(2, loss=3.0), rec(3, loss=1.0), rec(4, loss=math.inf)])
    h.append(rec(5, loss=float("nan")))
    assert math.isnan(h.last("loss"))  # a diverged run shows as such
    assert h.min("loss") == 1.0
    assert downsample(h.values("loss"), 10) == [3.0, 1.0]
    assert h.at_step("loss", 2.5) == 3.0 and h.at_step("loss", 0) is None
    assert h.values("no-such-metric").tolist() == [] and h.last("eval_loss") is None


def test_non_numeric_metric_values_are_ignored() -> None:
    h = MetricHistory()
    h.append({"current_steps": 1, "loss": "1.5", "lr": None, "grad_norm": [1], "epoch": 10**400})
    h.append({"step": 2, "loss": 1.25})  # transformers' key for the step
    h.append({"loss": 1.0})  # no step at all: stays at the last one
    assert list(h.steps("loss")) == [2, 2] and h.names() == ["loss"] and len(h) == 3


def _reference(values: list[float], width: int, how: str) -> list[float]:
    n = len(values)
    out = []
    for c in range(width):
        b = [v for v in values[c * n // width : (c + 1) * n // width] if math.isfinite(v)]
        if b:
            out.append({"mean": sum(b) / len(b), "max": max(b), "min": min(b), "last": b[-1]}[how])
    return out


@pytest.mark.parametrize("how", ["mean", "max", "min", "last"])
def test_downsample_matches_a_plain_reference_with_nan_and_inf(how: str) -> None:
    values = [math.sin(i / 7) * 10 + i / 50 for i in range(5003)]
    for i in (0, 17, 18, 999, 1000, 2500, 5002):
        values[i] = float("nan")
    values[40] = math.inf
    values[41] = -math.inf
    values[3000:3030] = [float("nan")] * 30  # a whole column of nothing but NaN
    got = downsample(values, 200, how)
    assert got == pytest.approx(_reference(values, 200, how))
    assert len(got) == 199
    assert downsample(values[:50], 200, how) == [v for v in values[:50] if math.isfinite(v)]
    assert downsample([], 10, how) == [] and downsample(values, 0, how) == []
    with pytest.raises(ValueError):
        downsample(values, 10, "median")


def test_trainer_state_fallback_for_plain_transformers_runs(tmp_path: Path) -> None:
    state = {
        "global_step": 30,
        "log_history": [
            {"step": 10, "loss": 2.0, "learning_rate": 5e-5, "grad_norm": 1.5, "epoch": 0.1},
            {"step": 20, "loss": 1.5, "learning_rate": 4e-5, "epoch": 0.2},
            {"step": 20, "eval_loss": 1.7, "eval_runtime": 3.2, "epoch": 0.2},
            {"step": 30, "train_loss": 1.6, "train_runtime": 100.0},
        ],
    }
    ckpt = tmp_path / "checkpoint-20"
    ckpt.mkdir()
    # While training, only checkpoints hold a trainer_state.json.
    (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": state["log_history"][:3]}))
    (tmp_path / "checkpoint-5").mkdir()  # older, without state
    h = load_history(tmp_path)
    assert list(h.steps("loss")) == [10, 20] and list(h.values("lr")) == [5e-5, 4e-5]
    assert list(h.values("eval_loss")) == [1.7]
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    follower = RunHistory(tmp_path)
    assert follower.poll() and follower.source == "trainer_state"
    assert follower.history.last("grad_norm") == 1.5 and len(follower.history) == 4
    assert not follower.poll()  # unchanged file: not re-read
    # trainer_log.jsonl wins as soon as it exists.
    write(tmp_path / "trainer_log.jsonl", line(rec(1, loss=3.0)))
    assert follower.poll() and follower.source == "trainer_log"
    assert list(load_history(tmp_path).values("loss")) == [3.0]
    assert len(load_history(tmp_path / "nowhere")) == 0
    (tmp_path / "trainer_log.jsonl").unlink()
    (tmp_path / "trainer_state.json").write_text("[" * 100_000)  # garbage: no history, no crash
    assert len(load_history(tmp_path)) == 0


def test_tail_lines_reads_backwards_from_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "stdout.log"
    with open(p, "wb") as fh:
        fh.truncate(2 << 30)  # a 2 GiB (sparse) file: reading it all would take a while
        fh.seek(0, os.SEEK_END)
        fh.write(b"".join(f"line {i}\n".encode() for i in range(1000)))
        fh.write(b"progress 10%\rprogress 50%\rprogress 99%\n")  # a tqdm bar
        fh.write(b"last \xff without newline")
    read = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, off: int) -> bytes:
        read.append(n)
        return real_pread(fd, n, off)

    monkeypatch.setattr(logs.os, "pread", counting_pread)
    got = tail_lines(p, 3)
    assert got == ["line 999", "progress 99%", "last \ufffd without newline"]
    assert sum(read) <= 128 << 10
    assert tail_lines(p, 2, collapse_cr=False)[0] == "progress 10%\rprogress 50%\rprogress 99%"
    assert tail_lines(tmp_path / "missing.log", 5) == [] and tail_lines(p, 0) == []
    small = tmp_path / "small.log"
    small.write_text("a\nb\n")
    assert tail_lines(small, 10) == ["a", "b"]


def test_text_tail_follows_appends_partials_and_truncation(tmp_path: Path) -> None:
    p = tmp_path / "stdout.log"
    write(p, "".join(f"old {i}\n" for i in range(10)) + "half")
    t = TextTail(p, initial_lines=3)
    assert t.poll() == ["old 7", "old 8", "old 9"] and t.partial == "half"
    write(p, " done\nnext\nstep 1/9\rstep 5/9")
    assert t.poll() == ["half done", "next"] and t.partial == "step 5/9"
    write(p, "\rstep 9/9\n")
    assert t.poll() == ["step 9/9"]
    assert t.poll() == []
    p.write_text("fresh\n")  # truncated and rewritten (smaller)
    assert t.poll() == ["fresh"] and t.resets == 1
    whole = TextTail(p, from_start=True)
    assert whole.poll() == ["fresh"]
    assert TextTail(tmp_path / "none.log").poll() == []
