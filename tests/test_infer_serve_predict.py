"""After training (2/2): serve a run OpenAI-style as a supervised job and score predictions.

Real parts only: a LoRA run of the tiny model trained through ``tunedeck launch``, the server
started by ``tunedeck serve`` under the supervisor, the official ``openai`` client over
127.0.0.1, ``tunedeck stop``; predict as a supervised job, SIGKILLed midway and rerun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.control_helpers import control_env, manifest, tunedeck, wait_for
from tests.train_helpers import pid_alive

pytestmark = pytest.mark.slow

KEY = "sk-test-d6f1c0a7e2"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, make_demo_config: Any) -> dict[str, Any]:
    """A finished 8-step LoRA run with checkpoint-4 and checkpoint-8, and its environment."""
    tmp = tmp_path_factory.mktemp("served")
    cfg = make_demo_config(tmp, max_steps=8, save_steps=4)
    env = control_env(tmp / "home")
    out = tunedeck(["launch", str(cfg), "--follow", "--name", "demo-lora"], env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = tmp / "out"
    assert (run_dir / "checkpoint-4").is_dir() and (run_dir / "checkpoint-8").is_dir()
    return {"run_dir": run_dir, "env": env, "tmp": tmp}


def _get(url: str, auth: str | None = None) -> int:
    """The HTTP status of a plain GET (urllib: a second, independent client)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_serve_answers_the_openai_client_needs_its_key_and_stops_clean(trained: dict[str, Any]) -> None:
    from openai import APIStatusError, OpenAI

    env = trained["env"]
    out = tunedeck(["serve", "demo-lora", "--checkpoint", "4", "--checkpoint", "latest",
                    "--checkpoint", "base", "--port", "0",
                    "--api-key", KEY, "--json", "max_new_tokens=12"], env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    started = json.loads(out.stdout)
    job_dir = Path(started["run_dir"])
    try:
        url = started["url"]
        assert url.startswith("http://127.0.0.1:")
        assert started["models"] == ["demo-lora@checkpoint-4", "demo-lora@checkpoint-8", "demo-lora@base"]

        client = OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)
        assert sorted(m.id for m in client.models.list().data) == sorted(started["models"])

        question = [{"role": "user", "content": "Name a colour of the sky."}]
        reply = client.chat.completions.create(model="demo-lora@checkpoint-8", messages=question,
                                               temperature=0, max_tokens=12)
        text = reply.choices[0].message.content
        assert isinstance(text, str)   # 8 steps teach the tiny model little: any answer will do
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage is not None and reply.usage.prompt_tokens > 0

        # Streaming: the untrained base rambles to max_tokens, so the greedy answer arrives in
        # many pieces, and they add up to the same answer asked without streaming.
        whole = client.chat.completions.create(model="demo-lora@base", messages=question,
                                               temperature=0, max_tokens=12)
        assert whole.choices[0].finish_reason == "length"
        chunks = list(client.chat.completions.create(model="demo-lora@base", messages=question,
                                                     temperature=0, max_tokens=12, stream=True))
        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        assert len([p for p in pieces if p]) >= 3
        assert "".join(pieces) == whole.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason == "length"
        # The adapters are live: checkpoint-8 and the bare base answer the same greedy request
        # differently (a server that ignored `model` would give one answer).
        assert text != whole.choices[0].message.content

        # Two checkpoints are two adapters on one base: greedy answers of step 4 and step 8 differ
        # in general; at least the request for an unknown model is refused by name.
        with pytest.raises(APIStatusError) as missing:
            client.chat.completions.create(model="nope", messages=question, max_tokens=2)
        assert missing.value.status_code == 404

        done = client.completions.create(model="demo-lora@checkpoint-4", prompt="The sky is",
                                         max_tokens=6, temperature=0)
        assert isinstance(done.choices[0].text, str)

        # The key is checked on every request and never written down.
        base = url.removesuffix("/v1")
        assert _get(f"{url}/models") == 401
        assert _get(f"{base}/health", "Bearer wrong") == 401
        assert _get(f"{base}/health", f"Bearer {KEY}") == 200
        for f in job_dir.rglob("*"):
            if f.is_file():
                assert KEY not in f.read_text(errors="replace"), f

        # A chat can talk to the served run instead of loading the model: `tunedeck chat SERVER`
        # streams the same greedy answer the server gives.
        chatted = subprocess.run(
            [sys.executable, "-m", "tunedeck.runner.cli", "chat", started["run_id"], "--model", "demo-lora@base",
             "--api-key", KEY, "temperature=0", "max_new_tokens=12"],
            input="Name a colour of the sky.\n", env=env, capture_output=True, text=True, timeout=300)
        assert chatted.returncode == 0, chatted.stderr
        assert whole.choices[0].message.content in chatted.stdout
        assert "served at" in chatted.stderr
        nokey = subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "chat", started["run_id"]],
                               input="hi\n", env=env, capture_output=True, text=True, timeout=300)
        assert nokey.returncode != 0 and "requires an API key" in nokey.stderr

        # The server is a run: listed, with its job kind.
        runs = json.loads(tunedeck(["runs", "--json"], env, timeout=60).stdout)
        rows = [r for r in (runs if isinstance(runs, list) else runs.get("runs", []))
                if r.get("run_dir") == str(job_dir)]
        assert rows and rows[0]["job"] == "serve" and rows[0]["status"] == "running", runs
    finally:
        stopped = tunedeck(["stop", started["run_id"], "--timeout", "60", "--json"], env, timeout=180)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    m = manifest(job_dir)
    assert m["status"] == "stopped", m
    assert not [p["pid"] for p in m.get("procs", []) if pid_alive(p["pid"])]
    assert not pid_alive(m["supervisor"]["pid"])


