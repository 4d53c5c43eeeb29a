"""``tunedeck predict TARGET``: generate for every example of an eval set, row by row, and
score the predictions the way LLaMA-Factory does (BLEU-4, ROUGE-1/2/L)."""

from __future__ import annotations

import argparse
import json
import sys

from tunedeck.runner.commands import add_job_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Batch prediction as a supervised job: generates an answer for every example of "
        "eval_dataset (left-padded batches), appends each row to generated_predictions.jsonl as "
        "its batch finishes (a crash keeps what was done; running the same command again "
        "continues after the last row), then writes predict_results.json with LLaMA-Factory's "
        "bleu-4 and rouge-1/2/l (x100). Prompts are built by the run's training formatter."
    )
    parser.epilog = "exit codes: 0 finished; 1 the job failed or was killed (rerun to continue); " \
                    "2 bad target/options; 3 run not found; 4 a predict job already runs there"
    add_job_target(parser, "e.g. eval_dataset=my_eval max_samples=200 temperature=0.01 "
                           "per_device_eval_batch_size=16")
    parser.add_argument("--checkpoint", metavar="N|latest|base|PATH", help="default: latest")
    parser.add_argument("--dir", metavar="DIR",
                        help="where the predictions go (default RUN/predict-CHECKPOINT)")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="examples per generate call (default per_device_eval_batch_size)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over instead of continuing the rows already written")
    parser.add_argument("--no-wait", action="store_true", help="start the job and return at once")
    parser.add_argument("--json", action="store_true", help="print predict_results.json on stdout")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunedeck.runner.config.yamlio import parse_overrides
    from tunedeck.runner.control.follow import follow
    from tunedeck.runner.fsutil import read_json
    from tunedeck.runner.infer import predict as predict_job
    from tunedeck.runner.rundir.protocol import RunStatus

    job = predict_job.start(args.target, args.checkpoint, parse_overrides(args.overrides),
                            job_dir=args.dir, batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"started predict job {job.run_id} ({job.name}) in {job.run_dir}", file=sys.stderr)
    if args.no_wait:
        if args.json:
            print(json.dumps({"run_id": job.run_id, "run_dir": str(job.run_dir)}))
        return 0
    status = follow(job.run_dir, out=sys.stderr, err=sys.stderr)
    results = read_json(Path(job.run_dir) / predict_job.RESULTS)
    if status is not RunStatus.FINISHED or not isinstance(results, dict):
        print(f"predict ended {status.value}; rerun the same command to continue after the last "
              f"row written (tunedeck logs {job.run_id})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results))
    else:
        for k in ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l"):
            print(f"{k:<18} {results[k]:8.4f}")
        print(f"{'rows':<18} {results['predict_samples']:>8}")
        print(f"predictions: {Path(job.run_dir) / predict_job.PREDICTIONS}")
    return 0
