"""``namerouter config.yaml`` / ``namerouter run config.yaml`` / ``namerouter -`` (stdin).

Exit status: 0 after a clean shutdown, 2 for a bad config (every problem listed on
stderr, no traceback), 1 when something valid could not start (a port in use, …).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Optional, Sequence

from .config import ConfigError

USAGE = "namerouter [run] [--workers N|auto] CONFIG   (CONFIG is a YAML or JSON file, or - for stdin)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="namerouter", usage=USAGE,
                                description="Run the routers a Linkerd-style config describes.")
    p.add_argument("config", help="config file (YAML or JSON), or - to read it from stdin")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="log level (default: info)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--workers", metavar="N|auto",
                   help="processes serving the routers, sharing their ports (default: the config's "
                        "'workers', else 1; auto = one per core)")
    return p


def _event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .config.schema import load_linker, worker_count

    try:
        validated = load_linker(args.config)
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    for w in validated.warnings:
        sys.stderr.write(f"warning: {w}\n")
    workers = validated.config.workers
    if args.workers is not None:
        workers = int(args.workers) if args.workers.isdigit() else args.workers
    try:
        count = worker_count(workers)
    except ValueError as e:
        sys.stderr.write(f"--workers: {e}\n")
        return 2
    if args.check:
        sys.stdout.write(f"{args.config if args.config != '-' else '<stdin>'}: config is valid\n")
        return 0
    _event_loop_policy()
    try:
        if count > 1:
            from .workers import supervise

            return asyncio.run(supervise(validated, count))
        from .linker import run

        return asyncio.run(run(validated))
    except KeyboardInterrupt:  # pragma: no cover - signal handlers normally catch it
        return 130
