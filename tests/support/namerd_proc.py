"""A real namerd process (``python -m namerd``) serving every interface on fixed free
ports, so a SIGKILL and a restart keep its addresses. Dtabs persist in the file store
(``io.namerouter.file``) across restarts; ``io.l5d.fs`` names live in ``disco``."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any, Iterator, Optional

from .ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class NamerdProcess:
    def __init__(self, workdir: str, disco: str, dtab: str = "/svc=>/#/io.l5d.fs",
                 extra_interfaces: str = "") -> None:
        self.http, self.mesh, self.thrift, self.destination = free_port(), free_port(), free_port(), free_port()
        self.admin = free_port()
        self.config_path = os.path.join(workdir, f"namerd-{self.http}.yaml")
        self.log_path = os.path.join(workdir, f"namerd-{self.http}.log")
        self.store_path = os.path.join(workdir, f"dtabs-{self.http}.json")
        with open(self.config_path, "w") as f:
            f.write(
                f"admin: {{port: {self.admin}}}\n"
                "storage:\n"
                "  kind: io.namerouter.file\n"
                f"  path: {self.store_path}\n"
                "namers:\n"
                f"- {{kind: io.l5d.fs, rootDir: {disco}}}\n"
                "interfaces:\n"
                f"- {{kind: io.l5d.httpController, port: {self.http}}}\n"
                f"- {{kind: io.l5d.mesh, port: {self.mesh}}}\n"
                f"- {{kind: io.l5d.thriftNameInterpreter, port: {self.thrift}}}\n"
                f"- {{kind: io.l5d.destination, port: {self.destination}, prefix: /svc, namespace: default}}\n"
                + extra_interfaces)
        self.initial_dtab = dtab
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def dst(self, kind: str) -> str:
        port = {"io.l5d.mesh": self.mesh, "io.l5d.namerd": self.thrift, "io.l5d.namerd.http": self.http}[kind]
        return f"/$/inet/127.0.0.1/{port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "namerd", self.config_path], cwd=ROOT,
                                         stdout=log, stderr=log)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready_sync(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise RuntimeError(f"namerd exited: {self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/admin/ping", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"namerd not ready: {self.log()[-3000:]}")
            time.sleep(0.02)

    def put_dtab_sync(self, text: str, ns: str = "default") -> None:
        req = urllib.request.Request(f"{self.url}/api/1/dtabs/{ns}", data=text.encode(), method="PUT",
                                     headers={"Content-Type": "application/dtab"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 204, r.status

    def start_sync(self) -> "NamerdProcess":
        self.spawn()
        self.wait_ready_sync()
        return self

    async def start(self) -> "NamerdProcess":
        return await asyncio.to_thread(self.start_sync)

    def kill_sync(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            self.proc.wait()  # type: ignore[union-attr]
        self.proc = None

    async def kill(self) -> None:
        """SIGKILL: no goodbye, every connection cut by the kernel."""
        await asyncio.to_thread(self.kill_sync)

    async def put_dtab(self, text: str, ns: str = "default") -> None:
        """PUT through namerd's API with curl, as an operator would."""
        p = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-f", "-X", "PUT", "-H", "Content-Type: application/dtab", "--data-binary", text,
            f"{self.url}/api/1/dtabs/{ns}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await p.communicate()
        assert p.returncode == 0, f"curl PUT failed: {err.decode()} {out.decode()}"


def write_fs(disco: str, name: str, *addrs: tuple[str, int]) -> None:
    tmp = os.path.join(disco, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write("".join(f"{h} {p}\n" for h, p in addrs))
    os.replace(tmp, os.path.join(disco, name))


#: The names and dtab the interface tests compare across protocols: a plain leaf, a
#: weighted union, an alt with a negative first branch, and several addresses.
SAMPLE_FILES = {"web": [("127.0.0.1", 8081)], "web2": [("127.0.0.1", 8082), ("10.0.0.2", 8083)],
                "canary": [("127.0.0.1", 8089)]}
SAMPLE_DTAB = ("/svc=>/#/io.l5d.fs;/svc/split=>0.9*/#/io.l5d.fs/web & 0.1*/#/io.l5d.fs/canary;"
               "/svc/alt=>/#/io.l5d.fs/nope | /#/io.l5d.fs/web2")


def running_namerd(tmp_path_factory: Any, name: str, files: dict[str, list[tuple[str, int]]],
                   dtab: str = "") -> Iterator[NamerdProcess]:
    """Body of a module-scoped fixture: a namerd with these io.l5d.fs ``files``
    (``disco`` attribute: their directory) and ``default`` = ``dtab``."""
    work = tmp_path_factory.mktemp(name)
    disco = work / "disco"
    disco.mkdir()
    for fname, addrs in files.items():
        write_fs(str(disco), fname, *addrs)
    n = NamerdProcess(str(work), str(disco))
    n.disco = str(disco)  # type: ignore[attr-defined]
    try:
        n.start_sync()
        if dtab:
            n.put_dtab_sync(dtab)
        yield n
    finally:
        n.kill_sync()


def get_json(namerd: NamerdProcess, endpoint: str, **params: str) -> Any:
    """One GET on namerd's HTTP controller (blocking; tests run it in a thread)."""
    q = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{namerd.url}{endpoint}?{q}", timeout=10) as r:
        return json.loads(r.read())
