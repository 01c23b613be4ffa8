"""N requests through the real router objects with in-memory transports (no sockets, no
event-loop I/O): the data plane's own work per request, for ``proxy_profile.py instr``.

    python bench/inmemory_requests.py N [simple|vary|browser]

``simple``: wrk's request, repeated; ``vary``: a different URI each time (no head is
reused); ``browser``: a request with a browser's headers. The backend's answer is nginx's.
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uvloop  # noqa: E402

from namerouter.metrics import MetricsRegistry  # noqa: E402
from namerouter.naming.interpreter import DefaultInterpreter  # noqa: E402
from namerouter.proxy import HttpRouter, RouterConfig, ServerConfig  # noqa: E402
from namerouter.proxy.h1.client import H1ClientConnection  # noqa: E402
from namerouter.proxy.h1.server import H1ServerConnection  # noqa: E402
from namerouter.proxy.transport import Connector  # noqa: E402

SIMPLE = b"GET /pong HTTP/1.1\r\nHost: pong\r\n\r\n"
BROWSER = (b"GET /pong?x=1 HTTP/1.1\r\nHost: pong\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
           b"Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, deflate\r\n"
           b"Accept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 16:15:07 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\npong")


class Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, key: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if key == "peername" else None

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: return False
    def can_write_eof(self) -> bool: return True


async def main(n: int, kind: str) -> None:
    upstream: list[H1ClientConnection] = []

    async def connect(self: Connector, endpoint: object) -> H1ClientConnection:
        c = H1ClientConnection(endpoint)  # type: ignore[arg-type]
        c.connection_made(Transport())
        upstream.append(c)
        return c

    Connector.connect = connect  # type: ignore[method-assign]
    cfg = RouterConfig(label="out", dtab="/svc/pong => /$/inet/127.1/9999", servers=[ServerConfig(port=1)])
    server = HttpRouter(cfg, DefaultInterpreter(), MetricsRegistry()).servers[0]
    server.init_metrics()
    client = Transport()
    conn = H1ServerConnection(server)
    conn.connection_made(client)
    conn.data_received(SIMPLE)
    for _ in range(5):
        await asyncio.sleep(0)
    up = upstream[0]
    up.data_received(RESPONSE)
    requests = ([SIMPLE.replace(b"/pong", b"/pong?i=%d" % i) for i in range(n)] if kind == "vary"
                else [BROWSER if kind == "browser" else SIMPLE] * n)
    for i, req in enumerate(requests):
        conn.data_received(req)
        up.data_received(RESPONSE)
        if i % 1000 == 0:
            client.out.clear()
            up.transport.out.clear()
    assert client.out[-1].endswith(b"pong"), client.out[-1]


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "simple"))