def test_serve_refuses_to_expose_a_model_without_a_key(trained: dict[str, Any]) -> None:
    out = tunedeck(["serve", "demo-lora", "--host", "0.0.0.0", "--port", "0"], trained["env"], timeout=120)
    assert out.returncode == 2
    assert "--api-key" in out.stderr and "0.0.0.0" in out.stderr
    assert not (trained["run_dir"] / "serve" / "tunedeck_run.json").exists() or \
        manifest(trained["run_dir"] / "serve")["status"] != "running"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_predict_writes_row_by_row_resumes_after_sigkill_and_scores(trained: dict[str, Any],
                                                                    demo_data_dir: Path) -> None:
    env = trained["env"]
    job_dir = trained["tmp"] / "pred"
    args = ["predict", "demo-lora", "eval_dataset=demo_alpaca", "max_samples=6", "max_new_tokens=6",
            "--batch-size", "2", "--dir", str(job_dir)]
    # Slow tokens, so the job is surely midway when it is killed.
    slow = {**env, "TUNEDECK_FAULT": "slowtoken@0.3"}
    started = tunedeck([*args, "--no-wait"], slow, timeout=180)
    assert started.returncode == 0, started.stderr
    preds = job_dir / "generated_predictions.jsonl"
    wait_for(lambda: preds.exists() and len(preds.read_text().splitlines()) >= 2, 300, "the first batch")
    m = manifest(job_dir)
    os.killpg(m["trainer"]["pgid"], signal.SIGKILL)
    wait_for(lambda: manifest(job_dir).get("finished_at"), 120, "the killed job to be recorded")
    assert manifest(job_dir)["status"] in ("killed", "failed")
    first = preds.read_bytes()
    n_first = len(first.decode().splitlines())
    assert 2 <= n_first < 6
    # A crash mid-write leaves a torn row; the rerun must not keep or duplicate it.
    with open(preds, "ab") as f:
        f.write(b'{"prompt": "torn')

    again = tunedeck([*args, "--json"], env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = _rows(preds)
    assert len(rows) == 6
    assert preds.read_bytes().startswith(first)          # the rows done before are untouched
    assert len({r["prompt"] for r in rows}) == 6          # one row per example, none twice
    results = json.loads(again.stdout)
    for k in ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l"):
        assert 0.0 <= results[k] <= 100.0
    assert results["predict_samples"] == 6
    assert json.loads((job_dir / "predict_results.json").read_text()) == results
    # The scores are those of the rows in the file, LLaMA-Factory's way.
    from tunedeck.runner.infer.metrics import score_pairs

    mean = score_pairs((r["predict"], r["label"]) for r in rows)
    assert results["predict_rouge-l"] == pytest.approx(mean["rouge-l"], abs=1e-3)
    # The labels are the dataset's answers, the prompts the run's template around its questions.
    info = json.loads((demo_data_dir / "dataset_info.json").read_text())["demo_alpaca"]
    source = json.loads((demo_data_dir / info["file_name"]).read_text())[:6]
    assert [r["label"].strip() for r in rows] == [ex["output"].strip() for ex in source]
    assert all(ex["instruction"] in r["prompt"] for r, ex in zip(rows, source, strict=True))
    m = manifest(job_dir)
    assert m["job"] == "predict" and m["status"] == "finished" and len(m["attempts"]) == 2


async def test_the_tui_chat_opened_on_a_served_run_talks_to_the_server(
        trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """C on a `tunedeck serve` job in the dashboard opens a chat answered over HTTP (nothing loaded)."""
    from tests.tui_helpers import wait_for as tui_wait
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.chat import ChatPane, ChatScreen

    env = trained["env"]
    out = tunedeck(["serve", "demo-lora", "--checkpoint", "base", "--port", "0", "--json",
                    "--dir", str(trained["tmp"] / "tui-serve"), "--name", "tui-serve", "max_new_tokens=16"],
                   env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    started = json.loads(out.stdout)
    job_dir = Path(started["run_dir"])
    monkeypatch.setenv("TUNEDECK_HOME", env["TUNEDECK_HOME"])
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()
    try:
        app = TunedeckApp(root=trained["tmp"] / "nowhere")
        async with app.run_test(size=(120, 36)) as pilot:
            await tui_wait(pilot, lambda: app.selected_run_dir is not None, timeout=60, what="a run selected")
            for _ in range(12):   # j moves down the runs table to the server
                if app.selected_run_dir == job_dir:
                    break
                await pilot.press("j")
                await pilot.pause()
            assert app.selected_run_dir == job_dir
            await pilot.press("C")
            await tui_wait(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat screen")
            pane = next(iter(app.screen.query(ChatPane)))
            await tui_wait(pilot, lambda: pane.state == "ready", timeout=60, what="the served model")
            assert pane.session.remote is not None and pane.session.loaded is None
            for key in ("h", "i", "enter"):
                await pilot.press(key)
            await tui_wait(pilot, lambda: pane.state == "ready" and len(pane.session.messages) == 2,
                           timeout=120, what="the server's answer")
            assert pane.session.messages[-1]["role"] == "assistant"
            assert pane.session.messages[-1]["content"]
    finally:
        tunedeck(["stop", started["run_id"], "--timeout", "60"], env, timeout=180)
