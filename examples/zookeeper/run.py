#!/usr/bin/env python3
"""The ZooKeeper walkthrough in one command: ZooKeeper, ping and pong, and their routers.

    .venv/bin/python examples/zookeeper/run.py          # Ctrl-C stops everything
    .venv/bin/python examples/zookeeper/run.py --check  # start, run the README's curls, stop

What it starts (all on 127.0.0.1; README.md explains each step):

    ZooKeeper            :2181   Debian's zookeeper package, data in a temporary directory
    pong service         :8002   registers itself with the Python API
    ping service         :8001   registered by `namerouter announce -- python service.py`
    seed router          :4001   issue 4's config as written (admin :9990)
    ping's linker        outgoing router :4140, incoming router :4141, admin :9991
    pong's linker        outgoing router :4150, incoming router :4151, admin :9992

Every port can be changed (``--help``). Logs go to ``<workdir>/logs``, process ids to
``<workdir>/<name>.pid`` (e.g. to pause ZooKeeper: ``kill -STOP $(cat <workdir>/zookeeper.pid)``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ZK_JAR = "/usr/share/java/zookeeper.jar"
ZK_CLASSPATH = "/etc/zookeeper/conf:" + ZK_JAR

DEFAULT_PORTS = {
    "zk": 2181,
    "ping": 8001,
    "pong": 8002,
    "seed": 4001,
    "seed-admin": 9990,
    "ping-out": 4140,
    "ping-in": 4141,
    "ping-admin": 9991,
    "pong-out": 4150,
    "pong-in": 4151,
    "pong-admin": 9992,
}


def seed_config(ports: dict[str, int]) -> str:
    """Issue 4's seed config; with the default ports it is exactly the text of the issue
    (zkAddrs localhost:2181, router on 0.0.0.0:4001, admin at its default 9990)."""
    admin = "" if ports["seed-admin"] == 9990 else f"admin:\n  port: {ports['seed-admin']}\n"
    return f"""\
{admin}namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: localhost
    port: {ports['zk']}
routers:
- protocol: http
  label: outging
  dtab: |
    /svc => /#/io.l5d.serversets/discovery;
  servers:
  - port: {ports['seed']}
    ip: 0.0.0.0
"""


def linker_config(name: str, peer: str, ports: dict[str, int]) -> str:
    """The config of one service's linker (its outgoing and incoming routers)."""
    return f"""\
# {name}'s linker: one process, two routers (Linkerd's linker-to-linker setup).
#
#   outgoing :{ports[name + '-out']}  {name} sends its requests here (Host: <service>).
#                   /svc/<service> => /#/io.l5d.serversets/discovery/<service>: the members
#                   registered under /discovery/<service>. The io.l5d.port transformer then
#                   replaces each member's own port with the port of the incoming router
#                   in front of it: {peer}'s, {ports[peer + '-in']}. (With one service per host,
#                   every incoming router listens on the same port, 4141, and so does this.)
#   incoming :{ports[name + '-in']}  requests for {name} arrive here and go to the local
#                   instance, /$/inet/127.1/{ports[name]}.
admin:
  ip: 127.0.0.1
  port: {ports[name + '-admin']}

namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: 127.0.0.1
    port: {ports['zk']}

routers:
- protocol: http
  label: outgoing
  dtab: |
    /svc => /#/io.l5d.serversets/discovery;
  interpreter:
    kind: default
    transformers:
    - kind: io.l5d.port
      port: {ports[peer + '-in']}
  servers:
  - port: {ports[name + '-out']}
    ip: 127.0.0.1

- protocol: http
  label: incoming
  dtab: |
    /svc/* => /$/inet/127.1/{ports[name]};
  servers:
  - port: {ports[name + '-in']}
    ip: 127.0.0.1
"""


def _ruok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"ruok")
            return s.recv(4) == b"imok"
    except OSError:
        return False


def _get(url: str, host: Optional[str] = None, timeout: float = 5.0) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


