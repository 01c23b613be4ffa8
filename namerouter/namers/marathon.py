"""``io.l5d.marathon``: Marathon apps as address sets (Linkerd's AppIdNamer).

::

    namers:
    - kind: io.l5d.marathon
      host: marathon.mesos       # or dst: /$/inet/<host>/<port>
      port: 80
      uriPrefix: /marathon       # DC/OS serves Marathon under /marathon
      ttlMs: 5000                # polling interval (± jitterMs, default 50)
      useHealthCheck: false

Name: ``/#/io.l5d.marathon/<app id>[/residual]``; an app id may span groups
(``/#/io.l5d.marathon/prod/api/users`` is the app ``/prod/api/users`` when it exists).
As in Linkerd, the app list (``GET <uriPrefix>/v2/apps``) is polled every ``ttlMs`` and
the *shortest* leading part of the name that is an app id wins, the rest being the
residual; names are compared lower-cased. Each bound app's tasks are polled
(``GET <uriPrefix>/v2/apps/<id>?embed=app.tasks``) every ``ttlMs`` while observed:

* IP-per-task apps (``ipAddress.discovery.ports``): each task's first IP address with
  the first discovery port; otherwise each task's ``host`` with its first port (agent
  host names are resolved through DNS);
* ``useHealthCheck: true`` keeps only ``TASK_RUNNING`` tasks with at least as many
  passing health-check results as the app has health checks (tasks of apps without
  health checks: ``TASK_RUNNING`` ones);
* no task → ``~`` (neg); an app that disappears → ``~``.

Failures follow the watch rule: before the first answer a failure fails the lookup
(Linkerd's behaviour), afterwards the last good state is kept while the poll retries
with jittered backoff (at most one ``ttlMs`` apart). Polls run only while observed.

Authentication, as Linkerd: ``MARATHON_HTTP_AUTH_CREDENTIAL`` (base64 ``user:password``)
is sent as HTTP basic auth. DC/OS service-account login
(``DCOS_SERVICE_ACCOUNT_CREDENTIAL``, an RS256-signed login) is not implemented and
refused at start-up with that message. ``tls`` makes the requests HTTPS.
``dst`` must be ``/$/inet/<host>/<port>`` here (Linkerd binds any path; its
leader-election example uses ``/$/io.buoyant.namer.zk.leader/…``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp

from ..backoff import JitteredBackoff
from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from ..naming import dns
from ..naming.addr import ADDR_NEG, ADDR_PENDING, AddrBound, AddrFailed, Address
from ..naming.bound import BoundName
from ..naming.namer import Namer, addr_tree_state
from ..naming.reactive import HeldActivity, flat_map
from ..naming.var import PENDING, Activity, Failed, Ok, Var, start_stop
from .consul import ConsulTls, _tls_context

log = logging.getLogger(__name__)

KIND = "io.l5d.marathon"
BASIC_AUTH_ENV = "MARATHON_HTTP_AUTH_CREDENTIAL"
DCOS_AUTH_ENV = "DCOS_SERVICE_ACCOUNT_CREDENTIAL"


def _check_dst(value: str) -> None:
    Path.read(value)  # a Finagle path; what it may name is checked at start-up


@dataclass
class MarathonConfig:
    prefix: str = "/" + KIND
    host: str = "marathon.mesos"
    port: int = field(default=80, metadata={"min": 1, "max": 65535})
    dst: Optional[str] = field(default=None, metadata={"check": _check_dst})
    uriPrefix: str = ""
    ttlMs: int = field(default=5000, metadata={"min": 1})
    jitterMs: int = field(default=50, metadata={"min": 0})
    useHealthCheck: bool = False
    tls: Optional[ConsulTls] = None
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


def endpoint_of_dst(dst: str) -> tuple[str, int]:
    """(host, port) of a ``/$/inet/<host>/<port>`` dst; ValueError otherwise."""
    labels = Path.read(dst).text_labels()
    if len(labels) == 4 and labels[:2] == ["$", "inet"] and labels[3].isdigit():
        return labels[2], int(labels[3])
    raise ValueError(f"dst {dst!r}: only /$/inet/<host>/<port> is supported; or set host and port")


# Marathon's JSON → addresses -----------------------------------------------------------

def _healthy(task: dict[str, Any], checks: int) -> bool:
    if task.get("state") != "TASK_RUNNING":
        return False
    alive = sum(1 for r in task.get("healthCheckResults") or [] if isinstance(r, dict) and r.get("alive") is True)
    return alive >= checks


def task_endpoints(app: dict[str, Any], use_health_check: bool) -> list[tuple[str, int]]:
    """(host, port) of every usable task of an ``embed=app.tasks`` app (see module doc)."""
    checks = len(app.get("healthChecks") or [])
    disc = (((app.get("ipAddress") or {}).get("discovery") or {}).get("ports") or [{}])[0] or {}
    disc_port = disc.get("number") if isinstance(disc, dict) else None
    out = []
    for t in app.get("tasks") or []:
        if not isinstance(t, dict) or (use_health_check and not _healthy(t, checks)):
            continue
        if isinstance(disc_port, int):
            ips = [a.get("ipAddress") for a in t.get("ipAddresses") or [] if isinstance(a, dict)]
            if ips and ips[0]:
                out.append((str(ips[0]), disc_port))
        else:
            ports = t.get("ports") or []
            if t.get("host") and ports and isinstance(ports[0], int):
                out.append((str(t["host"]), ports[0]))
    return out


def app_ids(doc: Any) -> frozenset[Path]:
    apps = doc.get("apps") if isinstance(doc, dict) else None
    if not isinstance(apps, list):
        raise ValueError("GET /v2/apps: expected {\"apps\": [...]}")
    return frozenset(Path.read(str(a["id"]).lower()) for a in apps if isinstance(a, dict) and a.get("id"))


class MarathonApi:
    """A thin client of Marathon's ``/v2/apps`` (one connection pool)."""

    def __init__(self, base_url: str, host_header: Optional[str], auth: Optional[str], ssl: Any = None,
                 timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if host_header:
            self.headers["Host"] = host_header
        if auth:
            self.headers["Authorization"] = f"Basic {auth}"
        self._ssl = ssl
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: Optional[aiohttp.ClientSession] = None

    async def get(self, path: str) -> tuple[int, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else True))
        async with self._session.get(self.base_url + path, headers=self.headers, timeout=self._timeout) as rsp:
            body = await rsp.read()
            if rsp.status not in (200, 404):
                raise RuntimeError(f"marathon GET {path}: HTTP {rsp.status}: {body[:200].decode('utf-8', 'replace')}")
            try:
                return rsp.status, json.loads(body) if body else None
            except ValueError:
                raise RuntimeError(f"marathon GET {path}: the answer is not JSON") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Poll:
    """A poll loop running while its Var is observed (subclasses define ``once``)."""

    def __init__(self, namer: "MarathonNamer", initial: Any, name: str) -> None:
        self._namer = weakref.ref(namer)
        self.name = name
        self.var: Var[Any] = Var.lazy(initial, start_stop(self._start, self._stop))
        self._task: Optional[asyncio.Task[None]] = None
        self.polls = 0
        self.errors = 0
        self.last_error: Optional[str] = None
        self.initialized = False

    def _start(self) -> None:
        namer = self._namer()
        if namer is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(namer), name=f"marathon:{self.name}")

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def once(self, namer: "MarathonNamer") -> None:
        raise NotImplementedError

    def failed(self, err: BaseException) -> None:
        """Only before the first answer (afterwards the last good state stays)."""

    async def _run(self, namer: "MarathonNamer") -> None:
        backoff = JitteredBackoff(0.05, namer.ttl_s)
        while True:
            try:
                await self.once(namer)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # connection refused, 5xx, 401, bad JSON
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                if not self.initialized:
                    self.failed(e)
                await asyncio.sleep(backoff.next())
                continue
            self.polls += 1
            self.initialized = True
            self.last_error = None
            backoff.reset()
            await asyncio.sleep(namer.next_ttl())

    def state(self) -> dict[str, Any]:
        return {"running": self._task is not None, "polls": self.polls, "errors": self.errors,
                "lastError": self.last_error}


