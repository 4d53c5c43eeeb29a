"""Bad input, run-directory side: ``trainer_log.jsonl`` and ``tunedeck_run.json`` as a crash,
a second writer, a full disk or a hostile user leave them.

The reader is fed truncated, interleaved and binary content in random slices (as a
writer appends it) and must return exactly the records a careful parser finds, count
every other non-blank line as garbage, and never raise. The manifest parsers and every
reader built on them (``status``, ``runs``, the snapshot) must survive any bytes and never
call a process alive because a file says so.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunedeck.runner.rundir.logs import TrainerLogReader, downsample, load_history, tail_lines
from tunedeck.runner.rundir.manifest import RunManifest, read_manifest
from tunedeck.runner.rundir.protocol import ACTIVE_STATUSES, MANIFEST, TRAINER_LOG
from tunedeck.runner.rundir.runs import computed_status, raw_manifest, read_run

from .summary import Scenario

CI_EXAMPLES = 300
SOAK_EXAMPLES = 3000
def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))

@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path / "home"))


# -- trainer_log.jsonl ------------------------------------------------------------------
_num = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -(10**400), 2**63, 1e308, -0.0]),
)
_junk_value = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_record = st.fixed_dictionaries(
    {"current_steps": st.one_of(st.integers(0, 10**6), _num, _junk_value)},
    optional={
        "total_steps": st.one_of(st.integers(0, 10**6), _junk_value),
        "loss": st.one_of(_num, _junk_value),
        "eval_loss": _num,
        "lr": _num,
        "learning_rate": _num,
        "grad_norm": _num,
        "epoch": _num,
        "throughput": _num,
        "percentage": _num,
        "remaining_time": st.one_of(st.text(max_size=12), st.sampled_from(["0:00:01", "2 days, 3:04:05"])),
        "step": _num,
        "\u5b66\u4e60\u7387": _num,
    },
)


def _encode_record(rec: dict[str, Any]) -> bytes:
    # JSON as Python writes it (NaN/Infinity literals included: the trainer does write them).
    return json.dumps(rec).encode()


_garbage_line = st.one_of(
    # binary: never starts a JSON object and holds no newline
    st.binary(min_size=1, max_size=40).map(lambda b: b"\xff" + b.replace(b"\n", b"")),
    st.text(min_size=1, max_size=30).map(lambda t: ("#" + t.replace("\n", " ")).encode()),
    st.sampled_from([b"[1, 2]", b'"a string"', b"42", b"null", b"{", b'{"a": 1', b"{}}", b'{"a":1} trailing',
                     b"\x00\x00\x00", b"Traceback (most recent call last):", b"\x1b[31mred\x1b[0m"]),
)


@st.composite
def log_streams(draw: st.DrawFn) -> tuple[list[bytes], list[int]]:
    """Lines of a log as two writers, a crash and a disk leave them, and the slice sizes
    in which they reach the file."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["rec", "rec", "rec", "garbage", "blank", "truncated", "interleaved"]))
        if kind == "rec":
            lines.append(_encode_record(draw(_record)))
        elif kind == "garbage":
            lines.append(draw(_garbage_line))
        elif kind == "blank":
            lines.append(draw(st.sampled_from([b"", b" ", b"\t", b"\r"])))
        elif kind == "truncated":  # a crash in the middle of a write, then the next record
            rec = _encode_record(draw(_record))
            lines.append(rec[: draw(st.integers(1, max(1, len(rec) - 1)))])
        else:  # two writers without O_APPEND discipline: one record cut into another
            a, b = _encode_record(draw(_record)), _encode_record(draw(_record))
            cut = draw(st.integers(1, max(1, len(a) - 1)))
            lines.append(a[:cut] + b + a[cut:])
    data = b"\n".join(lines) + (b"\n" if lines else b"")
    sizes = draw(st.lists(st.integers(1, 64), max_size=30))
    return [data], sizes


