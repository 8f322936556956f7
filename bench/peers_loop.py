"""The command line and the stop signal shared by the peer bench's plain-loop contenders.

``peers_run`` starts every contender with the same options; the naive loop and the ceiling
run their loop in this process until SIGTERM (or Ctrl-C), then flush and exit.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Sequence

__all__ = ["run_loop"]


def run_loop(
    doc: str,
    run: Callable[[argparse.Namespace, threading.Event], int],
    variants: Sequence[str],
    needs_redis: bool,
) -> None:
    """Parse the contender's options and call ``run`` until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--redis-url", required=needs_redis, default="")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)  # unused: neither keeps state on disk
    parser.add_argument("--variant", choices=variants, default=variants[0])
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(args, stop)
