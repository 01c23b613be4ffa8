"""Dtab engine benchmark: parse time of a large dtab and offline bind latency.

    .venv/bin/python bench/dtab_bench.py

Prints medians next to the targets of issue 2 (parse 1,000 dentries < 50 ms; bind a
name needing 10 rewrites through a 100-dentry dtab < 200 µs). Figures, not a test:
they depend on the machine and its load.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path as FsPath

sys.path.insert(0, str(FsPath(__file__).resolve().parent.parent))

from namerouter.dtab import Dtab, Path  # noqa: E402
from namerouter.dtab.offline import bind  # noqa: E402

PARSE_TARGET_MS = 50.0
BIND_TARGET_US = 200.0


def big_dtab_text(n: int = 1000) -> str:
    """A realistic router dtab: namer aliases, per-service rules, canaries, fallbacks."""
    lines = ["# generated", "/fs => /#/io.l5d.fs ;", "/k8s => /#/io.l5d.k8s/prod/http ;",
             "/svc => /k8s | /fs ;"]
    i = 0
    while len(lines) - 1 < n:
        kind = i % 4
        if kind == 0:
            lines.append(f"/svc/service-{i} => /k8s/service-{i} | /fs/service-{i} ;")
        elif kind == 1:
            lines.append(f"/svc/service-{i}/* => 9 * /k8s/service-{i}-v1 & 1 * /k8s/service-{i}-v2 ;")
        elif kind == 2:
            lines.append(f"/svc/service-{i} => /$/inet/10.0.{i % 256}.{i // 256}/{8000 + i % 1000} ;  # pinned")
        else:
            lines.append(f"/host/service-{i}.example.com => /svc/service-{i} ;")
        i += 1
    return "\n".join(lines[: n + 1]) + "\n"


def bench_dtab(n: int, same_first_label: bool) -> tuple[Dtab, Path]:
    """n dentries of which 10 form the chain /ns0/x -> /ns1/x -> ... -> /$/inet/..."""
    chain = []
    for k in range(9):
        a = f"/svc/step{k}" if same_first_label else f"/ns{k}/web"
        b = f"/svc/step{k + 1}" if same_first_label else f"/ns{k + 1}/web"
        chain.append(f"{a} => {b}")
    last = "/svc/step9" if same_first_label else "/ns9/web"
    chain.append(f"{last} => /$/inet/127.0.0.1/8080")
    filler = [f"/svc/filler{i}/* => /svc/other{i}" if same_first_label else f"/other{i}/* => /x{i}"
              for i in range(n - len(chain))]
    # Interleave so the chain's entries are spread through the table.
    lines = []
    step = max(1, len(filler) // len(chain))
    for k, c in enumerate(chain):
        lines += filler[k * step:(k + 1) * step] + [c]
    lines += filler[len(chain) * step:]
    start = Path.read("/svc/step0/a" if same_first_label else "/ns0/web/a")
    return Dtab.read(";".join(lines)), start


def median_time(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> int:
    text = big_dtab_text(1000)
    dtab = Dtab.read(text)
    assert len(dtab) == 1000, len(dtab)
    Dtab.read(text)  # warm up
    parse_ms = median_time(lambda: Dtab.read(text), 11) * 1e3
    print(f"parse 1,000-dentry dtab ({len(text):,} chars): median {parse_ms:6.1f} ms "
          f"(target < {PARSE_TARGET_MS:.0f} ms) {'OK' if parse_ms < PARSE_TARGET_MS else 'SLOW'}")

    for same, label in ((False, "mixed first labels"), (True, "all under /svc (worst case)")):
        d, start = bench_dtab(100, same)
        result = str(bind(d, start))
        assert result == "/$/inet/127.0.0.1/8080/a", result
        for _ in range(200):
            bind(d, start)
        us = median_time(lambda: bind(d, start), 3000) * 1e6
        print(f"offline bind, 100 dentries, 10 rewrites, {label}: median {us:6.1f} µs "
              f"(target < {BIND_TARGET_US:.0f} µs) {'OK' if us < BIND_TARGET_US else 'SLOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
