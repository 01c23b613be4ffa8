"""``namerouter announce``: register an instance in a ZooKeeper serverset.

    namerouter announce --zk 127.0.0.1:2181 --path /discovery/pong \\
        --host 127.0.0.1 --port 8002 [--endpoint http=127.0.0.1:8003] [--shard N] [-- CMD ...]

Without CMD the instance stays registered until SIGTERM/SIGINT. With CMD, the command is
started first, the instance is registered once ``--host:--port`` accepts connections
(so no router sends it traffic before it listens; ``--no-wait`` registers at once), and
it is deregistered when CMD exits; the exit status is CMD's. SIGTERM/SIGINT deregister
first (routers stop sending new requests), wait ``--drain-ms`` for in-flight requests,
and are then forwarded to CMD.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any, Optional, Sequence

from .announce import Announcer, member_json
from .zk.session import DEFAULT_SESSION_TIMEOUT_MS, normalize_hosts

log = logging.getLogger("namerouter.announce")

PROG = "namerouter announce"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Register an instance in a ZooKeeper serverset while it runs.",
        epilog="Everything after -- is the command to run; its exit status is returned.",
    )
    p.add_argument("--zk", required=True, action="append", metavar="HOST:PORT",
                   help="ZooKeeper server (repeat or comma-separate for an ensemble)")
    p.add_argument("--path", required=True, metavar="ZNODE", help="serverset path, e.g. /discovery/pong")
    p.add_argument("--host", required=True, help="address clients should connect to")
    p.add_argument("--port", required=True, type=int, help="port of the service endpoint")
    p.add_argument("--endpoint", action="append", default=[], metavar="NAME=HOST:PORT",
                   help="an additional named endpoint (repeatable)")
    p.add_argument("--shard", type=int, default=None, help="shard number (non-negative)")
    p.add_argument("--session-timeout-ms", type=int, default=DEFAULT_SESSION_TIMEOUT_MS,
                   help="ZooKeeper session timeout (default %(default)s)")
    p.add_argument("--no-wait", action="store_true",
                   help="with CMD: register at once instead of waiting for HOST:PORT to accept connections")
    p.add_argument("--ready-timeout", type=float, default=60.0,
                   help="with CMD: seconds to wait for HOST:PORT before registering anyway (default %(default)s)")
    p.add_argument("--drain-ms", type=int, default=250,
                   help="with CMD: on SIGTERM/SIGINT, wait this long between deregistering and "
                        "signalling CMD, so routers stop sending before it stops (default %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="only log warnings")
    return p


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    cmd: list[str] = []
    had_sep = "--" in argv
    if had_sep:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1:]
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.zk = normalize_hosts(",".join(args.zk))
        endpoints = {}
        for item in args.endpoint:
            name, sep, hp = item.partition("=")
            if not sep or not name:
                raise ValueError(f"--endpoint {item!r}: expected NAME=HOST:PORT")
            endpoints[name] = hp
        args.endpoints = endpoints
        member_json(args.host, args.port, endpoints, args.shard)  # validates everything
        if args.drain_ms < 0:
            raise ValueError("--drain-ms must be >= 0")
        if not args.path.startswith("/"):
            raise ValueError(f"--path {args.path!r}: must start with /")
    except ValueError as e:
        parser.error(str(e))
    if had_sep and not cmd:
        parser.error("nothing after --: give the command to run")
    return args, cmd


async def _wait_listening(host: str, port: int, timeout: float, proc: Optional[asyncio.subprocess.Process],
                          stop: asyncio.Event) -> bool:
    """True once host:port accepts a TCP connection; False if CMD exited or we were stopped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if stop.is_set() or (proc is not None and proc.returncode is not None):
            return False
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            w.close()
            return True
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
    log.warning("%s:%d is not accepting connections after %.0fs; registering anyway", host, port, timeout)
    return True


def _exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


async def _run(args: argparse.Namespace, cmd: list[str]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    proc: Optional[asyncio.subprocess.Process] = None
    if cmd:
        try:
            # Own process group: a terminal's Ctrl-C reaches only us, and we forward it
            # after deregistering (otherwise CMD would see it twice, or before we drain).
            proc = await asyncio.create_subprocess_exec(*cmd, process_group=0)
        except OSError as e:
            log.error("cannot run %s: %s", cmd[0], e)
            return 127 if isinstance(e, FileNotFoundError) else 126

    ann = Announcer(args.zk, args.path, args.host, args.port, args.endpoints, args.shard,
                    session_timeout_ms=args.session_timeout_ms)
    try:
        ready = True
        if proc is not None and not args.no_wait:
            ready = await _wait_listening(args.host, args.port, args.ready_timeout, proc, stop)
        if ready:
            await ann.start()
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if proc is not None:
            waiters.append(asyncio.ensure_future(proc.wait()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    finally:
        # Deregister first: routers stop picking this instance before it goes away.
        await ann.close()

    if proc is None:
        return 0
    if proc.returncode is None:
        if received and args.drain_ms > 0:
            # Routers see the removal within milliseconds; let in-flight requests finish.
            try:
                await asyncio.wait_for(proc.wait(), args.drain_ms / 1000.0)
            except asyncio.TimeoutError:
                pass
    if proc.returncode is None:
        for signum in received or [int(signal.SIGTERM)]:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
        await proc.wait()
    assert proc.returncode is not None
    return _exit_status(proc.returncode)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, cmd = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"{PROG} [{os.getpid()}] %(levelname)s %(message)s",
    )
    logging.getLogger("namerouter.zk.kazoo").setLevel(logging.WARNING)
    try:
        return asyncio.run(_run(args, cmd))
    except KeyboardInterrupt:  # pragma: no cover - signal handlers normally catch it
        return 130


if __name__ == "__main__":
    sys.exit(main())
