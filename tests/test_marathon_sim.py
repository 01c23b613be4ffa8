"""The Marathon simulator on its own, over HTTP (curl), against Marathon's documented API."""
from __future__ import annotations

import base64
import json

from tests.sim.marathon_sim import MarathonSim, task
from tests.support.backends import curl


async def _get(url: str, *args: str) -> tuple[int, dict]:
    code, out, err = await curl("-s", "-w", "\n%{http_code}", *args, url)
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body) if body.strip().startswith(("{", "[")) else {"text": body}


async def test_apps_tasks_and_errors():
    async with MarathonSim() as sim:
        sim.set_app("/prod/api/users", [task("agent-1", 31000, alive=[True]), task("agent-2", 31001,
                                                                                    state="TASK_STAGING")],
                    health_checks=1)
        sim.set_app("/web", [task("agent-1", 31002, ip="10.1.2.3")], discovery_ports=[8080])
        status, doc = await _get(f"{sim.url}/v2/apps")
        assert status == 200 and [a["id"] for a in doc["apps"]] == ["/prod/api/users", "/web"]
        assert "tasks" not in doc["apps"][0]
        status, doc = await _get(f"{sim.url}/v2/apps?embed=apps.tasks&id=prod")
        assert [a["id"] for a in doc["apps"]] == ["/prod/api/users"] and len(doc["apps"][0]["tasks"]) == 2

        status, doc = await _get(f"{sim.url}/v2/apps/prod/api/users?embed=app.tasks")
        app = doc["app"]
        assert status == 200 and app["tasksRunning"] == 1 and app["tasksStaged"] == 1 and app["tasksHealthy"] == 1
        t0 = app["tasks"][0]
        assert t0["appId"] == "/prod/api/users" and t0["host"] == "agent-1" and t0["ports"] == [31000]
        assert t0["healthCheckResults"][0]["alive"] is True and t0["state"] == "TASK_RUNNING"
        status, doc = await _get(f"{sim.url}/v2/apps/web")
        assert doc["app"]["ipAddress"]["discovery"]["ports"][0]["number"] == 8080 and "tasks" not in doc["app"]
        status, doc = await _get(f"{sim.url}/v2/apps/web/tasks")
        assert doc["tasks"][0]["ipAddresses"][0]["ipAddress"] == "10.1.2.3"

        status, doc = await _get(f"{sim.url}/v2/apps/nope")
        assert status == 404 and doc == {"message": "App '/nope' does not exist"}
        status, doc = await _get(f"{sim.url}/v2/apps", "-X", "POST", "-H", "Content-Type: application/json",
                                 "--data", '{"id": "/web"}')
        assert status == 409 and "already exists" in doc["message"]
        status, doc = await _get(f"{sim.url}/v2/apps", "-X", "POST", "-H", "Content-Type: application/json",
                                 "--data", '{"id": "/new", "instances": 0}')
        assert status == 201 and doc["id"] == "/new"
        status, _ = await _get(f"{sim.url}/v2/apps/new", "-X", "DELETE")
        assert status == 200 and "/new" not in sim.apps
        sim.fail_next = 1
        assert (await _get(f"{sim.url}/v2/apps"))[0] == 503
        assert (await curl("-s", f"{sim.url}/ping"))[1] == "pong"


async def test_basic_authentication():
    async with MarathonSim(credentials="user:secret") as sim:
        code, out, _ = await curl("-s", "-i", f"{sim.url}/v2/apps")
        assert " 401 " in out.split("\r\n")[0] and 'WWW-Authenticate: Basic realm="Mesosphere Marathon"' in out
        token = base64.b64encode(b"user:secret").decode()
        status, doc = await _get(f"{sim.url}/v2/apps", "-H", f"Authorization: Basic {token}")
        assert status == 200 and doc == {"apps": []}