class Stack:
    """The processes of the walkthrough, started in order and stopped in reverse."""

    def __init__(self, ports: dict[str, int], workdir: str, python: str) -> None:
        self.ports = ports
        self.workdir = workdir
        self.python = python
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.logs, f"{name}.log"), "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # Own process group: Ctrl-C reaches only this script, which stops things in order.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                                process_group=0)
        log.close()
        with open(os.path.join(self.workdir, f"{name}.pid"), "w") as f:
            f.write(f"{proc.pid}\n")
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, n: int = 15) -> str:
        try:
            with open(os.path.join(self.logs, f"{name}.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def wait(self, what: str, ready, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def start_zookeeper(self) -> None:
        """ZooKeeper, bound to loopback, fast ticks (the zoo.cfg of components.md)."""
        p = self.ports
        zkdir = os.path.join(self.workdir, "zookeeper")
        os.makedirs(zkdir, exist_ok=True)
        with open(os.path.join(zkdir, "zoo.cfg"), "w") as f:
            f.write(f"tickTime=200\ndataDir={zkdir}\nclientPort={p['zk']}\nclientPortAddress=127.0.0.1\n"
                    "maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,stat,srvr,mntr\n")
        self.spawn("zookeeper", ["java", "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                                 "-Dzookeeper.admin.enableServer=false", "-cp", ZK_CLASSPATH,
                                 "org.apache.zookeeper.server.ZooKeeperServerMain", os.path.join(zkdir, "zoo.cfg")])
        self.wait(f"ZooKeeper on 127.0.0.1:{p['zk']}", lambda: _ruok(p["zk"]))
        print(f"  ZooKeeper      127.0.0.1:{p['zk']}")

    def start(self) -> None:
        p, py = self.ports, self.python
        # 1. ZooKeeper.
        self.start_zookeeper()
        zk = f"127.0.0.1:{p['zk']}"
        service = os.path.join(HERE, "service.py")
        # 2. pong registers itself (Python API); ping is registered by `namerouter announce`.
        self.spawn("pong", [py, service, "pong", str(p["pong"]), "--peer", "ping", "--router", str(p["pong-out"]),
                            "--zk", zk])
        self.spawn("ping", [py, "-m", "namerouter", "announce", "--zk", zk, "--path", "/discovery/ping",
                            "--host", "127.0.0.1", "--port", str(p["ping"]), "--",
                            py, service, "ping", str(p["ping"]), "--peer", "pong", "--router", str(p["ping-out"])])
        # 3. The seed router (straight to the members), then one linker per service
        #    (outgoing + incoming router).
        cfg = os.path.join(self.workdir, "seed.yaml")
        with open(cfg, "w") as f:
            f.write(seed_config(p))
        self.spawn("seed-router", [py, "-m", "namerouter", cfg])
        for name, peer in (("ping", "pong"), ("pong", "ping")):
            cfg = os.path.join(self.workdir, f"linkerd-{name}.yaml")
            with open(cfg, "w") as f:
                f.write(linker_config(name, peer, p))
            self.spawn(f"linkerd-{name}", [py, "-m", "namerouter", cfg])
        self.wait("the seed router", lambda: _get(f"http://127.0.0.1:{p['seed-admin']}/admin/ping")[0] == 200)
        print(f"  seed router    0.0.0.0:{p['seed']}   (admin :{p['seed-admin']})")
        for name in ("ping", "pong"):
            self.wait(f"{name}'s linker", lambda n=name: _get(f"http://127.0.0.1:{p[n + '-admin']}/admin/ping")[0] == 200)
            print(f"  {name:<5} service  127.0.0.1:{p[name]}   linker: outgoing :{p[name + '-out']}, "
                  f"incoming :{p[name + '-in']}, admin :{p[name + '-admin']}")
        # 4. Ready when each service reaches the other through both linkers.
        for a in ("ping", "pong"):
            self.wait(f"{a} -> its peer", lambda a=a: _get(f"http://127.0.0.1:{p[a]}/call")[0] == 200)

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    print(f"  {name} did not stop after SIGTERM; killing it", file=sys.stderr)
                    proc.kill()
                    proc.wait()
        self.procs.clear()


def walkthrough(p: dict[str, int]) -> list[tuple[str, str, Optional[str]]]:
    """(description, url, Host header) of the README's checks."""
    return [
        ("ping answers directly", f"http://127.0.0.1:{p['ping']}/", None),
        ("the seed router: Host: pong -> /svc/pong -> members of /discovery/pong",
         f"http://127.0.0.1:{p['seed']}/", "pong"),
        ("pong through ping's outgoing router (then pong's incoming router)",
         f"http://127.0.0.1:{p['ping-out']}/", "pong"),
        ("ping calls pong: ping -> outgoing -> ZooKeeper -> pong's incoming -> pong",
         f"http://127.0.0.1:{p['ping']}/call", None),
        ("pong calls ping the same way", f"http://127.0.0.1:{p['pong']}/call", None),
    ]


def curl_line(url: str, host: Optional[str]) -> str:
    return f"curl -s {'-H ' + repr('Host: ' + host) + ' ' if host else ''}{url}"


# --- the command line and the run loop, shared with run_namerd.py ----------------------
def parse_args(argv: Optional[list[str]], doc: Optional[str], default_ports: dict[str, int],
               check_help: str) -> tuple[argparse.Namespace, dict[str, int]]:
    """The walkthroughs' options: ``--<name>-port`` for every port, ``--workdir``,
    ``--keep``, ``--check``. Returns the arguments and the ports by name."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, default in default_ports.items():
        ap.add_argument(f"--{key}-port", type=int, default=default, dest=key.replace("-", "_"),
                        help=f"default {default}")
    ap.add_argument("--workdir", help="where ZooKeeper's data, the configs and the logs go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir when stopping")
    ap.add_argument("--check", action="store_true", help=check_help)
    args = ap.parse_args(argv)
    return args, {key: getattr(args, key.replace("-", "_")) for key in default_ports}


def make_workdir(args: argparse.Namespace, packages: tuple[str, ...], script: str, prefix: str) -> Optional[str]:
    """The working directory (``--workdir`` or a new temporary one), or None after saying
    what is missing: Debian's ZooKeeper and Java, or ``packages`` in this Python."""
    if not (os.path.exists(ZK_JAR) and shutil.which("java")):
        print("ZooKeeper is not installed: sudo apt-get install zookeeper (it brings Java)", file=sys.stderr)
        return None
    try:
        for name in packages:
            importlib.import_module(name)
    except ImportError:
        print(f"{'/'.join(packages)} {'is' if len(packages) == 1 else 'are'} not importable by this Python: "
              f"run it with the project's venv (.venv/bin/python examples/zookeeper/{script}) "
              "or `pip install -e .` first", file=sys.stderr)
        return None
    workdir = args.workdir or tempfile.mkdtemp(prefix=prefix)
    os.makedirs(workdir, exist_ok=True)
    return workdir


def print_walkthrough(steps: list[tuple[str, str, Optional[str]]]) -> None:
    for what, url, host in steps:
        print(f"  # {what}\n  {curl_line(url, host)}")


def check_walkthrough(steps: list[tuple[str, str, Optional[str]]]) -> bool:
    """Run the README's requests, print each with its answer; True when all are 200."""
    ok = True
    for what, url, host in steps:
        code, body = _get(url, host)
        print(f"$ {curl_line(url, host)}\n{body.strip()}   (HTTP {code})")
        if code != 200:
            ok = False
    return ok


def run_stack(stack: "Stack", args: argparse.Namespace, workdir: str,
              show_ready: Callable[[], None], check: Callable[[], bool]) -> int:
    """Start ``stack``, print how to try it (``show_ready``), then either run ``check``
    (``--check``) or wait for Ctrl-C / SIGTERM; always stop every process and remove
    the workdir unless it was asked to be kept. Returns the exit status."""

    def on_signal(signum, frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    status = 0
    try:
        print(f"starting in {workdir} (logs in {stack.logs})")
        stack.start()
        print("\nready. Try:")
        show_ready()
        if args.check:
            print()
            if not check():
                status = 1
        else:
            print("\nPress Ctrl-C to stop.")
            while True:
                stack.check_alive()
                time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # don't interrupt the orderly stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        if args.keep or args.workdir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print("stopped")
    return status


def main(argv: Optional[list[str]] = None) -> int:
    args, ports = parse_args(argv, __doc__, DEFAULT_PORTS, "run the walkthrough's requests, print them, and stop")
    workdir = make_workdir(args, ("namerouter",), "run.py", "namerouter-zk-example-")
    if workdir is None:
        return 1
    stack = Stack(ports, workdir, sys.executable)

    def show_ready() -> None:
        print_walkthrough(walkthrough(ports))
        print(f"  # what the namer watches\n  curl -s http://127.0.0.1:{ports['ping-admin']}/namer_state/io.l5d.serversets.json")

    return run_stack(stack, args, workdir, show_ready, lambda: check_walkthrough(walkthrough(ports)))


if __name__ == "__main__":
    sys.exit(main())
