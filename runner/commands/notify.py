"""``tunedeck notify [--test]``: the alert destinations, and a test message through them."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test", action="store_true", help="send a test message to every destination")
    parser.add_argument("--url", action="append", metavar="URL",
                        help="an apprise URL to use instead of $TUNEDECK_NOTIFY / settings.json")


def _safe(url: str) -> str:
    # Tokens live in URLs (hooks.slack.com/services/T../B../secret): show the scheme and host only.
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}{sep}{host}/..." if sep else "(unparsable URL)"


def run(args: argparse.Namespace) -> int:
    import socket

    from tunedeck.runner.control.alerts import (
        NOTIFY_ENV,
        Alert,
        deliver,
        notify_urls,
        settings_path,
    )
    from tunedeck.runner.errors import ConfigError

    urls = list(args.url or notify_urls())
    if not urls:
        raise ConfigError("no alert destinations",
                          hint=f"set {NOTIFY_ENV}='json://host/path ntfy://topic ...' or a \"notify\" "
                          f"list in {settings_path()} (any apprise URL)")
    for u in urls:
        print(_safe(u))
    if not args.test:
        return 0
    alert = Alert(run_id="test", run_name="test message", status="test", host=socket.gethostname(),
                  detail="tunedeck notify --test: alerts reach you", next_command="tunedeck runs")
    try:
        ok = deliver(urls, alert)
    except Exception as exc:
        print(f"tunedeck: notify: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("sent" if ok else "not delivered to every destination", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1
