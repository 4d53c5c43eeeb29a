"""``tunedeck chat``: a real subprocess on the demo run's newest checkpoint, driven through a
pipe (scripts) and through a pseudo-terminal (a person pressing Ctrl+C)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from control_helpers import REPO
from pty_helpers import kill_child, read_some

CHAT_TIMEOUT = 240


def _chat(args: list[str], stdin: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "chat", *args], input=stdin,
                          capture_output=True, text=True, timeout=CHAT_TIMEOUT, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_chat_answers_demo_instructions_in_the_shape_it_was_trained_on(trained_demo_run: Path,
                                                                       tmp_path: Path) -> None:
    saved = tmp_path / "chat.json"
    lines = [
        "Reverse the string.\\nowl",
        "/clear",
        "/set temperature 0",
        "Sort the letters.\\nh d b",
        "/clear",
        "Add the numbers.\\n5 2",
        f"/save {saved}",
        "/nonsense",
        "/exit",
        "this line is never read",
    ]
    proc = _chat([str(trained_demo_run), "--checkpoint", "latest", "max_new_tokens=16", "do_sample=false"],
                 "\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = proc.stdout.splitlines()
    assert len(answers) == 3, proc.stdout
    rev, srt, add = (a.strip() for a in answers)
    assert rev.isalpha() and rev.islower() and len(rev) == 3, rev       # a reversed 3-letter word
    assert [len(x) for x in srt.split(" ")] == [1, 1, 1], srt            # three letters, spaced
    assert add.isdigit(), add                                           # a number
    assert "@ checkpoint-300" in proc.stderr and "template default" in proc.stderr
    assert "unknown command /nonsense" in proc.stderr and "temperature = 0.0" in proc.stderr
    record = json.loads(saved.read_text(encoding="utf-8"))
    assert record["model"].endswith("@ checkpoint-300") and record["generation"]["temperature"] == 0.0
    assert record["messages"] == [{"role": "user", "content": "Add the numbers.\n5 2"},
                                  {"role": "assistant", "content": answers[2]}]


def test_chat_with_a_missing_checkpoint_names_the_ones_there_are(trained_demo_run: Path) -> None:
    proc = _chat([str(trained_demo_run), "--checkpoint", "42"], "")
    assert proc.returncode == 1
    assert "checkpoint-42 does not exist" in proc.stderr and "checkpoint-200" in proc.stderr
    assert "Traceback" not in proc.stderr


def _read_until(fd: int, needle: bytes, timeout: float, seen: bytearray, start: int = 0) -> int:
    """Read the terminal into ``seen`` until ``needle`` shows at or after ``start``; its offset."""
    deadline = time.monotonic() + timeout
    while seen.find(needle, start) < 0:
        assert time.monotonic() < deadline, f"no {needle!r} in the terminal; it shows:\n{seen.decode(errors='replace')[-1500:]}"
        chunk = read_some(fd, 0.2)
        if chunk is None:
            break
        seen.extend(chunk)
    return seen.find(needle, start)


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(trained_demo_run: Path) -> None:
    # the untrained base model babbles up to max_new_tokens; each token takes 0.2 s
    env = {**os.environ, "PYTHONPATH": str(REPO), "TUNEDECK_FAULT": "slowtoken@0.2", "TERM": "dumb"}
    argv = [sys.executable, "-m", "tunedeck.runner.cli", "chat", str(trained_demo_run), "--checkpoint", "base",
            "max_new_tokens=2000", "do_sample=true", "temperature=1.5", "top_k=0", "top_p=1"]
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execve(sys.executable, argv, env)
    seen = bytearray()
    try:
        _read_until(fd, b"User: ", 180, seen)
        os.write(fd, b"hello\r")
        _read_until(fd, b"Assistant: ", 60, seen)
        start = len(seen)
        deadline = time.monotonic() + 60
        while len(seen) - start < 30:  # some of the answer is on screen
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-800:]
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                seen.extend(os.read(fd, 4096))
        os.write(fd, b"\x03")  # Ctrl+C
        stopped = _read_until(fd, b"[stopped]", 60, seen, start)
        _read_until(fd, b"User: ", 60, seen, stopped)  # the chat goes on
        os.write(fd, b"/exit\r")
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "chat did not leave on /exit after a Ctrl+C"
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                with contextlib.suppress(OSError):
                    seen.extend(os.read(fd, 4096))
        assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")[-800:]
    finally:
        kill_child(pid)
        os.close(fd)


def test_session_commands_edit_history_settings_and_system() -> None:
    import pytest

    from tunedeck.runner.errors import TunedeckError
    from tunedeck.runner.infer.chat import ChatSession, parse_command

    s = ChatSession(label="m")
    assert s.apply(parse_command("hi")).action == "generate"
    s.messages.append({"role": "assistant", "content": "a1"})
    assert s.apply(parse_command("/retry")).action == "generate" and s.messages == [{"role": "user", "content": "hi"}]
    s.messages.append({"role": "assistant", "content": "a2"})
    s.apply(parse_command("again"))
    s.messages.append({"role": "assistant", "content": "a3"})
    s.apply(parse_command("/undo"))
    assert [m["content"] for m in s.messages] == ["hi", "a2"]
    s.apply(parse_command("/system Be terse."))
    s.apply(parse_command("/set top_k=5"))
    assert s.system == "Be terse." and s.gen.top_k == 5
    assert s.apply(parse_command("//set is a message")).action == "generate"
    assert s.messages[-1]["content"] == "/set is a message"
    s.apply(parse_command("/clear"))
    assert s.messages == [] and s.apply(parse_command("/exit")).action == "exit"
    with pytest.raises(TunedeckError, match="unknown command /sett"):
        parse_command("/sett top_k 2")
    with pytest.raises(TunedeckError, match="key and a value"):
        s.apply(parse_command("/set top_k"))


def test_a_model_that_does_not_fit_gets_the_estimates_words_not_a_traceback(tmp_path: Path,
                                                                             tiny_model_dir: Path) -> None:
    # a 70B-shaped LLaMA config (no weights needed: the check comes before loading anything)
    big = tmp_path / "big-llama"
    big.mkdir()
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    cfg.update(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
               num_key_value_heads=8, head_dim=128, vocab_size=128256)
    (big / "config.json").write_text(json.dumps(cfg))
    conf = tmp_path / "chat.yaml"
    conf.write_text(f"model_name_or_path: {big}\ntemplate: llama3\ninfer_dtype: float32\n")
    proc = _chat([str(conf)], "hello\n")
    assert proc.returncode == 1, proc.stderr[-1500:]
    assert "the weights alone need" in proc.stderr and "B parameters in float32" in proc.stderr
    assert "tunedeck estimate" in proc.stderr and "Traceback" not in proc.stderr
