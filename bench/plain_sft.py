"""The baseline for bench/train_throughput.py: LoRA SFT with plain transformers + peft.

As plain as a script can be: load the model, wrap it with peft's all-linear LoRA,
read the already tokenized dataset, pad with transformers' own collator, train with
``Trainer``. The only addition is a callback that keeps (time, step, tokens) of each
log in memory and writes them as JSON at the end, so both sides are timed the same way.

    python bench/plain_sft.py --model DIR --data TOKENIZED_DIR --out DIR --record FILE \
        --steps 60 --batch 8 --lr 3e-3 --seed 42 --optim adamw_torch_fused
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="a DatasetDict saved with save_to_disk (split 'train')")
    p.add_argument("--out", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--optim", default="adamw_torch_fused")
    a = p.parse_args()

    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    set_seed(a.seed)
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model)
    model = get_peft_model(
        model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")
    )
    train = load_from_disk(a.data)["train"].select_columns(["input_ids", "attention_mask", "labels"])
    collator = DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, label_pad_token_id=-100)

    records: list[dict] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            records.append({"t": time.time(), "step": state.global_step, "tokens": state.num_input_tokens_seen})

    args = TrainingArguments(
        output_dir=a.out,
        per_device_train_batch_size=a.batch,
        max_steps=a.steps,
        learning_rate=a.lr,
        optim=a.optim,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=a.seed,
        use_cpu=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=train, data_collator=collator, processing_class=tokenizer,
            callbacks=[Record()]).train()
    with open(a.record, "w", encoding="utf-8") as fh:
        json.dump(records, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
