"""The HTTP/2 codec of ``protocol: h2`` routers (h2c, ``Upgrade: h2c``, ALPN h2, gRPC).

``h2`` (python-hyper, sans-IO) does the framing, HPACK and stream states; these modules
drive it on asyncio and plug it into the protocol-neutral request lifecycle:

- ``config.py``: Linkerd's h2 router schema;
- ``conn.py``: what both connection sides share (settings, output, flow control, GOAWAY);
- ``heads.py``: header lists <-> request/response heads, gRPC error answers;
- ``accept.py``: which codec a new server connection speaks (preface, upgrade, ALPN);
- ``server.py``: client-facing connections, one lifecycle per stream;
- ``client.py``: backend connections, streams multiplexed, slots for the pools;
- ``identifiers.py``, ``classifiers.py``, ``policy.py``: h2 naming and retries (gRPC);
- ``stats.py``: Linkerd's per-stream metrics.
"""