class AppsPoll(_Poll):
    """``GET /v2/apps``: the set of app ids (lower-cased paths)."""

    async def once(self, namer: "MarathonNamer") -> None:
        _, doc = await namer.api.get(f"{namer.uri_prefix}/v2/apps")
        self.var.update(Ok(app_ids(doc)))

    def failed(self, err: BaseException) -> None:
        self.var.update(Failed(err))


class AppPoll(_Poll):
    """``GET /v2/apps/<id>?embed=app.tasks``: one app's address set."""

    def __init__(self, namer: "MarathonNamer", app: Path) -> None:
        super().__init__(namer, ADDR_PENDING, app.show())
        self.app = app

    async def once(self, namer: "MarathonNamer") -> None:
        status, doc = await namer.api.get(f"{namer.uri_prefix}/v2/apps{self.app.show()}?embed=app.tasks")
        app = (doc or {}).get("app") if status == 200 and isinstance(doc, dict) else None
        eps = task_endpoints(app, namer.use_health_check) if isinstance(app, dict) else []
        addrs: list[Address] = []
        for host, port in eps:
            try:
                addrs += [Address(ip, port) for ip in await dns.resolve(host)]
            except (dns.UnknownHost, OSError) as e:
                log.warning("marathon app %s: task host %s does not resolve: %s", self.name, host, e)
        self.var.update(AddrBound(addrs) if addrs else ADDR_NEG)

    def failed(self, err: BaseException) -> None:
        self.var.update(AddrFailed(f"marathon app {self.name}: {err}"))




