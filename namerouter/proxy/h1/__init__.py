"""HTTP/1.1 codec: pure framing (``heads.py``, ``encode.py``) and the asyncio protocols
that only move bytes and call into it (``server.py`` downstream, ``client.py`` upstream)."""
