"""Linkerd 1.7's example configs that use namerd's mesh/thrift interfaces and the
io.l5d.mesh / io.l5d.namerd interpreters load with no "not provided" warning
(copies in tests/linkerd_examples/, see its README for origin and licence)."""
from __future__ import annotations

import os

import pytest

from namerd.config import load_namerd
from namerouter.cli_run import main as namerouter_main

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "linkerd_examples")


@pytest.mark.parametrize("name", ["namerd.yaml", "namerd-mesh.yaml", "admin.yaml"])
def test_router_example_checks(name, capsys):
    rc = namerouter_main(["--check", os.path.join(EXAMPLES, "linkerd", name)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    # admin.yaml's io.l5d.recentRequests telemeter is warned about; nothing on interpreters
    assert "interpreter" not in err and "io.l5d.mesh" not in err and "io.l5d.namerd" not in err, err


@pytest.mark.parametrize("name,kinds", [
    ("mesh.yaml", ["io.l5d.httpController", "io.l5d.mesh"]),
    ("all.yaml", ["io.l5d.httpController", "io.l5d.mesh", "io.l5d.thriftNameInterpreter"]),
    ("basic.yaml", ["io.l5d.thriftNameInterpreter", "io.l5d.httpController"]),
])
def test_namerd_example_serves_every_interface(name, kinds):
    validated = load_namerd(os.path.join(EXAMPLES, "namerd", name))
    assert [i.kind for i in validated.config.interfaces] == kinds
    for w in validated.warnings:  # basic.yaml's io.l5d.influxdb telemeter is the only one
        assert "telemetry" in str(w) and "interfaces" not in str(w), str(w)
    defaults = {"io.l5d.httpController": 4180, "io.l5d.mesh": 4321, "io.l5d.thriftNameInterpreter": 4100}
    assert [i.port for i in validated.config.interfaces] == [defaults[k] for k in kinds]
