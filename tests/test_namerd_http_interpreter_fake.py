"""A small faithful fake of namerd's HTTP API (§2.2/§2.3 of linkerd1-map.md), plus tests
that pin the fake to the protocol.

Why a fake next to the real namerd: it can do what a correct namerd never does on
purpose — split a JSON document over many chunks, put several in one chunk, end a
stream with an error line, vanish and come back on the same port with different state —
so the interpreter's stream handling can be tested against each of those exactly.

Binding here is the real dtab semantics reduced to what the tests use: ``/$/inet`` and a
dict-backed ``/#/io.l5d.fs/<name>`` namer, Alt (first non-negative), Union (weighted),
the dtab's own lookup (last dentry first). Watch streams are chunked HTTP/1.1, one JSON
document per change, consecutive duplicates suppressed, the first value sent at once.
"""
from __future__ import annotations

import asyncio
import json
import socket
import weakref
from typing import Any, Optional

import aiohttp
import pytest
from aiohttp import web

from namerouter.dtab import Dtab, NameTree, Path
from namerouter.dtab.tree import EMPTY, FAIL, NEG, Alt, Leaf, Union, Weighted

INET = Path.of("$", "inet")
FS = Path.of("#", "io.l5d.fs")


class NamerdState:
    """What namerd knows: stored dtabs per namespace and the fs namer's files. Two fakes
    sharing one state behave like two namerd processes sharing one ZooKeeper store."""

    def __init__(self, dtabs: Optional[dict[str, str]] = None) -> None:
        self.dtabs: dict[str, Dtab] = {ns: Dtab.read(t) for ns, t in (dtabs or {}).items()}
        self.fs: dict[str, list[tuple[str, int]]] = {}
        self.version = 0
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self.version += 1
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def wait_change(self) -> None:
        await self._changed.wait()

    def set_dtab(self, ns: str, text: str) -> None:
        self.dtabs[ns] = Dtab.read(text)
        self.changed()

    def set_fs(self, name: str, addrs: list[tuple[str, int]]) -> None:
        self.fs[name] = list(addrs)
        self.changed()

    # -- binding ---------------------------------------------------------------------
    def addr_json(self, id: Path) -> dict:
        if id.startswith(INET) and len(id) == 4:
            return {"type": "bound", "addrs": [{"ip": id[2].decode(), "port": int(id[3]), "meta": {}}], "meta": {}}
        if id.startswith(FS) and len(id) == 3:
            name = id[2].decode()
            if name not in self.fs:
                return {"type": "neg"}
            return {"type": "bound", "addrs": [{"ip": h, "port": p, "meta": {}} for h, p in self.fs[name]], "meta": {}}
        raise LookupError(f"no namer for {id.show()}")

    def _bind_path(self, dtab: Dtab, path: Path, depth: int) -> NameTree:
        if depth > 100:
            raise RecursionError("Max recursion level: 100 reached in Namer lookup")
        if path.startswith(INET) and len(path) >= 4:
            return Leaf((path.take(4), path.drop(4)))
        if path.startswith(FS) and len(path) >= 3:
            if path[2].decode() not in self.fs:
                return NEG
            return Leaf((path.take(3), path.drop(3)))
        return self._bind_tree(dtab, dtab.lookup(path), depth + 1)

    def _bind_tree(self, dtab: Dtab, tree: NameTree, depth: int) -> NameTree:
        if isinstance(tree, Leaf):
            return self._bind_path(dtab, tree.value, depth)
        if isinstance(tree, Alt):
            for t in tree.trees:
                b = self._bind_tree(dtab, t, depth).simplified()
                if b is not NEG:
                    return b
            return NEG
        if isinstance(tree, Union):
            return Union(*(Weighted(w.weight, self._bind_tree(dtab, w.tree, depth)) for w in tree.weighted)).simplified()
        return tree

    def bind_json(self, ns: str, path: Path, extra: Dtab) -> dict:
        dtab = self.dtabs[ns] + extra
        try:
            tree = self._bind_path(dtab, path, 0).simplified()
        except RecursionError as e:
            return {"type": "exception", "message": str(e)}
        return self.tree_json(tree)

    def tree_json(self, tree: NameTree) -> dict:
        if isinstance(tree, Leaf):
            id, residual = tree.value
            return {"type": "leaf", "bound": {"addr": self.addr_json(id), "id": id.show(), "path": residual.show()}}
        if isinstance(tree, Alt):
            return {"type": "alt", "alt": [self.tree_json(t) for t in tree.trees]}
        if isinstance(tree, Union):
            return {"type": "union", "union": [{"weight": w.weight, "tree": self.tree_json(w.tree)} for w in tree.weighted]}
        return {"type": {NEG: "neg", FAIL: "fail", EMPTY: "empty"}[tree]}


