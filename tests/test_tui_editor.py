"""Config editor flows, driven through Pilot like a user: open, edit, see errors, save."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui_helpers import editor_app, screen_text, wait_for, write_editor_config
from tunedeck.tui.screens.editor import EditorScreen

pytestmark = pytest.mark.fake_gpus("gpu2")

CONFIG = """\
# My 7B LoRA run: keep these comments!
model_name_or_path: Qwen/Qwen2.5-7B-Instruct   # the base model
stage: sft
do_train: true
finetuning_type: lora
template: qwen

# data
dataset: alpaca_en_demo
cutoff_len: 1024

# schedule
learning_rate: 5.0e-5   # the guide's LoRA value
num_train_epochs: 3
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
hf_hub_token: hf_TOPSECRETvalue123
output_dir: {out}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_editor_config(tmp_path, CONFIG)


async def _type_into(pilot, editor: EditorScreen, key: str, text: str) -> None:  # type: ignore[no-untyped-def]
    await editor.jump_to(key)
    await wait_for(pilot, lambda: editor.fields[key].control.has_focus, what=f"focus on {key}")
    await pilot.press("end", "ctrl+u", *text)


async def test_invalid_value_is_marked_then_fixed_and_saved_with_comments_kept(
    tmp_path: Path, config_file: Path
) -> None:
    original = config_file.read_text()
    async with editor_app(tmp_path, config_file, size=(160, 48)) as (pilot, app, editor):
        assert "learning_rate" not in editor.field_errors

        await _type_into(pilot, editor, "learning_rate", "-1")
        field = editor.fields["learning_rate"]
        assert field.error is not None and "learning_rate" in field.error
        shown = screen_text(app)
        assert "✖ " + field.error in shown or field.error[:40] in shown  # beside the field
        # The findings panel lists it too, and the group bar counts it.
        assert any(
            key == "learning_rate" and sev == "error"
            for sev, key, _ in editor.query_one("#findings").findings
        )  # type: ignore[attr-defined]
        # Saving is refused while a field is invalid; the file is untouched.
        await pilot.press("ctrl+s")
        assert "invalid" in str(editor.query_one("#editor-status").render()).lower()
        assert config_file.read_text() == original

        await _type_into(pilot, editor, "learning_rate", "2e-4")
        assert field.error is None and editor.doc.get("learning_rate") == pytest.approx(2e-4)
        await _type_into(pilot, editor, "cutoff_len", "2048")
        await wait_for(
            pilot,
            lambda: editor.analysis is not None and editor.analysis.generation == editor.generation,
            what="re-analysis",
        )
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not editor.dirty, what="save")

    saved = config_file.read_text()
    for line in original.splitlines():
        if line.lstrip().startswith("#"):
            assert line in saved, f"comment lost: {line!r}"
    assert "# the base model" in saved and "# the guide's LoRA value" in saved
    assert "cutoff_len: 2048" in saved
    assert (
        "learning_rate: 0.0002" in saved
        or "learning_rate: 2e-4" in saved
        or "learning_rate: 2.0e-4" in saved
    )
    # key order kept: learning_rate still after cutoff_len and before num_train_epochs
    keys = [
        ln.split(":")[0] for ln in saved.splitlines() if ln and not ln.startswith("#") and ":" in ln
    ]
    assert keys.index("cutoff_len") < keys.index("learning_rate") < keys.index("num_train_epochs")
    assert (tmp_path / "train.yaml.bak").read_text() == original


async def test_save_is_refused_when_the_file_changed_on_disk(
    tmp_path: Path, config_file: Path
) -> None:
    async with editor_app(tmp_path, config_file, size=(120, 40)) as (pilot, app, editor):
        await _type_into(pilot, editor, "cutoff_len", "512")
        config_file.write_text(config_file.read_text() + "# edited by a colleague\n")
        changed = config_file.read_text()
        await pilot.press("ctrl+s")
        await wait_for(
            pilot,
            lambda: "changed on disk" in str(editor.query_one("#editor-status").render()),
            what="stale-file refusal",
        )
        assert editor.dirty
        assert "changed on disk" in screen_text(app)
    assert config_file.read_text() == changed


async def test_secrets_never_reach_the_screen(tmp_path: Path, config_file: Path) -> None:
    async with editor_app(tmp_path, config_file, size=(160, 48)) as (pilot, app, editor):
        await editor.jump_to("hf_hub_token")
        await pilot.pause()
        assert "TOPSECRET" not in screen_text(app)
        await _type_into(pilot, editor, "cutoff_len", "256")  # so the diff has content
        await wait_for(
            pilot,
            lambda: editor.analysis is not None and editor.analysis.generation == editor.generation,
        )
        for _mode in range(3):  # estimate -> yaml -> diff
            await pilot.press("ctrl+y")
            await pilot.pause()
            assert "TOPSECRET" not in screen_text(app)
        assert editor.side_mode == "estimate"
        assert "TOPSECRET" not in (editor.analysis.yaml_text if editor.analysis else "")


async def test_findings_jump_to_their_field_and_estimate_follows_presets(
    tmp_path: Path, config_file: Path
) -> None:
    async with editor_app(tmp_path, config_file, size=(160, 48)) as (pilot, app, editor):
        await _type_into(pilot, editor, "lora_rank", "0")
        await editor.jump_to("learning_rate")  # move away, then come back through the findings
        findings = editor.query_one("#findings")
        keys = [k for _s, k, _t in findings.findings]  # type: ignore[attr-defined]
        assert "lora_rank" in keys, keys
        await pilot.press("ctrl+l")
        assert findings.has_focus
        for _ in range(keys.index("lora_rank")):
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: editor.fields["lora_rank"].control.has_focus, what="jump to lora_rank"
        )

        # Memory: cycle to the 80GB preset; the panel names it and says whether it fits.
        labels = [label for label, _n, _g in editor.memory_sources]
        target = next(i for i, lb in enumerate(labels) if "80" in lb)
        while editor.memory_index != target:
            await pilot.press("ctrl+g")
        await wait_for(
            pilot,
            lambda: (
                editor.analysis is not None
                and editor.analysis.generation == editor.generation
                and editor.analysis.memory_label == labels[target]
            ),
            what="estimate for preset",
        )
        text = screen_text(app)
        assert labels[target][:20] in text
        assert ("fits" in text) or ("does not fit" in text)
