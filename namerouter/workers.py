"""``namerouter --workers N``: N processes serving the same routers, one master.

Python runs one core per process; a router that must use every core of its host runs
several. The master process starts N workers (``python -m namerouter.workers``), each a
complete router (namers, interpreters, routers) whose servers bind their ports with
``SO_REUSEPORT``, so the kernel spreads new connections over them. The master itself
serves no traffic; it

- serves the admin port: ``/admin/metrics.json`` and the Prometheus page sum the
  workers' metrics (counters and gauges add up, latency stats merge their buckets),
  ``/config.json`` is the one config, ``/admin/workers.json`` lists the workers, and every
  other admin page (delegator, client and namer state) is answered by a live worker;
- announces the servers (``announcers``) once, not once per worker;
- restarts a worker that dies (after a backoff that grows while it keeps dying);
- on SIGTERM / SIGINT / ``POST /admin/shutdown`` stops restarting, asks every worker to
  drain (``admin.shutdownGraceMs``) and exits when they have; a second signal kills them.

Workers talk to the master over their admin server on a Unix socket in a private
directory, and say "ready" on stdout once they serve.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Optional

from aiohttp import ClientSession, ClientTimeout, UnixConnector, web
from aiohttp.typedefs import Handler

from .admin.app import AdminServer, build_admin_app
from .backoff import decorrelated_jittered
from .config.schema import LinkerConfig
from .config.validate import Validated
from .linker import DUMP_PATH
from .metrics import MetricsRegistry

log = logging.getLogger("namerouter.workers")

#: A worker that does not say "ready" within this long is killed.
START_TIMEOUT_S = 60.0
#: A worker that ran this long before dying restarts at once (the backoff starts over).
STABLE_S = 10.0
#: Admin requests the master forwards to a worker give up after this long.
FORWARD_TIMEOUT_S = 10.0


class Worker:
    """One worker process, as the master sees it."""

    def __init__(self, index: int, socket_path: str) -> None:
        self.index = index
        self.socket = socket_path
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.ready = False
        self.started = 0.0
        self.restarts = 0
        self.backoff = decorrelated_jittered(0.2, 10.0)

    def state(self) -> dict[str, Any]:
        p = self.proc
        return {"index": self.index, "pid": p.pid if p is not None else None, "ready": self.ready,
                "restarts": self.restarts, "uptimeSecs": round(time.monotonic() - self.started, 1) if p else 0}


class Master:
    def __init__(self, validated: Validated[LinkerConfig], count: int) -> None:
        self.validated = validated
        self.config = validated.config
        self.count = count
        self.dir = tempfile.mkdtemp(prefix="namerouter-workers-")
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(validated.raw, f)
        self.workers = [Worker(i, os.path.join(self.dir, f"worker-{i}.sock")) for i in range(count)]
        self.stopping = False
        self.stop = asyncio.Event()
        self.metrics = SummedMetrics()
        self.admin: Optional[AdminServer] = None
        self.announcements: list[Any] = []
        self.announcers: list[Any] = []

    # --- workers ---------------------------------------------------------------------------
    async def spawn(self, w: Worker) -> None:
        """Start worker ``w`` and wait until it serves; RuntimeError if it does not."""
        if os.path.exists(w.socket):
            os.unlink(w.socket)
        w.ready = False
        w.started = time.monotonic()
        w.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "namerouter.workers", self.config_path, str(w.index), w.socket,
            logging.getLevelName(logging.getLogger().level).lower(),
            stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        assert w.proc.stdout is not None
        try:
            line = await asyncio.wait_for(w.proc.stdout.readline(), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            line = b""
        if line.strip() != b"ready":
            if w.proc.returncode is None:
                w.proc.kill()
            status = await w.proc.wait()
            raise RuntimeError(f"worker {w.index} did not start (exit status {status})")
        w.ready = True

    async def keep(self, w: Worker) -> None:
        """Restart ``w`` whenever it dies, until the master stops."""
        while not self.stopping:
            assert w.proc is not None
            status = await w.proc.wait()
            w.ready = False
            if self.stopping:
                return
            ran = time.monotonic() - w.started
            if ran >= STABLE_S:
                w.backoff = decorrelated_jittered(0.2, 10.0)
            delay = next(w.backoff) if ran < STABLE_S else 0.0
            log.warning("worker %d (pid %s) exited with status %s after %.1f s; restarting in %.1f s",
                        w.index, w.proc.pid, status, ran, delay)
            try:
                await asyncio.wait_for(self.stop.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
            w.restarts += 1
            try:
                await self.spawn(w)
            except RuntimeError as e:
                log.error("%s", e)

    async def terminate(self, grace_s: float) -> None:
        """Ask every worker to drain and wait for them (a bit longer than their grace)."""
        procs = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        if procs:
            done, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=grace_s + 5)
            for p in procs:
                if p.returncode is None:
                    p.kill()
            if pending:
                await asyncio.wait(pending, timeout=5)

    def kill_all(self) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                w.proc.kill()

    # --- the admin port ----------------------------------------------------------------------
    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.ready and w.proc is not None and w.proc.returncode is None]

    async def refresh(self) -> None:
        """Sum the live workers' metrics (done before each metrics page is served)."""
        dumps = await asyncio.gather(*(self._worker_json(w, DUMP_PATH) for w in self.live()),
                                     return_exceptions=True)
        self.metrics.current = MetricsRegistry.merge_dumps([d for d in dumps if isinstance(d, dict)])
        ids = await asyncio.gather(*(self._worker_json(w, "/client_state.json") for w in self.live()[:1]),
                                   return_exceptions=True)
        self.metrics.ids = [k for doc in ids if isinstance(doc, dict) for r in doc.values()
                            if isinstance(r, dict) for k in r]

    async def _worker_json(self, w: Worker, path: str) -> Any:
        async with ClientSession(connector=UnixConnector(path=w.socket),
                                 timeout=ClientTimeout(total=FORWARD_TIMEOUT_S)) as s:
            async with s.get(f"http://worker{path}") as r:
                return await r.json()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Any other admin page: answered by a live worker (they all serve the same config)."""
        live = self.live()
        if not live:
            return web.Response(status=503, text="no worker is running\n")
        w = live[0]
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        async with ClientSession(connector=UnixConnector(path=w.socket),
                                 timeout=ClientTimeout(total=FORWARD_TIMEOUT_S)) as s:
            async with s.request(request.method, f"http://worker{request.path_qs}", data=body or None,
                                 headers=headers) as r:
                data = await r.read()
                return web.Response(status=r.status, body=data, content_type=r.content_type,
                                    charset=r.charset)

    async def workers_json(self, _: web.Request) -> web.Response:
        """Each worker: pid, readiness, restarts, uptime and the requests its servers took."""
        states = [w.state() for w in self.workers]
        dumps = await asyncio.gather(*(self._worker_json(w, DUMP_PATH) for w in self.workers if w in self.live()),
                                     return_exceptions=True)
        live = [w.index for w in self.workers if w in self.live()]
        for index, dump in zip(live, dumps):
            if isinstance(dump, dict):
                states[index]["requests"] = sum(v[1] for k, v in dump.items()
                                                if v[0] == "c" and "/server/" in k and k.endswith("/requests"))
        return web.json_response({"workers": states})

    async def start_admin(self) -> None:
        cfg = self.config
        prom = cfg.prometheus()
        prom_path = prom.path if prom else "/admin/metrics/prometheus"
        metrics_paths = {"/admin/metrics.json", prom_path}

        @web.middleware
        async def summed(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in metrics_paths:
                await self.refresh()
            return await handler(request)

        async def on_shutdown() -> None:
            log.info("shutdown requested through the admin server")
            self.stop.set()

        app = build_admin_app(
            self.metrics, self.validated.raw, [("GET", "/admin/workers.json", self.workers_json),
                                               ("*", "/{tail:.*}", self.forward)],
            security=cfg.admin.security, prometheus_path=prom_path,
            prometheus_prefix=prom.prefix if prom else "", known_ids=lambda: self.metrics.ids,
            on_shutdown=on_shutdown)
        app.middlewares.append(summed)
        self.admin = AdminServer(app, cfg.admin.ip, cfg.admin.port)
        await self.admin.start()
        log.info("admin serving on http://%s:%s (%d workers)", cfg.admin.ip, self.admin.port, self.count)

    async def announce(self) -> None:
        """The routers' ``announcers``, once for all workers (as a single process would)."""
        from .announcers import announce_servers, build_announcers
        from .linker import Runtime

        for rcfg in self.config.routers:
            configs = getattr(rcfg, "announcers", None) or []
            if not configs:
                continue
            label = rcfg.effective_label
            anns = build_announcers(configs, Runtime(MetricsRegistry(), router_label=label))
            self.announcers.extend(anns)
            self.announcements.append(
                await announce_servers(anns, rcfg.servers, [(s.ip, s.port) for s in rcfg.servers]))

    async def close(self, grace_s: float) -> None:
        for a in self.announcements:
            try:
                await a.close()
            except Exception:
                log.exception("error while withdrawing an announcement")
        await self.terminate(grace_s)
        for a in self.announcers:
            close = getattr(a, "close", None)
            if close is not None:
                try:
                    r = close()
                    if asyncio.iscoroutine(r):
                        await r
                except Exception:
                    log.exception("error while closing %r", a)
        if self.admin is not None:
            await self.admin.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SummedMetrics(MetricsRegistry):
    """The master's registry: the sum of the workers' metrics as last fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.current = MetricsRegistry()
        self.ids: list[str] = []

    def items(self):  # type: ignore[no-untyped-def]
        return self.current.items()

    def get(self, name: str) -> Any:
        return self.current.get(name)


async def supervise(validated: Validated[LinkerConfig], count: int) -> int:
    """Run ``count`` workers until asked to stop; the exit status of the command."""
    master = Master(validated, count)
    loop = asyncio.get_running_loop()
    grace = validated.config.admin.shutdownGraceMs / 1000.0

    def on_signal(name: str) -> None:
        if master.stopping:
            log.warning("%s again: killing the workers without waiting for the drain", name)
            master.kill_all()
            os._exit(1)
        log.info("%s: draining %d workers (at most %d ms)", name, count, validated.config.admin.shutdownGraceMs)
        master.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    keepers: list[asyncio.Task[Any]] = []
    try:
        try:
            await asyncio.gather(*(master.spawn(w) for w in master.workers))
            await master.start_admin()
            await master.announce()
        except (RuntimeError, OSError) as e:
            log.error("%s", e)
            master.stopping = True
            await master.close(0)
            return 1
        keepers = [asyncio.ensure_future(master.keep(w)) for w in master.workers]
        await master.stop.wait()
        master.stopping = True
        await master.close(grace)
        return 0
    finally:
        for k in keepers:
            k.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _worker_main(argv: list[str]) -> int:
    """``python -m namerouter.workers CONFIG INDEX SOCKET LOGLEVEL``: one worker."""
    config_path, index, sock, level = argv[0], int(argv[1]), argv[2], argv[3]
    logging.basicConfig(level=level.upper() if level.upper() in logging._nameToLevel else "INFO",
                        stream=sys.stderr, format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    from .cli_run import _event_loop_policy
    from .config.schema import load_linker
    from .linker import WorkerRole, run

    validated = load_linker(config_path)
    _event_loop_policy()
    return asyncio.run(run(validated, worker=WorkerRole(index, sock)))


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
