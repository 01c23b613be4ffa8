"""Traffic splitting by dtab union weights, through the real router to real backends.

- ``/svc/web => 9 * /v1 & 1 * /v2`` holds its 90/10 ratio within ±2 points over 10,000
  requests;
- moving the weights in an ``io.l5d.fs``-interpreter dtab file (watched), or in namerd
  (``io.l5d.namerd.http`` interpreter, dtab updated through namerd's API with curl),
  shifts live traffic within a second, with no failed request while it happens.
"""
from __future__ import annotations

import asyncio
import collections
import os
import tempfile
import time


from namerouter.interpreters.fs import FsInterpreter
from tests.support.backends import RouterHarness
from tests.support.load import FlakyBackend, sample


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # atomic: the watcher never sees half a dtab


async def test_union_weights_hold_within_two_points_over_10000_requests():
    async with FlakyBackend("v1") as v1, FlakyBackend("v2") as v2:
        dtab = (f"/v1 => /$/inet/127.1/{v1.port}; /v2 => /$/inet/127.1/{v2.port};"
                "/svc/web => 9 * /v1 & 1 * /v2")
        async with RouterHarness(dtab) as h:
            got = await sample(h.port, count=10_000, concurrency=8)
    seen = collections.Counter(b for _, b, _ in got[:10_000])
    statuses = collections.Counter(s for _, _, s in got[:10_000])
    assert statuses == {200: 10_000}
    share = seen["v2"] / 10_000
    assert abs(share - 0.10) <= 0.02, seen
    assert v1.total + v2.total == len(got)


async def test_moving_weights_in_the_dtab_file_shifts_live_traffic_within_a_second():
    async with FlakyBackend("v1") as v1, FlakyBackend("v2") as v2:
        d = tempfile.mkdtemp()
        path = os.path.join(d, "dtab")
        base = f"/v1 => /$/inet/127.1/{v1.port};\n/v2 => /$/inet/127.1/{v2.port};\n"
        _write(path, base + "/svc/web => 9 * /v1 & 1 * /v2;\n")
        interp = FsInterpreter(path)
        async with RouterHarness("", interpreter=interp) as h:
            stop = asyncio.Event()
            live: list[tuple[float, str, int]] = []
            task = asyncio.get_running_loop().create_task(sample(h.port, until=stop, concurrency=4, out=live))
            await asyncio.sleep(1.5)
            before = collections.Counter(b for _, b, _ in live)
            changed_at = time.monotonic()
            _write(path, base + "/svc/web => 1 * /v1 & 9 * /v2;\n")
            await asyncio.sleep(2.5)
            stop.set()
            await task
        await interp.close()
    assert all(s == 200 for _, _, s in live)
    assert before["v1"] / sum(before.values()) > 0.85, before
    after = [b for t, b, _ in live if t >= changed_at + 1.0]
    assert len(after) > 300
    share_v2 = after.count("v2") / len(after)
    assert abs(share_v2 - 0.9) <= 0.03, (share_v2, len(after))
    # when did it move: the first 100-response window after the change that is mostly v2
    post = [(t, b) for t, b, _ in live if t >= changed_at]
    shift = next(t for i, (t, _) in enumerate(post) if i >= 100 and
                 sum(1 for _, b in post[i - 100:i] if b == "v2") >= 70)
    assert shift - changed_at < 1.0, shift - changed_at


async def test_moving_weights_in_namerd_shifts_live_traffic_within_a_second():
    from namerd.storage.memory import InMemoryDtabStore
    from namerouter.dtab.dtab import Dtab
    from namerouter.interpreters.namerd_http import NamerdHttpConfig, NamerdHttpInterpreter
    from tests.namerd_support import start_namerd
    from tests.support.backends import curl

    async with FlakyBackend("v1") as v1, FlakyBackend("v2") as v2:
        base = f"/v1 => /$/inet/127.1/{v1.port};/v2 => /$/inet/127.1/{v2.port};"
        namerd = await start_namerd(InMemoryDtabStore({"default": Dtab.read(base + "/svc/web => 9 * /v1 & 1 * /v2")}))
        interp = NamerdHttpInterpreter(NamerdHttpConfig(dst=f"/$/inet/127.0.0.1/{namerd.http_ports[0]}"))
        try:
            async with RouterHarness("", interpreter=interp) as h:
                stop = asyncio.Event()
                live: list[tuple[float, str, int]] = []
                task = asyncio.get_running_loop().create_task(sample(h.port, until=stop, concurrency=4, out=live))
                await asyncio.sleep(1.5)
                changed_at = time.monotonic()
                rc, out, err = await curl("-f", "-X", "PUT", "-H", "Content-Type: application/dtab",
                                          "--data-binary", base + "/svc/web => 1 * /v1 & 9 * /v2",
                                          f"{namerd.url}/api/1/dtabs/default")
                assert rc == 0, err
                await asyncio.sleep(2.5)
                stop.set()
                await task
        finally:
            await interp.close()
            await namerd.close()
    assert all(s == 200 for _, _, s in live)
    before = [b for t, b, _ in live if t < changed_at]
    assert before.count("v1") / len(before) > 0.85
    after = [b for t, b, _ in live if t >= changed_at + 1.0]
    assert abs(after.count("v2") / len(after) - 0.9) <= 0.03, len(after)
    post = [(t, b) for t, b, _ in live if t >= changed_at]
    shift = next(t for i, (t, _) in enumerate(post) if i >= 100 and
                 sum(1 for _, b in post[i - 100:i] if b == "v2") >= 70)
    assert shift - changed_at < 1.0, shift - changed_at