def _oracle(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """What a careful parser finds: complete lines that are JSON objects, and garbage lines."""
    recs: list[dict[str, Any]] = []
    garbage = 0
    body = data[: data.rfind(b"\n") + 1]  # a partial last line is not read yet
    for raw in body.split(b"\n")[:-1]:
        text = raw.decode("utf-8", "replace")
        if not text.strip():
            continue
        try:
            obj = json.loads(text.strip(" \t\r"))
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            recs.append(obj)
        else:
            garbage += 1
    return recs, garbage


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_fuzz_trainer_log_reader_counts_garbage_and_never_crashes(tmp_path: Path, soak: bool, scenario) -> None:  # type: ignore[no-untyped-def]
    sc: Scenario = scenario("trainer_log.jsonl fuzzing: truncated, interleaved, binary")
    n = SOAK_EXAMPLES if soak else CI_EXAMPLES
    counter = {"records": 0, "garbage": 0}

    @fuzz_settings(n)
    @given(stream=log_streams())
    def run(stream: tuple[list[bytes], list[int]]) -> None:
        (data,), sizes = stream
        path = tmp_path / TRAINER_LOG
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with sc.trial() as t:
            reader = TrainerLogReader(path)
            got: list[dict[str, Any]] = []
            assert reader.poll() == []  # no file yet: nothing, no error
            pos = 0
            with open(path, "ab") as fh:
                for size in [*sizes, len(data)]:
                    chunk = data[pos:pos + size]
                    pos += len(chunk)
                    fh.write(chunk)
                    fh.flush()
                    got += reader.poll(limit=None)
                    if pos >= len(data):
                        break
            got += reader.poll(limit=None)
            want, garbage = _oracle(data)
            # The reader renames learning_rate -> lr in place; the oracle compares the same way.
            for r in want:
                if "learning_rate" in r and "lr" not in r:
                    r["lr"] = r.pop("learning_rate")
            if not _same(got, want):
                t.lost(f"records differ: got {len(got)}, want {len(want)}")
            assert _same(got, want)
            assert reader.garbage == garbage, (reader.garbage, garbage)
            assert reader.lines == len(want)
            counter["records"] += len(want)
            counter["garbage"] += garbage
            # Every view of the same file agrees and survives it too.
            h = load_history(tmp_path)
            for name in ("loss", "lr", "eval_loss", "grad_norm", "throughput", "epoch"):
                for width in (1, 7, 80):
                    pts = downsample(h.values(name), width)
                    assert all(math.isfinite(v) for v in pts)
                h.min(name)
                h.last(name)
            tail_lines(path, 64)

    run()
    sc.note(f"{counter['records']} records read, {counter['garbage']} garbage lines counted")


def test_reader_starts_over_on_truncation_and_replacement(tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("trainer_log.jsonl fuzzing: truncated, interleaved, binary")
    path = tmp_path / TRAINER_LOG
    reader = TrainerLogReader(path)
    with sc.trial():
        path.write_bytes(b"".join(_encode_record({"current_steps": i, "loss": 1.0 / i}) + b"\n" for i in range(1, 6)))
        assert [r["current_steps"] for r in reader.poll()] == [1, 2, 3, 4, 5]
        path.write_bytes(_encode_record({"current_steps": 1, "loss": 9.0}) + b"\n")  # truncated + rewritten
        assert [r["loss"] for r in reader.poll()] == [9.0]
        assert reader.resets == 1 and list(reader.history.values("loss")) == [9.0]
    with sc.trial():
        new = tmp_path / "new.jsonl"
        new.write_bytes(b"\x00" * 64 + b"\n" + _encode_record({"current_steps": 2, "loss": 2.0}) + b"\n")
        os.replace(new, path)  # replaced under the reader: another inode
        assert [r["loss"] for r in reader.poll()] == [2.0]
        assert reader.garbage == 1 and reader.resets == 2
    with sc.trial():
        path.write_bytes(os.urandom(1 << 20))  # a binary file where a log should be
        reader.poll()
        path.unlink()
        assert reader.poll() == [] and not reader.exists


# -- tunedeck_run.json ---------------------------------------------------------------------
def _good_manifest(run_dir: Path) -> dict[str, Any]:
    m = RunManifest(id="20250101-000000-abcd", name="fuzz", output_dir=str(run_dir), config_path="c.yaml",
                    created_at=1_750_000_000.0, updated_at=1_750_000_000.0)  # fixed: same bytes every draw
    return json.loads(m.model_dump_json())


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                       st.sampled_from(["running", "starting", "stopping", "lost", "finished", "abc", "1e9", ""]))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)
_FIELDS = ["id", "name", "status", "supervisor", "trainer", "procs", "attempts", "gpus", "exit_code",
           "message", "updated_at", "created_at", "finished_at", "restarts", "max_restarts", "config_path",
           "checkpoint", "host", "num_processes"]
_ref = st.fixed_dictionaries({"pid": st.one_of(st.integers(-5, 2**40), _json_leaf),
                              "create_time": st.one_of(st.floats(allow_nan=True, allow_infinity=True), _json_leaf)},
                             optional={"pgid": _json_leaf, "role": _json_leaf})


