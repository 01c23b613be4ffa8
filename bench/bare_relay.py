"""The yardstick of bench/proxy_bench.py: what a minimal Python HTTP/1.1 relay costs.

    python bench/bare_relay.py LISTEN_PORT BACKEND_PORT

uvloop + httptools, no routing, no metrics, no policy: each request is parsed (request
line and headers through httptools' callbacks), re-encoded and sent over a pooled
keep-alive connection to one fixed backend; the response is parsed the same way and
relayed. It handles what the benchmark sends (bodyless keep-alive requests,
Content-Length responses) and nothing more. namerouter's data plane is measured
against this in the same run: "CPU per request <= 2 x the relay's".
"""
import asyncio
import socket
import sys

import httptools
import uvloop


class Side(asyncio.Protocol):
    """A connection: Nagle off, every read to the parser (httptools calls the on_* methods)."""

    def connection_made(self, t):  # type: ignore[override]
        self.transport = t
        t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)


class Backend(Side):
    def __init__(self, pool: list) -> None:
        self.pool, self.client, self.transport = pool, None, None
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.headers: list = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.out = [b"HTTP/1.1 %d OK\r\n" % status, *self.headers, b"\r\n"]

    def on_body(self, body: bytes) -> None:
        self.out.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        if not client.transport.is_closing():  # wrk closes its connections at the end of a run
            client.transport.write(b"".join(self.out))
        self.pool.append(self)


class Client(Side):
    def __init__(self, relay: "Relay") -> None:
        self.relay, self.transport = relay, None
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        head = b"".join([self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n", *self.headers, b"\r\n"])
        pool = self.relay.pool
        if pool:
            self.send(pool.pop(), head)
        else:
            asyncio.get_running_loop().create_task(self.connect(head))

    async def connect(self, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, b = await loop.create_connection(lambda: Backend(self.relay.pool), "127.0.0.1", self.relay.port)
        self.send(b, head)

    def send(self, backend: Backend, head: bytes) -> None:
        backend.client = self
        backend.transport.write(head)


class Relay:
    def __init__(self, port: int) -> None:
        self.port, self.pool = port, []


async def main(listen: int, backend: int) -> None:
    relay = Relay(backend)
    server = await asyncio.get_running_loop().create_server(lambda: Client(relay), "127.0.0.1", listen,
                                                            backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
