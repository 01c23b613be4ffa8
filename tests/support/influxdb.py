"""A real InfluxDB 1.x server (Debian's ``influxdb``) on free loopback ports, for the
``io.l5d.influxdb`` telemeter's tests: what the router serves is written to it with the
HTTP ``/write`` API (InfluxDB's own line-protocol parser judges it) and read back with
``/query``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

from .ports import free_port
from .process import start_and_wait, stop_process


def influxdb_available() -> bool:
    return shutil.which("influxd") is not None


class InfluxServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.mkdtemp(prefix="influxdb-", dir=base)
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        d = self.dir
        path = os.path.join(d, "influxdb.conf")
        with open(path, "w") as f:
            f.write(f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
""")
        return path

    def start(self, timeout: float = 60.0) -> "InfluxServer":
        self.proc = start_and_wait(["influxd", "run", "-config", self._config()], self._ping,
                                   f"influxd on port {self.port}", timeout)
        return self

    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                return r.status == 204
        except OSError:
            return False

    def query(self, q: str, db: str = "") -> Any:
        data = urllib.parse.urlencode({"q": q, "db": db}).encode()
        with urllib.request.urlopen(self.url + "/query", data=data, timeout=10) as r:
            return json.loads(r.read())

    def write(self, db: str, body: bytes) -> tuple[int, str]:
        req = urllib.request.Request(f"{self.url}/write?db={db}", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
