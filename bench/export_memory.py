"""Peak memory of ``tunedeck export`` (merge LoRA into the base, write shards) against the
model's size, side by side with transformers' own path (load, ``PeftModel``,
``merge_and_unload``, ``save_pretrained``).

    python bench/export_memory.py                      # ~1 GB fp32 model
    python bench/export_memory.py --hidden 1024 --layers 8 --rounds 2

A LLaMA-shaped model (``build_tiny_model`` with a larger hidden size, float32) and a rank-16
LoRA adapter on every linear layer (random B, so the merge changes every weight) are built
once in a cache folder. Each measurement runs in its own process; its peak resident set
(``ru_maxrss`` of the waited child) is reported. A baseline process imports the same stack
and loads the tokenizer but no weights; ``(peak - baseline) / model bytes`` is the ratio
that the target (< 1.5x one copy) is about. The raw peak is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BASELINE = """
import sys
import torch, transformers, peft, safetensors, huggingface_hub  # noqa: F401 - the same stack
from tunedeck.runner.infer import resolve
from tunedeck.runner.infer.engine import prepare_tokenizer
import tunedeck.runner.infer.export  # noqa: F401
prepare_tokenizer(resolve(sys.argv[1]))
"""

PEER = """
import sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base, adapter, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
model.save_pretrained(out, max_shard_size="200MB")
"""


def _peak_kib(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv`` in a fresh wrapper process; the peak RSS (KiB) of its one child."""
    wrapper = ("import resource, subprocess, sys\n"
               "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{out.stderr[-3000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def build(cache: Path, hidden: int, layers: int) -> tuple[Path, Path, Path, int]:
    import torch

    from tunedeck.runner.train.tiny import build_tiny_model

    model = cache / f"llama-h{hidden}-l{layers}"
    if not (model / "model.safetensors").is_file():
        build_tiny_model(model, seed=0, hidden=hidden, layers=layers, heads=16, kv_heads=8, vocab_size=512)
    adapter = cache / f"lora-h{hidden}-l{layers}"
    if not (adapter / "adapter_model.safetensors").is_file():
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        peft_model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        peft_model.save_pretrained(adapter)
        del peft_model, base
    cfg = cache / f"export-h{hidden}-l{layers}.yaml"
    cfg.write_text(f"model_name_or_path: {model}\nadapter_name_or_path: {adapter}\nfinetuning_type: lora\n"
                   "template: default\nstage: sft\n", encoding="utf-8")
    size = (model / "model.safetensors").stat().st_size
    return model, adapter, cfg, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--export-size", type=float, default=0.2, help="GB per shard (export_size)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tunedeck-bench" / "export")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("TUNEDECK_FAULT", None)
    model, adapter, cfg, size = build(args.cache, args.hidden, args.layers)
    rows = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
            base_kib = _peak_kib([sys.executable, "-c", BASELINE, str(cfg)], env)
            ours_kib = _peak_kib([sys.executable, "-m", "tunedeck.runner.cli", "export", str(cfg),
                                  f"export_dir={tmp}/ours", f"export_size={args.export_size}"], env)
            peer_kib = _peak_kib([sys.executable, "-c", PEER, str(model), str(adapter), f"{tmp}/peer"], env)
        row = {"round": r + 1, "baseline_mib": base_kib / 1024, "tunedeck_peak_mib": ours_kib / 1024,
               "peer_peak_mib": peer_kib / 1024,
               "tunedeck_ratio": (ours_kib * 1024 - base_kib * 1024) / size,
               "peer_ratio": (peer_kib * 1024 - base_kib * 1024) / size}
        rows.append(row)
        if not args.json:
            print(f"round {r + 1}: baseline {row['baseline_mib']:.0f} MiB | tunedeck export peak "
                  f"{row['tunedeck_peak_mib']:.0f} MiB -> {row['tunedeck_ratio']:.2f}x the model | "
                  f"transformers+peft peak {row['peer_peak_mib']:.0f} MiB -> {row['peer_ratio']:.2f}x", flush=True)
    med = sorted(r["tunedeck_ratio"] for r in rows)[len(rows) // 2]
    peer_med = sorted(r["peer_ratio"] for r in rows)[len(rows) // 2]
    summary = {"model_bytes": size, "model_mib": size / 2**20, "hidden": args.hidden, "layers": args.layers,
               "export_size_gb": args.export_size, "rounds": rows, "tunedeck_ratio_median": med,
               "peer_ratio_median": peer_med, "target": "< 1.5x one copy"}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"model {size / 2**20:.0f} MiB (float32); export peak above the baseline, median of {len(rows)}: "
              f"tunedeck {med:.2f}x, transformers+peft {peer_med:.2f}x (target < 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
