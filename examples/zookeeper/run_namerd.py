#!/usr/bin/env python3
"""The ZooKeeper walkthrough with namerd, in one command: the dtab lives in namerd
(stored in ZooKeeper), and every router asks namerd how to route.

    .venv/bin/python examples/zookeeper/run_namerd.py          # Ctrl-C stops everything
    .venv/bin/python examples/zookeeper/run_namerd.py --check  # start, try it, shift pong, stop

What it starts (all on 127.0.0.1; README.md, "The namerd variant", explains each step):

    ZooKeeper            :2181   serversets (the instances) and namerd's dtabs (/dtabs/<ns>)
    namerd               :4180   issue 5's config as written (namerd.yaml; admin :9991)
                                 with the dtab of namespace `internal` (internal.dtab)
    pong service         :8002   registers itself with the Python API
    ping service         :8001   registered by `namerouter announce -- python service.py`
    pong-v2 service      :8003   a new version of pong, registered under /discovery/pong-v2;
                                 no traffic until namerd's dtab sends some
    ping's linker        outgoing router :4140, incoming router :4141, admin :9990
    pong's linker        outgoing router :4150, incoming router :4151, admin :9992

The linkers have no dtab and no namers of their own: all four routers use the
``io.l5d.namerd.http`` interpreter with namespace ``internal``, so one write to namerd
changes routing everywhere. ``--check`` proves it: after the README's requests it moves
pong's traffic to pong-v2 with one API call, times how long each outgoing router takes
to follow, and moves it back.

Every port can be changed (``--help``). Logs go to ``<workdir>/logs``, process ids to
``<workdir>/<name>.pid``.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_run_module():
    # run.py (the plain variant) is a script next to this one, not a package module:
    # load it by path so this file works however it is started (script, test, import).
    spec = importlib.util.spec_from_file_location("_zk_example_run", os.path.join(HERE, "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_run = _load_run_module()
Stack = _run.Stack
_get = _run._get
curl_line = _run.curl_line

#: The namespace both linkers' routers use.
NAMESPACE = "internal"
#: The walkthrough's dtab (internal.dtab): every /svc/<name> is the serverset /discovery/<name>.
DTAB_FILE = os.path.join(HERE, "internal.dtab")
#: The canary step's dtab: pong's traffic goes to pong-v2 (later dentries win).
SHIFT_DTAB = ("/svc => /#/io.l5d.serversets/discovery;\n"
              "/svc/pong => /#/io.l5d.serversets/discovery/pong-v2;\n")

DEFAULT_PORTS = {
    "zk": 2181,
    "namerd": 4180,
    "namerd-admin": 9991,
    "ping": 8001,
    "pong": 8002,
    "pong-v2": 8003,
    "ping-out": 4140,
    "ping-in": 4141,
    "ping-admin": 9990,
    "pong-out": 4150,
    "pong-in": 4151,
    "pong-admin": 9992,
}


def namerd_config(ports: dict[str, int]) -> str:
    """Issue 5's namerd seed config; with the default ports it is exactly the issue's text."""
    return f"""\
admin:
  port: {ports['namerd-admin']}
storage:
  kind: io.l5d.zk
  zkAddrs:
  - host: 127.0.0.1
    port: {ports['zk']}
  sessionTimeoutMs: 100000000
namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: 127.0.0.1
    port: {ports['zk']}
interfaces:
- kind: io.l5d.httpController
  port: {ports['namerd']}
  ip: 0.0.0.0
"""


def linker_config(name: str, peer: str, ports: dict[str, int]) -> str:
    """One service's linker when namerd does the routing (outgoing + incoming router)."""
    dst = f"/$/inet/127.1/{ports['namerd']}"
    return f"""\
# {name}'s linker, namerd variant: one process, two routers, no dtab and no namers of
# its own. Both routers ask namerd ({dst}) to bind names with the dtab of namespace
# `{NAMESPACE}`, so one change there re-routes every router that uses it.
#
#   outgoing :{ports[name + '-out']}  {name} sends its requests here (Host: <service>). namerd binds
#                   /svc/<service> to the members namerd's serversets namer finds in
#                   ZooKeeper; io.l5d.port replaces each member's port with the port of
#                   the incoming router in front of it: {peer}'s, {ports[peer + '-in']}. (With one
#                   service per host every incoming router listens on 4141.)
#   incoming :{ports[name + '-in']}  requests arriving for a service: the same binding, and
#                   io.l5d.localhost keeps only the members on this host. Because it uses
#                   namerd's dtab too, a dtab change applies on both hops.
admin:
  ip: 127.0.0.1
  port: {ports[name + '-admin']}

routers:
- protocol: http
  label: outgoing
  interpreter:
    kind: io.l5d.namerd.http
    dst: {dst}
    namespace: {NAMESPACE}
    transformers:
    - kind: io.l5d.port
      port: {ports[peer + '-in']}
  servers:
  - port: {ports[name + '-out']}
    ip: 127.0.0.1

- protocol: http
  label: incoming
  interpreter:
    kind: io.l5d.namerd.http
    dst: {dst}
    namespace: {NAMESPACE}
    transformers:
    - kind: io.l5d.localhost
  servers:
  - port: {ports[name + '-in']}
    ip: 127.0.0.1
"""


