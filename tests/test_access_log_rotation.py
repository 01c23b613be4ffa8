"""Access log rotation (``httpAccessLogRollPolicy``/``httpAccessLogRotateCount`` and the
h2 router's ``h2AccessLog…`` pair), through real routers: requests are logged, the log
rolls over by size or time at its flush, old files beyond the count are removed."""
from __future__ import annotations

import os

import pytest

from namerouter.config.schema import loads_linker
from namerouter.proxy.accesslog import RollPolicy, parse_roll_policy
from tests.support.backends import Backend, RouterHarness, get, request
from tests.support.h2 import H2Backend, H2Harness, curl_h2


def test_linkerds_roll_policies_parse():
    assert parse_roll_policy("never").never and parse_roll_policy("Never").never
    assert parse_roll_policy("hourly") == RollPolicy(when="H")
    assert parse_roll_policy("Daily") == RollPolicy(when="midnight")
    assert parse_roll_policy("weekly(1)") == RollPolicy(when="W6")  # Sunday
    assert parse_roll_policy("Weekly(2)") == RollPolicy(when="W0")  # Monday
    assert parse_roll_policy("3.megabytes") == RollPolicy(max_bytes=3 << 20)
    assert parse_roll_policy("1.gigabyte") == RollPolicy(max_bytes=1 << 30)
    for bad in ("sometimes", "weekly(8)", "3.parsecs", "0.bytes"):
        with pytest.raises(ValueError, match="is not a roll policy"):
            parse_roll_policy(bad)


def test_bad_values_are_config_errors_at_their_key():
    base = "routers:\n- protocol: http\n  httpAccessLog: /tmp/x.log\n"
    with pytest.raises(Exception, match=r"httpAccessLogRollPolicy.*not a roll policy"):
        loads_linker(base + "  httpAccessLogRollPolicy: fortnightly\n  servers: [{port: 4140}]\n")
    with pytest.raises(Exception, match=r"httpAccessLogRotateCount.*keep no rotated file"):
        loads_linker(base + "  httpAccessLogRotateCount: 0\n  servers: [{port: 4140}]\n")


async def _fill(h, n: int = 15) -> None:
    for _ in range(n):
        assert (await request(h.port, get("/pong"))).status == 200


async def test_size_rotation_keeps_rotate_count_files(tmp_path):
    log = tmp_path / "access.log"
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", httpAccessLog=str(log),
                                                   httpAccessLogRollPolicy="1.kilobyte",
                                                   httpAccessLogRotateCount=2) as h:
        for _ in range(4):
            await _fill(h)  # > 1 KB of lines
            h.router.core.access_log.flush()  # the once-a-second flush, now
        await _fill(h, 1)
    names = sorted(os.listdir(tmp_path))
    assert names == ["access.log", "access.log.1", "access.log.2"], names
    for name in ("access.log.1", "access.log.2"):
        lines = (tmp_path / name).read_text().splitlines()
        assert len(lines) == 15 and all('"GET /pong HTTP/1.1" 200 4' in ln for ln in lines)
    assert len(log.read_text().splitlines()) == 1


async def test_time_rotation_rolls_when_due_and_keeps_all_by_default(tmp_path):
    log = tmp_path / "access.log"
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", httpAccessLog=str(log),
                                                   httpAccessLogRollPolicy="hourly") as h:
        alog = h.router.core.access_log
        for _ in range(3):
            await _fill(h, 2)
            alog.flush()
            assert alog.rotator is not None and alog.rotator.backupCount == 0  # -1: keep all
            alog.rotator.rolloverAt = 0  # the hour is over
            alog.flush()
            # (the handler names rotated files by the hour; same hour: one name, renamed over)
        await _fill(h, 1)
    rotated = [n for n in os.listdir(tmp_path) if n.startswith("access.log.")]
    assert rotated, os.listdir(tmp_path)
    assert len(log.read_text().splitlines()) == 1


async def test_h2_access_log_rotates_too(tmp_path):
    log = tmp_path / "h2.log"
    async with H2Backend("b1") as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}", h2AccessLog=str(log),
                                               h2AccessLogRollPolicy="1.kilobyte", h2AccessLogRotateCount=1) as h:
        for _ in range(2):
            for _ in range(12):
                rc, _, err = await curl_h2("-H", "Host: web", f"http://127.0.0.1:{h.port}/echo")
                assert rc == 0, err
            h.router.core.access_log.flush()
    assert sorted(os.listdir(tmp_path)) == ["h2.log", "h2.log.1"]
    assert (tmp_path / "h2.log.1").read_text().count("/echo") == 12