@st.composite
def manifest_bytes(draw: st.DrawFn, run_dir: Path) -> bytes:
    m = _good_manifest(run_dir)
    m["status"] = draw(st.sampled_from([s.value for s in ACTIVE_STATUSES] + ["finished", "lost", "weird"]))
    for _ in range(draw(st.integers(0, 6))):
        field = draw(st.sampled_from(_FIELDS))
        m[field] = draw(st.one_of(_json, _ref, st.lists(_ref, max_size=3)))
    if draw(st.booleans()):
        m["supervisor"] = draw(_ref)
    raw = json.dumps(m).encode()
    mode = draw(st.sampled_from(["whole", "truncated", "binary", "nested", "interleaved", "bom"]))
    if mode == "truncated":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mode == "binary":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=32)) + raw[at:]
    elif mode == "nested":
        depth = draw(st.integers(100, 5000))
        raw = raw[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    elif mode == "interleaved":
        raw = raw[: len(raw) // 2] + raw
    elif mode == "bom":
        raw = b"\xef\xbb\xbf" + raw
    return raw


def _really_alive(ref: Any) -> bool:
    import psutil

    if not isinstance(ref, dict):
        return False
    pid, ct = ref.get("pid"), ref.get("create_time")
    if type(pid) is not int or not isinstance(ct, (int, float)) or isinstance(ct, bool) or pid <= 0:
        return False
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and abs(p.create_time() - float(ct)) <= 0.5
    except (psutil.Error, OverflowError, ValueError):
        return False


def test_fuzz_manifest_readers_never_crash_and_never_trust_a_file_for_liveness(
        tmp_path: Path, soak: bool, scenario) -> None:  # type: ignore[no-untyped-def]
    sc: Scenario = scenario("tunedeck_run.json fuzzing: truncated, binary, wrong types")
    n = SOAK_EXAMPLES if soak else CI_EXAMPLES
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / TRAINER_LOG).write_bytes(b'{"current_steps": 1, "total_steps": 2, "loss": 1.5}\n')
    unreadable = {"n": 0}

    @fuzz_settings(n)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(manifest_bytes(run_dir))
        (run_dir / MANIFEST).write_bytes(raw)
        with sc.trial():
            m = read_manifest(run_dir)
            assert m is None or isinstance(m, RunManifest)
            r = raw_manifest(run_dir)
            if r is None:
                unreadable["n"] += 1
            else:
                st_ = computed_status(r)
                if st_ in ACTIVE_STATUSES:
                    # Only a live supervisor (pid + start time) keeps a run active.
                    assert _really_alive(r.get("supervisor")) or r.get("supervisor") is None
            snap = read_run(run_dir)
            d = snap.to_dict()
            json.dumps(d, allow_nan=False)
            if snap.status in ACTIVE_STATUSES and snap.kind == "tunedeck":
                assert _really_alive((r or {}).get("supervisor")) or (r or {}).get("supervisor") is None
            _cli(["status", str(run_dir), "--json"])

    run()
    sc.note(f"{unreadable['n']} of {n} manifests unreadable (shown as not tunedeck's)")



def _strict(token: str) -> None:
    raise AssertionError(f"--json printed {token}, which is not JSON")


def _cli(argv: list[str]) -> str:
    """Run the CLI in-process (as the subprocess would): exit code 0, or a typed error code."""
    from tunedeck.runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code in (0, 3), (code, err.getvalue())
    if code == 0 and "--json" in argv:
        json.loads(out.getvalue(), parse_constant=_strict)  # strict JSON: jq refuses NaN/Infinity
    return out.getvalue()


@pytest.mark.parametrize("content", [pytest.param(c, id=f"{i}:{c[:40]!r}") for i, c in enumerate([
    b"", b"\x00" * 4096, b"{", b"[]", b'"x"', b"null", b'{"id": 5}', b'{"id": "x", "status": 7}',
    b'{"id": "x", "status": "running", "supervisor": {"pid": "abc", "create_time": "x"}}',
    b'{"id": "x", "status": "running", "supervisor": {"pid": NaN, "create_time": 1}}',
    b'{"id": "x", "status": "running", "supervisor": {"pid": true, "create_time": 0}}',
    b'{"id": "x", "status": "running", "supervisor": {"pid": 1, "create_time": 1e999}}',
    b'{"id": "x", "status": "running", "attempts": 5, "procs": 7, "gpus": 3}',
    b'{"id": "x", "status": "running", "gpus": "0,1", "procs": [1, "a", null], "attempts": {"a": 1}}',
    b'{"id": "x", "status": "finished", "created_at": "yesterday", "updated_at": [1], "exit_code": "1"}',
    b'{"id": "x", "status": "running", "config_path": [{"pid": 3175, "create_time": Infinity}], '
    b'"message": {"a": NaN}, "host": 5, "name": [1]}',
    b'{"id": "' + b"x" * 100_000 + b'", "status": "lost"}',
    b'{"id": "x", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
])])
def test_hostile_manifest_is_survived_by_every_reader(content: bytes, tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("tunedeck_run.json fuzzing: truncated, binary, wrong types")
    with sc.trial():
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / MANIFEST).write_bytes(content)
        assert read_manifest(run_dir) is None or isinstance(read_manifest(run_dir), RunManifest)
        snap = read_run(run_dir)
        assert snap.status not in ACTIVE_STATUSES or snap.kind != "tunedeck"
        json.dumps(snap.to_dict(), allow_nan=False)
        _cli(["status", str(run_dir), "--json"])
        _cli(["runs", "--root", str(tmp_path), "--json"])
