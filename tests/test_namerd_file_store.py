"""io.namerouter.file: durable across restarts, atomic, single-opener, never truncates
a corrupt file."""
from __future__ import annotations

import json
import os

import pytest

from namerd.storage.base import DtabStoreError
from namerd.storage.file import FORMAT, FileDtabStore
from namerouter.dtab import Dtab

A = Dtab.read("/svc=>/#/io.l5d.fs")
B = Dtab.read("/svc=>/b")


async def test_data_and_versions_survive_restart(tmp_path):
    path = str(tmp_path / "state" / "dtabs.json")  # the directory is created
    s = FileDtabStore(path)
    await s.start()
    await s.create("default", A)
    _, v1 = await s.get("default")
    await s.update("default", B, v1)
    await s.create("gone", A)
    await s.delete("gone")
    _, v2 = await s.get("default")
    await s.close()

    s2 = FileDtabStore(path)
    await s2.start()
    try:
        assert await s2.list() == ["default"]
        assert await s2.get("default") == (B, v2)
        # Versions keep counting: a re-created namespace never reuses an old ETag.
        await s2.create("gone", A)
        _, v3 = await s2.get("gone")
        assert int.from_bytes(v3, "big") > int.from_bytes(v2, "big")
    finally:
        await s2.close()
    doc = json.loads(open(path).read())
    assert doc["format"] == FORMAT and doc["namespaces"]["default"]["dtab"] == "/svc=>/b"
    # Only the data file and its lock remain: temp files were renamed into place.
    assert sorted(os.listdir(os.path.dirname(path))) == ["dtabs.json", "dtabs.json.lock"]


@pytest.mark.parametrize("content", [
    b"{not json",
    b'{"format": "something-else", "counter": 1, "namespaces": {}}',
    b'{"format": "io.namerouter.file/1", "counter": 3, "namespaces": {"x": {"dtab": "/a=>", "version": 3}}}',
    b"",
])
async def test_corrupt_file_is_reported_and_left_untouched(tmp_path, content):
    path = tmp_path / "dtabs.json"
    path.write_bytes(content)
    s = FileDtabStore(str(path))
    with pytest.raises(DtabStoreError) as err:
        await s.start()
    assert str(path) in str(err.value) and "untouched" in str(err.value)
    assert path.read_bytes() == content
    # The lock was released: after the operator fixes the file, namerd starts.
    path.write_text(json.dumps({"format": FORMAT, "counter": 0, "namespaces": {}}))
    s2 = FileDtabStore(str(path))
    await s2.start()
    await s2.close()


async def test_a_second_opener_is_refused(tmp_path):
    path = str(tmp_path / "dtabs.json")
    s = FileDtabStore(path)
    await s.start()
    try:
        other = FileDtabStore(path)
        with pytest.raises(DtabStoreError, match="in use by another namerd"):
            await other.start()
    finally:
        await s.close()


async def test_a_failed_write_changes_nothing(tmp_path, monkeypatch):
    import errno

    import namerd.storage.file as filemod

    path = str(tmp_path / "dtabs.json")
    s = FileDtabStore(path)
    await s.start()
    await s.create("default", A)
    before = open(path, "rb").read()

    def full_disk(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(filemod.os, "fsync", full_disk)
    try:
        with pytest.raises(DtabStoreError, match="cannot write .*No space left"):
            await s.put("default", B)
        assert (await s.get("default")).dtab == A  # not visible either
    finally:
        monkeypatch.undo()
        await s.close()
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["dtabs.json", "dtabs.json.lock"]  # temp file removed
