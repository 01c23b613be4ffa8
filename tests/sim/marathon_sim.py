"""A Marathon REST API simulator (the ``/v2/apps`` resource), written from Marathon's
REST documentation (docs/rest-api, "Apps" and the Marathon 1.x RAML).

* ``GET /v2/apps`` → ``{"apps": [App, ...]}``; ``?id=<text>`` keeps apps whose id
  contains the text; ``?embed=apps.tasks`` adds each app's ``tasks``.
* ``GET /v2/apps/<app id>`` (the id may span groups: ``/v2/apps/prod/api/users``) →
  ``{"app": App}``; ``?embed=app.tasks`` adds ``tasks``; an unknown id is 404
  ``{"message": "App '/x' does not exist"}``.
* ``GET /v2/apps/<app id>/tasks`` → ``{"tasks": [Task, ...]}``.
* ``POST /v2/apps`` creates (201, 409 ``{"message": "An app with id [/x] already
  exists."}``), ``DELETE /v2/apps/<app id>`` removes (200 with a deployment, 404).
* ``GET /ping`` → ``pong``.
* HTTP basic authentication when ``credentials`` (``user:password``) is set: a request
  without the right ``Authorization: Basic …`` is 401 with
  ``WWW-Authenticate: Basic realm="Mesosphere Marathon"``.

An App carries ``id``, ``instances``, ``portDefinitions``, ``healthChecks``,
``ipAddress`` (``{"discovery": {"ports": [{"number", "name", "protocol"}]}}`` for
IP-per-task networking, else null), ``tasksRunning``/``tasksHealthy``/``tasksUnhealthy``
and ``version``. A Task carries ``id``, ``appId``, ``host``, ``ports``, ``ipAddresses``
(``[{"ipAddress", "protocol"}]``), ``state`` (``TASK_RUNNING``, ``TASK_STAGING`` …),
``healthCheckResults`` (``[{"alive", "consecutiveFailures", "taskId", …}]``) and
timestamps. Tests change state with :meth:`set_app` / :meth:`remove_app`; fault
injection with :meth:`stop`/:meth:`start` (same port) and ``fail_next`` (503 answers).
"""
from __future__ import annotations

import base64
import copy
import time
import uuid
from typing import Any, Optional

from aiohttp import web

from .base import SimServer


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def task(host: str, port: Optional[int] = None, *, ip: Optional[str] = None, state: str = "TASK_RUNNING",
         alive: Optional[list[bool]] = None) -> dict[str, Any]:
    """A task description for :meth:`MarathonSim.set_app` (ids and timestamps are filled in)."""
    return {"host": host, "ports": [port] if port is not None else [], "ip": ip, "state": state,
            "alive": alive}