def _request(method: str, url: str, body: Optional[str] = None,
             headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def put_dtab(namerd_url: str, ns: str, text: str) -> int:
    """One API call: replace the namespace's dtab, guarded by If-Match (the version we read)."""
    url = f"{namerd_url}/api/1/dtabs/{ns}"
    status, headers, body = _request("GET", url, headers={"Accept": "application/dtab"})
    if status != 200:
        raise RuntimeError(f"GET {url}: {status} {body.strip()}")
    status, _, body = _request("PUT", url, text, {"Content-Type": "application/dtab",
                                                   "If-Match": headers.get("ETag", "")})
    if status != 204:
        raise RuntimeError(f"PUT {url}: {status} {body.strip()}")
    return status


def time_until(routers: dict[str, str], want_prefix: str, host: str, timeout: float = 10.0) -> dict[str, float]:
    """Seconds until each router (name -> URL) answers ``Host: host`` with ``want_prefix``."""
    start = time.monotonic()
    took: dict[str, float] = {}
    while len(took) < len(routers):
        for name, url in routers.items():
            if name not in took and _get(url, host, timeout=2)[1].startswith(want_prefix):
                took[name] = time.monotonic() - start
        if time.monotonic() - start > timeout:
            missing = sorted(set(routers) - set(took))
            raise RuntimeError(f"{', '.join(missing)} still not answering {want_prefix!r} after {timeout} s")
        time.sleep(0.01)
    return took


class NamerdStack(Stack):
    """ZooKeeper, namerd with its dtab, the services, and linkers that use namerd."""

    @property
    def namerd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['namerd']}"

    def start(self) -> None:
        p, py = self.ports, self.python
        # 1. ZooKeeper: the instances register there, and namerd keeps its dtabs there.
        self.start_zookeeper()
        zk = f"127.0.0.1:{p['zk']}"
        # 2. namerd (issue 5's config), then the walkthrough's dtab through its API.
        cfg = os.path.join(self.workdir, "namerd.yaml")
        with open(cfg, "w") as f:
            f.write(namerd_config(p))
        self.spawn("namerd", [py, "-m", "namerd", cfg])
        self.wait("namerd", lambda: _get(f"http://127.0.0.1:{p['namerd-admin']}/admin/ping")[0] == 200)
        print(f"  namerd         0.0.0.0:{p['namerd']}   (admin :{p['namerd-admin']}, dtabs in ZooKeeper /dtabs)")
        # `apply` = create, or update when the namespace exists (a --workdir kept from an
        # earlier run keeps ZooKeeper's data): the walkthrough always starts from this dtab.
        r = subprocess.run([py, "-m", "namerd", "dtab", "apply", NAMESPACE, DTAB_FILE, "--namerd", self.namerd_url],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"namerd dtab apply {NAMESPACE} failed: {(r.stderr or r.stdout).strip()}")
        print(f"  dtab           namespace {NAMESPACE}: {r.stdout.strip()} from {os.path.relpath(DTAB_FILE)}")
        # 3. The services: pong registers itself (Python API); ping and pong-v2 are
        #    registered by `namerouter announce`.
        service = os.path.join(HERE, "service.py")
        self.spawn("pong", [py, service, "pong", str(p["pong"]), "--peer", "ping", "--router", str(p["pong-out"]),
                            "--zk", zk])
        self.spawn("ping", [py, "-m", "namerouter", "announce", "--zk", zk, "--path", "/discovery/ping",
                            "--host", "127.0.0.1", "--port", str(p["ping"]), "--",
                            py, service, "ping", str(p["ping"]), "--peer", "pong", "--router", str(p["ping-out"])])
        self.spawn("pong-v2", [py, "-m", "namerouter", "announce", "--zk", zk, "--path", "/discovery/pong-v2",
                               "--host", "127.0.0.1", "--port", str(p["pong-v2"]), "--",
                               py, service, "pong-v2", str(p["pong-v2"]), "--peer", "ping",
                               "--router", str(p["pong-out"])])
        # 4. One linker per service; their routers get every binding from namerd.
        for name, peer in (("ping", "pong"), ("pong", "ping")):
            cfg = os.path.join(self.workdir, f"linkerd-{name}-namerd.yaml")
            with open(cfg, "w") as f:
                f.write(linker_config(name, peer, p))
            self.spawn(f"linkerd-{name}", [py, "-m", "namerouter", cfg])
        for name in ("ping", "pong"):
            self.wait(f"{name}'s linker", lambda n=name: _get(f"http://127.0.0.1:{p[n + '-admin']}/admin/ping")[0] == 200)
        for name in ("ping", "pong", "pong-v2"):
            print(f"  {name:<7} service 127.0.0.1:{p[name]}" +
                  (f"   linker: outgoing :{p[name + '-out']}, incoming :{p[name + '-in']}, admin :{p[name + '-admin']}"
                   if name != "pong-v2" else "   (registered under /discovery/pong-v2; no traffic yet)"))
        # 5. Ready when each service reaches the other through both linkers (and namerd).
        for a in ("ping", "pong"):
            self.wait(f"{a} -> its peer", lambda a=a: _get(f"http://127.0.0.1:{p[a]}/call")[0] == 200)


