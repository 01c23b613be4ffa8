"""Linkerd's ``socketOptions`` block (server and client): the options themselves, set on
the real sockets, and the config dataclass.

- ``noDelay`` (``TCP_NODELAY``, default true), ``keepAlive`` (``SO_KEEPALIVE``, default
  false), ``reuseAddr`` (``SO_REUSEADDR``, default true) and ``reusePort``
  (``SO_REUSEPORT``, default false: another process may bind the same port) are set with
  ``setsockopt``: on a server's listening socket before it binds and on each accepted
  connection; on a client's (bound id's) backend connections once connected.
- ``backlog``: the listen queue of a server (default: ours, 1024).
- ``readTimeoutMs`` / ``writeTimeoutMs`` are Finagle's transport-level timeouts (netty's
  read/write timeout handlers), enforced through the connection watches of
  ``sessions.py`` (no cost per read): a server connection on which nothing was read or
  answered for ``readTimeoutMs`` is closed; a backend connection that sends nothing for
  that long — while the router waits for a response head or body, or idle in the pool —
  is closed and the request fails (``ReadTimedOutException``); a connection whose
  outgoing buffer stays full (the peer does not read) for ``writeTimeoutMs`` is cut.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class SocketOptionsConfig:
    noDelay: bool = True
    reuseAddr: bool = True
    reusePort: bool = False
    readTimeoutMs: Optional[int] = field(default=None, metadata={"min": 1})
    writeTimeoutMs: Optional[int] = field(default=None, metadata={"min": 1})
    keepAlive: bool = False
    backlog: Optional[int] = field(default=None, metadata={"min": 1, "max": 65535})


def apply(sock: socket.socket, opts: Optional[SocketOptionsConfig]) -> None:
    """Set ``opts`` on a connected socket (None: our default, ``TCP_NODELAY`` only)."""
    try:
        if opts is None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(opts.noDelay))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(opts.keepAlive))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(opts.reuseAddr))
        if opts.reusePort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:  # not a TCP socket (a test's socketpair), or already closed
        pass


def ms(v: Optional[int]) -> Optional[float]:
    return v / 1000.0 if v else None