class MarathonSim(SimServer):
    def __init__(self, port: Optional[int] = None, credentials: Optional[str] = None) -> None:
        super().__init__(port)
        self.credentials = credentials
        self.apps: dict[str, dict[str, Any]] = {}
        self.fail_next = 0

    # state --------------------------------------------------------------------------------
    @staticmethod
    def _norm(app_id: str) -> str:
        return "/" + app_id.strip("/")

    def set_app(self, app_id: str, tasks: list[dict[str, Any]], *, health_checks: int = 0,
                discovery_ports: Optional[list[int]] = None) -> dict[str, Any]:
        """Create or replace an app and its tasks (what Marathon's scheduler would report)."""
        app_id = self._norm(app_id)
        version = _now()
        full_tasks = []
        for t in tasks:
            tid = f"{app_id.strip('/').replace('/', '_')}.{uuid.uuid4()}"
            out: dict[str, Any] = {
                "id": tid, "appId": app_id, "host": t["host"], "ports": list(t["ports"]), "servicePorts": [],
                "slaveId": "agent-1", "agentId": "agent-1", "state": t["state"], "stagedAt": version,
                "startedAt": version if t["state"] == "TASK_RUNNING" else None, "version": version,
                "ipAddresses": [{"ipAddress": t["ip"] or "10.0.0.1", "protocol": "IPv4"}],
            }
            if t["alive"] is not None:
                out["healthCheckResults"] = [
                    {"alive": a, "consecutiveFailures": 0 if a else 1, "firstSuccess": version,
                     "lastFailure": None, "lastSuccess": version, "taskId": tid} for a in t["alive"]]
            full_tasks.append(out)
        app: dict[str, Any] = {
            "id": app_id, "cmd": "python3 -m http.server $PORT0", "instances": len(tasks), "cpus": 0.1,
            "mem": 32.0, "portDefinitions": [{"port": 10000, "protocol": "tcp", "name": "http", "labels": {}}],
            "requirePorts": False, "healthChecks": [
                {"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300, "intervalSeconds": 60,
                 "timeoutSeconds": 20, "maxConsecutiveFailures": 3} for _ in range(health_checks)],
            "ipAddress": None if discovery_ports is None else {
                "groups": [], "labels": {}, "networkName": "dcos",
                "discovery": {"ports": [{"number": n, "name": f"p{i}", "protocol": "tcp"}
                                        for i, n in enumerate(discovery_ports)]}},
            "version": version, "tasksStaged": sum(t["state"] == "TASK_STAGING" for t in full_tasks),
            "tasksRunning": sum(t["state"] == "TASK_RUNNING" for t in full_tasks),
            "tasksHealthy": sum(bool(t.get("healthCheckResults")) and all(r["alive"] for r in t["healthCheckResults"])
                                for t in full_tasks),
            "tasksUnhealthy": sum(any(not r["alive"] for r in t.get("healthCheckResults") or [])
                                  for t in full_tasks),
            "tasks": full_tasks,
        }
        self.apps[app_id] = app
        return app

    def remove_app(self, app_id: str) -> None:
        self.apps.pop(self._norm(app_id), None)

    # HTTP -----------------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/v2/apps", self._list)
        app.router.add_post("/v2/apps", self._create)
        app.router.add_get("/v2/apps/{app_id:.+}/tasks", self._tasks)
        app.router.add_get("/v2/apps/{app_id:.+}", self._get)
        app.router.add_delete("/v2/apps/{app_id:.+}", self._delete)

    def _check(self, request: web.Request) -> Optional[web.Response]:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"message": "Marathon is not leader / leader is unavailable"}, status=503)
        if self.credentials is None:
            return None
        want = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if request.headers.get("Authorization") != want:
            return web.json_response({"message": "Invalid username or password."}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="Mesosphere Marathon"'})
        return None

    @staticmethod
    def _view(app: dict[str, Any], tasks: bool) -> dict[str, Any]:
        out = copy.deepcopy(app)
        if not tasks:
            out.pop("tasks", None)
        return out

    @staticmethod
    def _embeds(request: web.Request) -> set[str]:
        return set(request.query.getall("embed", []))

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def _list(self, request: web.Request) -> web.Response:
        denied = self._check(request)
        if denied:
            return denied
        want = request.query.get("id", "")
        tasks = "apps.tasks" in self._embeds(request)
        return web.json_response({"apps": [self._view(a, tasks) for i, a in sorted(self.apps.items()) if want in i]})

    def _app(self, request: web.Request) -> tuple[Optional[dict], Optional[web.Response]]:
        """(the app the path names, None) or (None, the error answer)."""
        denied = self._check(request)
        if denied:
            return None, denied
        app_id = self._norm(request.match_info["app_id"])
        app = self.apps.get(app_id)
        if app is None:
            return None, web.json_response({"message": f"App '{app_id}' does not exist"}, status=404)
        return app, None

    async def _get(self, request: web.Request) -> web.Response:
        app, error = self._app(request)
        if app is None:
            return error  # type: ignore[return-value]
        return web.json_response({"app": self._view(app, "app.tasks" in self._embeds(request))})

    async def _tasks(self, request: web.Request) -> web.Response:
        app, error = self._app(request)
        if app is None:
            return error  # type: ignore[return-value]
        return web.json_response({"tasks": copy.deepcopy(app["tasks"])})

    async def _create(self, request: web.Request) -> web.Response:
        denied = self._check(request)
        if denied:
            return denied
        try:
            body = await request.json()
            app_id = self._norm(str(body["id"]))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"message": "Invalid JSON", "details": [{"path": "/id",
                                                                               "errors": ["error.path.missing"]}]},
                                     status=422)
        if app_id in self.apps:
            return web.json_response({"message": f"An app with id [{app_id}] already exists."}, status=409)
        app = self.set_app(app_id, [])
        app["instances"] = int(body.get("instances", 1))
        return web.json_response(self._view(app, False), status=201, headers={"Location": f"/v2/apps{app_id}"})

    async def _delete(self, request: web.Request) -> web.Response:
        denied = self._check(request)
        if denied:
            return denied
        app_id = self._norm(request.match_info["app_id"])
        if self.apps.pop(app_id, None) is None:
            return web.json_response({"message": f"App '{app_id}' does not exist"}, status=404)
        return web.json_response({"version": _now(), "deploymentId": str(uuid.uuid4())})
