"""The narrowest moment of a save, made deterministic: a "kill" (an exception nothing catches)
injected at each step of transformers' real ``Trainer._save_checkpoint`` under our mixin.

The real-run scenario (``test_runs.py``) SIGKILLs the trainer at points a poll can see; some
windows are microseconds wide. Here the mixin's ``_save_checkpoint`` runs in-process over
transformers' own ``_save_checkpoint`` (the stubs only write small files where transformers
would write weights), and the process "dies" right after each step, including right after
transformers rotates the old checkpoints away (``save_total_limit``). After every death the
run directory must still hold a complete checkpoint for ``resume --from latest``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tunedeck.runner.control.resume import pick_checkpoint
from tunedeck.runner.errors import TunedeckError


class Killed(BaseException):
    """The process dies here: nothing after this line of the save runs."""


STEPS = ("save_model", "optimizer", "rng_state", "trainer_state", "rotate")


def _trainer(out: Path, die_after: str | None, limit: int | None) -> Any:
    import transformers
    from transformers import TrainerState, TrainingArguments

    from tunedeck.runner.train.callbacks import RunFlags
    from tunedeck.runner.train.faults import Faults
    from tunedeck.runner.train.trainer import make_trainer_class

    class Stubbed(transformers.Trainer):
        """transformers' Trainer with the heavy writers replaced by small files."""

        def _die(self, step: str) -> None:
            if step == die_after:
                raise Killed(step)

        def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
            os.makedirs(output_dir, exist_ok=True)  # type: ignore[arg-type]
            Path(output_dir, "adapter_model.safetensors").write_bytes(b"w" * 64)  # type: ignore[arg-type]
            self._die("save_model")

        def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
            Path(output_dir, "optimizer.pt").write_bytes(b"o" * 64)
            self._die("optimizer")

        def _save_scaler(self, output_dir: str) -> None:
            pass

        def _save_rng_state(self, output_dir: str) -> None:
            Path(output_dir, "rng_state.pth").write_bytes(b"r")
            self._die("rng_state")

        def store_flos(self) -> None:
            pass

    cls = make_trainer_class(Stubbed)
    t = object.__new__(cls)
    t.args = TrainingArguments(output_dir=str(out), save_total_limit=limit, save_strategy="steps",
                               save_steps=4, use_cpu=True, report_to="none")
    t.control = transformers.TrainerControl()
    t.state = TrainerState(stateful_callbacks=[t.control])
    t.hp_search_backend = None

    class Handler:  # the part of transformers' CallbackHandler the save path uses
        def __init__(self) -> None:
            self.callbacks: list[Any] = []

        def add_callback(self, callback: Any) -> None:
            self.callbacks.append(callback)

    class Acc:
        def wait_for_everyone(self) -> None:
            pass

    t.callback_handler = Handler()
    t.accelerator = Acc()
    t._tunedeck_setup(RunFlags(), Faults())
    return t


@pytest.fixture
def patched_state_and_rotation(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Make TrainerState.save_to_json and rotate_checkpoints able to 'die' right after they run."""
    import transformers.trainer as tr
    from transformers import TrainerState

    where: dict[str, str | None] = {"die_after": None}
    real_save = TrainerState.save_to_json
    real_rotate = tr.rotate_checkpoints

    def save_to_json(self: Any, path: str) -> None:
        real_save(self, path)
        if where["die_after"] == "trainer_state":
            raise Killed("trainer_state")

    def rotate(*args: Any, **kwargs: Any) -> None:
        out = Path(kwargs.get("output_dir") or args[0])
        before = sorted(os.listdir(out))
        real_rotate(*args, **kwargs)
        # Die right after a rotation that deleted something (the dangerous moment).
        if where["die_after"] == "rotate" and sorted(os.listdir(out)) != before:
            raise Killed("rotate")

    monkeypatch.setattr(TrainerState, "save_to_json", save_to_json)
    monkeypatch.setattr(tr, "rotate_checkpoints", rotate)
    return where


@pytest.mark.parametrize("limit", [None, 1, 2])
def test_a_death_at_any_step_of_a_save_leaves_a_complete_checkpoint_to_resume(
        limit: int | None, tmp_path: Path, patched_state_and_rotation, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Death after each step of a checkpoint save (in-process, save_total_limit)")
    for die_after in STEPS:
        with sc.trial() as t:
            out = tmp_path / f"limit{limit}-{die_after}"
            out.mkdir()
            patched_state_and_rotation["die_after"] = None
            for step in (4,):  # a first complete checkpoint
                tr = _trainer(out, None, limit)
                tr.state.global_step = step
                tr._save_checkpoint(None, None)
            patched_state_and_rotation["die_after"] = die_after
            tr = _trainer(out, die_after, limit)
            tr.state.global_step = 8
            if die_after == "rotate" and limit != 1:
                tr._save_checkpoint(None, None)  # nothing to rotate away: no dangerous moment
            else:
                with pytest.raises(Killed):
                    tr._save_checkpoint(None, None)
            try:
                ck = pick_checkpoint(out, "latest")
            except TunedeckError as exc:
                t.lost(f"no complete checkpoint after a death at {die_after}")
                raise AssertionError(f"save_total_limit={limit}, died after {die_after}: {exc}; "
                                     f"left: {sorted(p.name for p in out.iterdir())}") from None
            assert ck.name in ("checkpoint-4", "checkpoint-8"), ck
    sc.note("5 save steps x save_total_limit None/1/2, transformers' own _save_checkpoint")


def test_two_runs_storing_the_same_tokenized_cache_entry_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   scenario) -> None:  # type: ignore[no-untyped-def]
    """Two runs launched together on one dataset tokenize it both and store the same cache key;
    the second one's rename lands on the first one's entry. (Seen in the fleet: the run died
    with ENOTEMPTY before its first step.) Made deterministic: the second store checked for the
    entry just before the first one renamed it into place."""
    from datasets import Dataset

    from tunedeck.runner.data import loader

    sc = scenario("Runs started together on one dataset (shared tokenized cache)")
    entry = tmp_path / "tokenized" / "key"
    splits = {"train": Dataset.from_dict({"input_ids": [[1, 2, 3]], "labels": [[1, 2, 3]]})}
    with sc.trial():
        loader._store(entry, splits, {}, {"k": 1})  # the first run's store
        real_exists = Path.exists

        def late_check(self: Path, *a: Any, **k: Any) -> bool:
            return False if self == entry else real_exists(self, *a, **k)

        monkeypatch.setattr(Path, "exists", late_check)
        got = loader._store(entry, splits, {}, {"k": 1})  # the second run's, a moment later
        monkeypatch.undo()
        assert got == entry and (entry / "meta.json").is_file()
        assert [p.name for p in entry.parent.iterdir()] == ["key"], "a temp entry was left behind"
    with sc.trial():
        # A third run stores the same key while others read the entry: their files stay put.
        arrow = next((entry / "data").rglob("*.arrow"))
        ino = arrow.stat().st_ino
        loader._store(entry, splits, {}, {"k": 1})
        assert arrow.exists() and arrow.stat().st_ino == ino, "a reader's files were replaced under it"
        assert [p.name for p in entry.parent.iterdir()] == ["key"]