class MarathonNamer(Namer):
    kind = KIND
    config_class = MarathonConfig

    def __init__(self, api: MarathonApi, prefix: Optional[Path] = None, uri_prefix: str = "",
                 ttl_ms: int = 5000, jitter_ms: int = 50, use_health_check: bool = False) -> None:
        super().__init__(prefix if prefix is not None else Path.of(KIND))
        self.api = api
        self.uri_prefix = "/" + uri_prefix.strip("/") if uri_prefix.strip("/") else ""
        self.ttl_s = ttl_ms / 1000.0
        self.jitter_s = jitter_ms / 1000.0
        self.use_health_check = use_health_check
        self.apps = AppsPoll(self, PENDING, "apps")
        self.apps_activity: Activity[frozenset[Path]] = Activity(self.apps.var)
        self._apps: "weakref.WeakValueDictionary[Path, AppPoll]" = weakref.WeakValueDictionary()

    @classmethod
    def from_config(cls, config: MarathonConfig, runtime: Any = None) -> "MarathonNamer":
        from ..naming.transform import build_transformers

        if os.environ.get(DCOS_AUTH_ENV):
            raise ValueError(f"{KIND}: DC/OS service-account login ({DCOS_AUTH_ENV}) is not supported; use "
                             f"{BASIC_AUTH_ENV} (basic auth) or reach Marathon through an authenticating proxy")
        host, port = endpoint_of_dst(config.dst) if config.dst else (config.host, config.port)
        scheme = "https" if config.tls is not None else "http"
        api = MarathonApi(f"{scheme}://{host}:{port}", config.host, os.environ.get(BASIC_AUTH_ENV),
                          _tls_context(config.tls) if config.tls is not None else None)
        namer = cls(api, Path.read(config.prefix), config.uriPrefix, config.ttlMs, config.jitterMs,
                    config.useHealthCheck)
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    def next_ttl(self) -> float:
        return max(0.001, self.ttl_s + (random.random() * 2 - 1) * self.jitter_s)

    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        if not len(path):
            return Activity.value(NEG)
        lowered = Path.of(*[label.lower() for label in path.text_labels()])

        def choose(ids: frozenset[Path]) -> Activity[NameTree[Any]]:
            for n in range(1, len(lowered) + 1):
                app = lowered.take(n)
                if app in ids:
                    return self._app_activity(app, path.drop(n))
            return Activity.value(NEG)

        return flat_map(self.apps_activity, choose)  # the interpreter caches bindings per name

    def _app_activity(self, app: Path, residual: Path) -> Activity[NameTree[Any]]:
        poll = self._apps.get(app)
        if poll is None:
            poll = self._apps[app] = AppPoll(self, app)
        bound = BoundName(self.bound_id(app), poll.var, residual)
        return HeldActivity(poll, bound, poll.var, lambda a: addr_tree_state(a, bound))

    async def close(self) -> None:
        self.apps._stop()
        for p in list(self._apps.values()):
            p._stop()
        await self.api.close()

    def admin_state(self) -> dict[str, Any]:
        apps = self.apps.var.sample()
        return {
            "marathon": self.api.base_url + self.uri_prefix,
            "apps": sorted(p.show() for p in apps.value) if isinstance(apps, Ok) else None,
            "appsPoll": self.apps.state(),
            "names": {k.show(): {"addr": p.var.sample().to_json(), **p.state()}
                      for k, p in sorted(self._apps.items())},
            "time": time.time(),
        }
