"""Print LLaMA-Factory's *effective* defaults as JSON: run with the Python of a venv that
has ``llamafactory`` installed (``bench/vs_llamafactory.py --setup-only`` makes one).

    ~/.cache/tunedeck-bench/lfvenv/bin/python bench/lf_effective_defaults.py MODEL_DIR DATA_DIR \
        tests/fixtures/llamafactory_0.9.5_defaults.json

A minimal LoRA SFT config (model, dataset, template, output_dir) goes through
LLaMA-Factory's own ``get_train_args``, so the values are its dataclass defaults *and*
what its parser and transformers' ``TrainingArguments.__post_init__`` fill in after them
(``optim``, ``ddp_timeout``, ``remove_unused_columns`` ...). Gradient checkpointing is not a
TrainingArguments setting there: LLaMA-Factory enables it on the model itself, re-entrant
unless ``use_reentrant_gc`` is false, so ``gradient_checkpointing`` is reported as that.
Values that are not JSON (enums, dtypes) are written as strings.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import tempfile


def _plain(v):
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


def main() -> int:
    model, data, dest = sys.argv[1], sys.argv[2], sys.argv[3]  # LLaMA-Factory logs to stdout
    import llamafactory
    import transformers
    from llamafactory.hparams import get_train_args

    with tempfile.TemporaryDirectory() as out:
        args = {
            "model_name_or_path": model, "stage": "sft", "do_train": True, "finetuning_type": "lora",
            "dataset": "demo_alpaca", "dataset_dir": data, "template": "default", "output_dir": out,
        }
        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(args)
    values: dict[str, object] = {}
    for obj in (training_args, generating_args, finetuning_args, data_args, model_args):
        for f in dataclasses.fields(obj):
            if f.name in args or f.name.startswith("_"):
                continue
            values.setdefault(f.name, _plain(getattr(obj, f.name, None)))
    # Values derived from the paths given here name them by key, not by this machine's path.
    for k, v in list(values.items()):
        for key in ("dataset_dir", "model_name_or_path", "output_dir"):
            if isinstance(v, str) and v and v == {"dataset_dir": data, "model_name_or_path": model,
                                                  "output_dir": out}[key]:
                values[k] = f"<{key}>"
    # LLaMA-Factory turns checkpointing on on the model (not through TrainingArguments).
    values["gradient_checkpointing"] = not finetuning_args.disable_gradient_checkpointing if hasattr(
        finetuning_args, "disable_gradient_checkpointing") else not model_args.disable_gradient_checkpointing
    with open(dest, "w", encoding="utf-8") as fh:
        json.dump({"llamafactory": llamafactory.__version__, "transformers": transformers.__version__,
                   "values": dict(sorted(values.items()))}, fh, indent=1)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