def walkthrough(p: dict[str, int]) -> list[tuple[str, str, Optional[str]]]:
    """(description, url, Host header) of the README's checks."""
    return [
        ("namerd's dtab for the namespace the routers use",
         f"http://127.0.0.1:{p['namerd']}/api/1/dtabs/{NAMESPACE}", None),
        ("pong through ping's outgoing router (then pong's incoming router)",
         f"http://127.0.0.1:{p['ping-out']}/", "pong"),
        ("ping calls pong: ping -> outgoing -> namerd's binding -> pong's incoming -> pong",
         f"http://127.0.0.1:{p['ping']}/call", None),
        ("pong calls ping the same way", f"http://127.0.0.1:{p['pong']}/call", None),
    ]


def shift_check(stack: NamerdStack) -> bool:
    """The canary step of the README: one PUT to namerd, both outgoing routers follow."""
    p = stack.ports
    routers = {"ping's outgoing": f"http://127.0.0.1:{p['ping-out']}/",
               "pong's outgoing": f"http://127.0.0.1:{p['pong-out']}/"}
    ok = True
    for label, text, want in (("shift pong's traffic to pong-v2", SHIFT_DTAB, "pong-v2 ("),
                              ("and back", open(DTAB_FILE).read(), "pong (")):
        print(f"\n# {label}: PUT {stack.namerd_url}/api/1/dtabs/{NAMESPACE} (If-Match: the current ETag)")
        put_dtab(stack.namerd_url, NAMESPACE, text)
        try:
            took = time_until(routers, want, "pong")
        except RuntimeError as e:
            print(f"  {e}")
            ok = False
            continue
        for name, secs in took.items():
            print(f"  {name} router answers '{want}...' {secs * 1000:.0f} ms after the PUT")
        if max(took.values()) > 1.0:
            ok = False
        call = f"http://127.0.0.1:{p['ping']}/call"
        code, body = _get(call)
        print(f"$ {curl_line(call, None)}\n{body.strip()}   (HTTP {code})")
        ok = ok and code == 200 and body.startswith(f"ping -> {want}")
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    args, ports = _run.parse_args(argv, __doc__, DEFAULT_PORTS,
                                  "run the walkthrough's requests and the canary shift, print them, and stop")
    workdir = _run.make_workdir(args, ("namerouter", "namerd"), "run_namerd.py", "namerouter-zk-namerd-example-")
    if workdir is None:
        return 1
    stack = NamerdStack(ports, workdir, sys.executable)

    def show_ready() -> None:
        _run.print_walkthrough(walkthrough(ports))
        print(f"  # one API call re-routes both linkers: send pong's traffic to pong-v2\n"
              f"  namerd dtab get {NAMESPACE} --namerd {stack.namerd_url}\n"
              f"  curl -s -X PUT -H 'Content-Type: application/dtab' {stack.namerd_url}/api/1/dtabs/{NAMESPACE} "
              f"--data '{SHIFT_DTAB.replace(chr(10), ' ').strip()}'")

    def check() -> bool:
        walked = _run.check_walkthrough(walkthrough(ports))
        return shift_check(stack) and walked

    return _run.run_stack(stack, args, workdir, show_ready, check)


if __name__ == "__main__":
    sys.exit(main())
