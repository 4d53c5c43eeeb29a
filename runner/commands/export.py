"""``tunedeck export RUN|CONFIG [--checkpoint N|latest|PATH] [export_dir=DIR] [key=value ...]``.

Merges the run's LoRA adapter into its base model (peft, layer by layer, about one copy of the
model in memory) and writes a folder any tool can load: safetensors shards of ``export_size`` GB
(``.bin`` with ``export_legacy_format``), config and generation config (the run's decoding
settings), the tokenizer with the run's chat template in ``tokenizer_config.json``, an Ollama
``Modelfile`` and ``tunedeck_export.json`` (what was merged from where).
"""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
LLaMA-Factory's export keys apply (in the config or as key=value): export_dir, export_size
(GB per shard), export_device (cpu|auto), export_legacy_format, export_quantization_bit with
export_quantization_dataset/_nsamples/_maxlen (GPTQ: CUDA + gptqmodel/optimum; refused while
adapters are attached: export the merged model first, then quantize that folder), and
export_hub_model_id (uploads after the export, into a repository created private if it is new;
needs HF_TOKEN and the network).
The folder appears only when complete (written beside it under a hidden temp name, then renamed).
exit codes: 0 exported, 1 failed, 2 invalid config, 3 run not found, 130 interrupted.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tunedeck.runner.commands.launch import add_overrides_argument

    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("target", metavar="RUN|CONFIG", help="run id, run name, output_dir, or a config file")
    parser.add_argument("--checkpoint", metavar="N|latest|PATH",
                        help="which checkpoint to merge (default: the run's final adapter, else its newest)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export_dir")
    parser.add_argument("--json", action="store_true", help="print the export record as JSON on stdout")
    add_overrides_argument(parser)


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.infer import resolve
    from tunedeck.runner.infer.export import export_model, plan_export

    spec = resolve(args.target, args.checkpoint, args.overrides or [])
    plan = plan_export(spec, overwrite=args.overwrite)

    def progress(msg: str) -> None:
        print(f"export: {msg}", file=sys.stderr, flush=True)

    progress(f"{spec.label}: {len(spec.adapters)} adapter(s) into {spec.values.get('model_name_or_path')} "
             f"-> {plan.export_dir}")
    result = export_model(spec, plan, progress)
    if args.json:
        print(json.dumps({**result.record, "export_dir": str(result.export_dir), "files": result.files,
                          "uploaded": result.uploaded}, indent=2))
    else:
        print(f"exported {spec.label} to {result.export_dir}: {result.shards} shard(s), "
              f"{result.total_bytes / 1e6:.1f} MB, {result.seconds:.1f} s")
        print(f"  transformers: AutoModelForCausalLM.from_pretrained({str(result.export_dir)!r})")
        print(f"  ollama:       cd {result.export_dir} && ollama create NAME -f Modelfile")
        if result.uploaded:
            print(f"  hub:          {result.uploaded}")
    return 0
