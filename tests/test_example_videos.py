"""examples/videos end to end, as real processes: the three apps (videos-api FLAKY=true)
and ``python -m namerouter examples/videos/linkerd.yaml``.

Without the router the page breaks most of the time (6 fan-out calls to a service that
fails a third of them); through it every page renders, and the router's metrics show
the retries that made it so.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket


from tests.support.backends import curl

_RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "videos", "run.py")
_spec = importlib.util.spec_from_file_location("videos_example_run", _RUN)
run = importlib.util.module_from_spec(_spec)  # examples/videos/run.py, under a name of its own
_spec.loader.exec_module(run)  # type: ignore[union-attr]

PAGES = 30


def _free_run(n: int = 5) -> int:
    """A base port with ``n`` consecutive free ports after it."""
    for base in range(21000, 60000, 97):
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


async def _pages(port: int) -> dict[int, int]:
    codes: dict[int, int] = {}
    for _ in range(PAGES):
        rc, out, err = await curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/")
        assert rc == 0, err
        codes[int(out)] = codes.get(int(out), 0) + 1
    return codes


async def test_flaky_videos_api_breaks_the_page_without_the_router():
    base = _free_run()
    procs = run.start(base, flaky=True, router=False)
    try:
        codes = await _pages(base)
    finally:
        run.stop(procs)
    assert codes.get(502, 0) >= PAGES // 2, codes


async def test_the_page_is_clean_through_the_router():
    base = _free_run()
    procs = run.start(base, flaky=True, router=True)
    try:
        codes = await _pages(base)
        rc, out, err = await curl(f"http://127.0.0.1:{base + 4}/admin/metrics.json")
        metrics = json.loads(out)
        rc, prom, err = await curl(f"http://127.0.0.1:{base + 4}/admin/metrics/prometheus")
        rc, page, err = await curl(f"http://127.0.0.1:{base}/")
    finally:
        run.stop(procs)
    assert codes == {200: PAGES}, codes
    assert "Retry budgets explained" in page
    svc = "rt/videos/service/svc/videos-api/"
    assert metrics[svc + "retries/total"] > 0
    assert metrics[svc + "retries/budget_exhausted"] == 0
    # every page made 6 videos-api calls, all of which succeeded in the end
    assert metrics[svc + "success"] >= PAGES * 6
    assert 'rt:service:retries:total{rt="videos", service="svc/videos-api"}' in prom
