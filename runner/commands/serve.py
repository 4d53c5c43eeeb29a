"""``tunedeck serve TARGET``: an OpenAI-compatible server for a run's checkpoints, as a
supervised job (listed by ``runs``, stopped by ``stop``, logged to ``stdout.log``)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tunedeck.runner.commands import add_job_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tunedeck.runner.infer.serve import DEFAULT_PORT

    parser.description = (
        "Serve a run (its newest complete checkpoint, or the ones chosen with --checkpoint), a "
        "config, or an exported model over an OpenAI-compatible HTTP API: /v1/models, "
        "/v1/chat/completions (streaming or not), /v1/completions, /health. Several checkpoints "
        "of one LoRA run are served at once as named models (RUN@checkpoint-N). The server is a "
        "supervised job: it survives the terminal and SSH, shows in `tunedeck runs`, and "
        "`tunedeck stop` ends it. infer_backend=vllm launches `vllm serve` with each checkpoint "
        "as a LoRA module (needs vLLM and CUDA)."
    )
    parser.epilog = "exit codes: 0 serving; 2 bad target/options; 3 run not found; 4 a server already " \
                    "runs in that directory; 5 the server could not start"
    add_job_target(parser, "inference keys, e.g. temperature=0.3 infer_backend=vllm template=qwen")
    parser.add_argument("--checkpoint", action="append", metavar="N|latest|base|PATH",
                        help="what to serve; repeat to serve several (default: latest)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--api-key", metavar="KEY",
                        help="require Authorization: Bearer KEY (needed to bind beyond loopback); "
                             "also read from TUNEDECK_SERVE_API_KEY")
    parser.add_argument("--dir", metavar="DIR", help="the server's run directory (default RUN/serve)")
    parser.add_argument("--name", help="the server's run name (default RUN-serve)")
    parser.add_argument("--timeout", type=float, default=600, metavar="S",
                        help="seconds to wait for the model to load (default 600)")
    parser.add_argument("--no-wait", action="store_true", help="start it and return at once")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    import os

    from tunedeck.runner.config.yamlio import parse_overrides
    from tunedeck.runner.infer import serve

    api_key = args.api_key or os.environ.get(serve.API_KEY_ENV) or None
    started = time.time()
    job, plan = serve.start(args.target, args.checkpoint or [None], parse_overrides(args.overrides),
                            host=args.host, port=args.port, api_key=api_key, job_dir=args.dir,
                            name=args.name)
    info = None if args.no_wait else serve.wait_ready(job.run_dir, started, args.timeout)
    if args.json:
        print(json.dumps({"run_id": job.run_id, "name": job.name, "run_dir": str(job.run_dir),
                          "backend": plan.backend, "models": plan.model_ids,
                          "url": (info or {}).get("url"), "api_key_required": bool(api_key)}))
        return 0
    print(f"started server {job.run_id} ({job.name}) in {job.run_dir}", file=sys.stderr)
    if info is not None:
        print(f"serving {', '.join(plan.model_ids)} at {info['url']}")
        key = " -H 'Authorization: Bearer $KEY'" if api_key else ""
        print(f"  try: curl{key} {info['url']}/models")
    print(f"  stop: tunedeck stop {job.run_id}    logs: tunedeck logs {job.run_id} -f", file=sys.stderr)
    return 0
