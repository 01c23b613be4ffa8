"""Following one Consul KV key (or a key prefix) with blocking queries, forever.

Shared by namerd's ``io.l5d.consul`` store and the ``io.l5d.consul.interpreter``. The
loop follows Consul's blocking-query rules
(https://developer.hashicorp.com/consul/api-docs/features/blocking, ``next_index``): a
missing or backwards ``X-Consul-Index``, a failed request or a dropped connection
restart the query without an index after a jittered backoff; answers are handed to
``on_answer`` (a 404 = no such key is an answer too), failures to ``on_error``. The
caller keeps the last good value: this loop never publishes anything on its own.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

from ..backoff import JitteredBackoff
from .client import ConsulClient, ConsulResponse, next_index

log = logging.getLogger(__name__)


async def follow_key(
    client: ConsulClient,
    key: str,
    on_answer: Callable[[ConsulResponse], None],
    on_error: Callable[[BaseException], None],
    *,
    recurse: bool = False,
    wait: Optional[str] = None,
    consistency: Optional[str] = None,
    dc: Optional[str] = None,
    max_backoff_s: float = 5.0,
) -> None:
    """Run until cancelled (see the module docstring)."""
    backoff = JitteredBackoff(0.01, max_backoff_s)
    index: Optional[int] = None
    while True:
        started = time.monotonic()
        try:
            rsp = await client.kv_get(key, index=index, wait=wait, recurse=recurse, consistency=consistency, dc=dc)
            new_index = next_index(index, rsp.index)
            on_answer(rsp)
            unchanged = new_index == index
            index = new_index
            backoff.reset()
            if unchanged and time.monotonic() - started < 0.05:
                await asyncio.sleep(backoff.next())  # a server that does not block: no spin
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("consul KV watch %s failed: %s", key, e)
            on_error(e)
            index = None
            await asyncio.sleep(backoff.next())
