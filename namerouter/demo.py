"""``make demo``: a router, an fs namer over a temporary disco directory and two small
backend services, started in one command; prints the curl commands to try and runs
them once to show the answers.

Runs until Ctrl-C. With ``--once``, ``DEMO_ONCE=1`` or when stdin is not a terminal
(CI, the test suite) it exits after showing the answers.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path as FsPath
from typing import Optional, Sequence

from aiohttp import web

LABEL = "demo"


def _port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for p in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            port: int = s.getsockname()[1]
            return port
    raise RuntimeError("no free port")


async def _backend(name: str) -> tuple[web.AppRunner, int]:
    """A tiny HTTP service that says who it is and what the router told it."""

    async def handle(request: web.Request) -> web.Response:
        routed = {h: request.headers[h] for h in ("l5d-dst-service", "l5d-dst-client") if h in request.headers}
        via = f" (routed as {routed['l5d-dst-service']} -> {routed['l5d-dst-client']})" if len(routed) == 2 else ""
        return web.Response(text=f"Hello from {name} on port {port}, you asked for {request.path_qs}{via}\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _port(0)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _config(disco: FsPath, router_port: int, admin_port: int) -> str:
    return f"""\
admin:
  ip: 127.0.0.1
  port: {admin_port}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
- protocol: http
  label: {LABEL}
  dtab: |
    /svc => /#/io.l5d.fs;
  servers:
  - port: {router_port}
    ip: 127.0.0.1
"""


def _commands(router_port: int, admin_port: int) -> list[tuple[str, list[str], dict[str, str]]]:
    r, a = f"http://127.0.0.1:{router_port}", f"http://127.0.0.1:{admin_port}"
    proxy = {"http_proxy": r}
    return [
        ("route by Host header", ["curl", "-s", "-H", "Host: web", f"{r}/index.html"], {}),
        ("route as an HTTP proxy", ["curl", "-s", "http://api/users/42"], proxy),
        ("override the dtab for one request",
         ["curl", "-s", "-H", "Host: web", "-H", "l5d-dtab: /svc/web => /svc/api", f"{r}/"], {}),
        ("unknown service (502 with the reason)", ["curl", "-s", "-i", "-H", "Host: nope", f"{r}/"], {}),
        ("how /svc/web is resolved", ["curl", "-s", f"{a}/delegator.json?namespace={LABEL}&path=/svc/web&pretty=1"], {}),
        ("metrics", ["curl", "-s", f"{a}/admin/metrics.json?q=rt/{LABEL}/service/svc/web&pretty=1"], {}),
    ]


def _shell(argv: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={v}" for k, v in env.items())
    return (prefix + " " if prefix else "") + " ".join(shlex.quote(a) for a in argv)


async def _run_command(argv: list[str], env: dict[str, str]) -> str:
    if shutil.which(argv[0]) is None:
        return f"({argv[0]} is not installed here)"
    proc = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env, "no_proxy": ""}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    return out.decode("utf-8", "replace").replace("\r\n", "\n").rstrip()


async def demo(once: bool) -> int:
    from .config.schema import loads_linker
    from .linker import Linker, StartupError

    disco = FsPath(tempfile.mkdtemp(prefix="namerouter-demo-"))
    runners = []
    linker: Optional[Linker] = None
    try:
        web_runner, web_port = await _backend("web")
        api_runner, api_port = await _backend("api")
        runners += [web_runner, api_runner]
        (disco / "web").write_text(f"# one address per line: host port [* weight]\n127.0.0.1 {web_port}\n")
        (disco / "api").write_text(f"127.0.0.1 {api_port}\n")
        # Linkerd's ports when free; if one is taken meanwhile, any free ones.
        for router_port, admin_port in ((_port(4140), _port(9990)), (_port(0), _port(0))):
            text = _config(disco, router_port, admin_port)
            linker = Linker(loads_linker(text, "demo.yaml"))
            try:
                await linker.start()
                break
            except StartupError as e:
                await linker.close(grace_s=0)
                error = e
        else:
            print(f"demo: {error}", file=sys.stderr)
            return 1
        print("namerouter demo: a router with an io.l5d.fs namer and two backends\n")
        print(f"config:\n{text}")
        print(f"disco dir {disco}:  web -> 127.0.0.1:{web_port}   api -> 127.0.0.1:{api_port}\n")
        for title, argv, env in _commands(router_port, admin_port):
            print(f"# {title}\n$ {_shell(argv, env)}")
            print(await _run_command(argv, env))
            print()
        print(f"Edit the files in {disco} and the routing follows within ~100 ms.")
        print(f"Admin: http://127.0.0.1:{admin_port}/admin/metrics.json   "
              f"Prometheus: http://127.0.0.1:{admin_port}/admin/metrics/prometheus")
        if once:
            return 0
        print("Running; press Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.wait([asyncio.ensure_future(stop.wait()), asyncio.ensure_future(linker.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        print("\nstopping", flush=True)
        return 0
    finally:
        if linker is not None:
            await linker.close(grace_s=1.0)
        for r in runners:
            await r.cleanup()
        shutil.rmtree(disco, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m namerouter.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--once", action="store_true", help="show the answers and exit")
    args = p.parse_args(argv)
    once = args.once or os.environ.get("DEMO_ONCE") == "1" or not sys.stdin.isatty()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    return asyncio.run(demo(once))


if __name__ == "__main__":
    sys.exit(main())
