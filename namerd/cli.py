"""``namerd`` command line.

    namerd CONFIG.yaml            run namerd (Linkerd's `namerd config.yaml`); `-` = stdin
    namerd run CONFIG.yaml        the same
    namerd --check CONFIG.yaml    validate the config (every error with its key path and line) and exit
    namerd dtab list|get|create|update|delete|apply ...   talk to a running namerd

Exit codes: 0 ok, 1 runtime failure (port in use, storage unreachable, refused
write), 2 bad input (config or dtab errors, usage).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, Sequence

if TYPE_CHECKING:
    from namerouter.config.validate import Validated

    from .config import NamerdConfig

USAGE = """usage: namerd CONFIG.yaml            run namerd with this config (- reads stdin)
       namerd run CONFIG.yaml
       namerd --check CONFIG.yaml     validate the config and exit (0 valid, 2 invalid)
       namerd dtab {list,get,create,update,delete,apply} ... [--namerd URL]
                                      manage dtabs through a running namerd (see `namerd dtab -h`)
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    if args[0] == "dtab":
        from .cli_dtab import main as dtab_main

        return dtab_main(args[1:])
    if args[0] == "run":
        args = args[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 1:
        sys.stderr.write(USAGE)
        return 2
    return run(args[0], check=check)


def _load(source: str) -> Optional[Validated[NamerdConfig]]:
    """The validated config, or None after printing every problem (exit status 2)."""
    from namerouter.config.loader import ConfigError

    from .config import load_namerd

    try:
        validated = load_namerd(source)
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return None
    except OSError as e:
        sys.stderr.write(f"namerd: cannot read config {source}: {e.strerror or e}\n")
        return None
    for w in validated.warnings:
        sys.stderr.write(f"warning: {w}\n")
    return validated


def run(source: str, check: bool = False) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    validated = _load(source)
    if validated is None:
        return 2
    if check:
        sys.stdout.write(f"{source if source != '-' else '<stdin>'}: config is valid\n")
        return 0
    runner: Callable[[Coroutine[Any, Any, int]], int]
    try:
        import uvloop  # the control plane is aiohttp; uvloop just makes it cheaper

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        return runner(_serve(validated))
    except KeyboardInterrupt:
        return 0


async def _serve(validated: Validated[NamerdConfig]) -> int:
    from namerouter.tls import TlsConfigError

    from .server import Namerd
    from .storage.base import DtabStoreError

    try:
        namerd = Namerd.from_config(validated)
    except (ValueError, DtabStoreError) as e:
        sys.stderr.write(f"namerd: {e}\n")
        return 2
    try:
        await namerd.start()
    except OSError as e:
        sys.stderr.write(f"namerd: cannot listen: {e.strerror or e}\n")
        return 1
    except DtabStoreError as e:
        sys.stderr.write(f"namerd: storage: {e}\n")
        return 1
    except TlsConfigError as e:  # a certificate or key changed since the config was checked
        sys.stderr.write(f"namerd: {e}\n")
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(namerd._shutdown()))
        except (NotImplementedError, RuntimeError):
            pass
    admin_scheme = "https" if namerd.admin_tls is not None else "http"
    sys.stderr.write(f"namerd ready: api {namerd.url}, admin {admin_scheme}://"
                     f"{namerd.admin_addr[0] if namerd.admin_addr else '-'}:{namerd.admin_port}\n")
    try:
        await namerd.wait_closed()
    finally:
        await namerd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