def _reserve_port(port: int) -> Optional[socket.socket]:
    """A socket bound to 127.0.0.1:``port`` (0: any free port) with SO_REUSEADDR and never
    listening: connections to the port are refused while no server listens on it, yet
    nothing else on the box can take the port (another test's bind(0), or an outgoing
    connection's ephemeral port), so a fake namerd "restarted" on it after an outage of
    seconds on a busy machine always gets it back. Our own listener may still bind it
    (SO_REUSEADDR on both, only one listening). None if the port is already taken."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


class FakeNamerd:
    """One namerd HTTP controller process: start/stop on a fixed port (a restart keeps the
    port, which stays reserved while it is down), counts its requests, and has switches
    for protocol edge cases."""

    def __init__(self, state: NamerdState, port: Optional[int] = None) -> None:
        self.state = state
        hold = _reserve_port(port or 0)
        if hold is None and not port:
            raise OSError("no free loopback port for the fake namerd")
        self.port = port or hold.getsockname()[1]
        if hold is not None:
            weakref.finalize(self, hold.close)  # released with the fake
        self.requests: list[tuple[str, dict]] = []
        self.open_streams = 0
        #: write every JSON document one byte per chunk (the parser must not care)
        self.byte_chunks = False
        #: no newline after documents, each cut in two chunks (values run together)
        self.no_newlines = False
        #: namespaces whose bind streams fail: error text line, then end of stream
        self.fail_binds: dict[str, str] = {}
        #: paths answered with 400 "Invalid path" (as namerd does for what it can't parse)
        self.reject_paths: set[str] = set()
        self._runner: Optional[web.AppRunner] = None
        self._stopping = asyncio.Event()

    @property
    def dst(self) -> str:
        return f"/$/inet/127.0.0.1/{self.port}"

    def count(self, api: str) -> int:
        return sum(1 for p, _ in self.requests if p.startswith(f"/api/1/{api}"))

    async def start(self) -> "FakeNamerd":
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/1/dtabs", self.list_dtabs)
        app.router.add_get("/api/1/dtabs/{ns}", self.get_dtab)
        app.router.add_put("/api/1/dtabs/{ns}", self.put_dtab)
        app.router.add_get("/api/1/bind/{ns}", self.bind)
        app.router.add_get("/api/1/addr/{ns}", self.addr)
        app.router.add_get("/api/1/delegate/{ns}", self.delegate)
        # handler_cancellation: a client that goes away ends its watch at once (else only
        # the next write would notice, and open_streams would lag behind)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        """Like killing the process: listening socket closed, every stream cut."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ----------------------------------------------------------------------
    def _log(self, request: web.Request) -> None:
        self.requests.append((request.path, dict(request.query)))

    async def list_dtabs(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response(sorted(self.state.dtabs))

    async def get_dtab(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        ns = request.match_info["ns"]
        if ns not in self.state.dtabs:
            return web.Response(status=404)
        return await self._stream(request, lambda: self.state.dtabs[ns].to_json())

    async def put_dtab(self, request: web.Request) -> web.Response:
        self._log(request)
        self.state.set_dtab(request.match_info["ns"], await request.text())
        return web.Response(status=204)

    def _path(self, request: web.Request) -> Path:
        if request.query.get("path") in self.reject_paths:
            raise web.HTTPBadRequest(text=f"Invalid path: {request.query['path']} / rejected")
        try:
            return Path.read(request.query["path"])
        except Exception as e:
            raise web.HTTPBadRequest(text=f"Invalid path: {request.query.get('path')} / {e}")

    async def bind(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        ns = request.match_info["ns"]
        path = self._path(request)
        extra = Dtab.read(request.query.get("dtab", ""))
        if ns not in self.state.dtabs:
            return web.Response(status=404)
        return await self._stream(request, lambda: self.state.bind_json(ns, path, extra), fail_key=ns)

    async def addr(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        path = self._path(request)
        return await self._stream(request, lambda: self.state.addr_json(path))

    async def delegate(self, request: web.Request) -> web.Response:
        self._log(request)
        ns = request.match_info["ns"]
        path = self._path(request)
        extra = Dtab.read(request.query.get("dtab", ""))
        bound = self.state.bind_json(ns, path, extra)
        return web.json_response({"type": "delegate", "path": path.show(), "delegate": bound})

    async def _stream(self, request: web.Request, compute, fail_key: Optional[str] = None) -> web.StreamResponse:
        if request.query.get("watch") not in ("1", "true"):
            try:
                return web.json_response(compute())
            except LookupError as e:
                return web.Response(status=500, text=str(e))
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.open_streams += 1
        last: Any = object()
        try:
            while not self._stopping.is_set():
                if fail_key is not None and fail_key in self.fail_binds:
                    await resp.write(self.fail_binds[fail_key].encode() + b"\n")
                    break
                try:
                    value = compute()
                except LookupError as e:
                    await resp.write(str(e).encode() + b"\n")
                    break
                if value != last:
                    last = value
                    doc = json.dumps(value).encode()
                    if self.byte_chunks:
                        for i in range(len(doc)):
                            await resp.write(doc[i:i + 1])
                        await resp.write(b"\n")
                    elif self.no_newlines:
                        # no separator at all, and the document cut in two chunks
                        k = len(doc) // 2
                        await resp.write(doc[:k])
                        await resp.write(doc[k:])
                    else:
                        await resp.write(doc + b"\n")
                change = asyncio.ensure_future(self.state.wait_change())
                stop = asyncio.ensure_future(self._stopping.wait())
                try:
                    await asyncio.wait({change, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    change.cancel()
                    stop.cancel()
        except ConnectionResetError:
            pass  # the client went away while we wrote
        # A CancelledError (client gone, server shutting down) is not swallowed: aiohttp
        # is waiting for this handler to end, and a handler that eats its cancel can keep
        # a shutdown waiting until its own timeout.
        finally:
            self.open_streams -= 1
        return resp


# -- tests of the fake itself: it must speak the protocol the interpreter is tested on ------

@pytest.fixture
async def fake():
    state = NamerdState({"default": "/svc=>/#/io.l5d.fs"})
    state.set_fs("web", [("127.0.0.1", 8080)])
    n = await FakeNamerd(state).start()
    yield n
    await n.stop()


async def test_fake_bind_watch_is_chunked_and_one_document_per_change(fake: FakeNamerd):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{fake.port}/api/1/bind/default",
                         params={"path": "/svc/web", "watch": "1"}) as resp:
            assert resp.status == 200
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            first = json.loads(await resp.content.readline())
            assert first["type"] == "leaf" and first["bound"]["id"] == "/#/io.l5d.fs/web"
            fake.state.set_dtab("default", "/svc/web=>/$/inet/127.0.0.1/9000")
            second = json.loads(await asyncio.wait_for(resp.content.readline(), 2))
            assert second["bound"]["id"] == "/$/inet/127.0.0.1/9000"


async def test_fake_addr_and_not_found(fake: FakeNamerd):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{fake.port}/api/1/addr/default",
                         params={"path": "/#/io.l5d.fs/web"}) as resp:
            assert await resp.json() == {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 8080, "meta": {}}], "meta": {}}
        async with s.get(f"http://127.0.0.1:{fake.port}/api/1/bind/nope", params={"path": "/svc/web"}) as resp:
            assert resp.status == 404


async def test_a_stopped_fake_keeps_its_port_reserved_and_refuses_connections(fake: FakeNamerd):
    """While "namerd is down" nothing else can take its port (so the restart cannot fail or
    land the client on some other test's server), and connecting is refused."""
    await fake.stop()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", fake.port)
    other = socket.socket()
    try:
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", fake.port))  # a plain bind, as most servers do
    finally:
        other.close()
    await fake.start()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{fake.port}/api/1/dtabs") as resp:
            assert await resp.json() == ["default"]
