"""The top-level router config (Linkerd's config.yaml): seed config, defaults, cross-field checks."""
from __future__ import annotations

import json
from typing import Any

import pytest

from namerouter.config import ConfigError
from namerouter.config.schema import LinkerConfig, PrometheusConfig, load_linker, loads_linker

SEED = """admin:
  port: 9990
  ip: 0.0.0.0
routers:
- protocol: http
  label: outging
  dtab: |
    /svc/pong => /$/inet/127.1/8002;
  servers:
  - port: 4001
    ip: 0.0.0.0
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        loads_linker(text)
    return [str(e) for e in exc.value.errors]


def test_issue_seed_config_loads_unmodified():
    v = loads_linker(SEED)
    cfg = v.config
    assert isinstance(cfg, LinkerConfig)
    assert (cfg.admin.ip, cfg.admin.port, cfg.admin.shutdownGraceMs) == ("0.0.0.0", 9990, 10000)
    (r,) = cfg.routers
    assert r.label == "outging" and r.protocol == "http"
    assert r.dtab.strip() == "/svc/pong => /$/inet/127.1/8002;"
    assert [(s.ip, s.port) for s in r.servers] == [("0.0.0.0", 4001)]
    assert cfg.namers == [] and cfg.telemetry == [] and cfg.interpreters == [None]
    assert v.warnings == []
    assert v.raw["routers"][0]["label"] == "outging"


def test_same_config_as_json_and_from_a_file(tmp_path):
    doc = {"routers": [{"protocol": "http", "label": "outging",
                        "dtab": "/svc/pong => /$/inet/127.1/8002;", "servers": [{"port": 4001}]}]}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(doc, indent=2))
    cfg = load_linker(str(p)).config
    assert cfg.routers[0].servers[0].port == 4001
    assert cfg.admin.ip == "127.0.0.1" and cfg.admin.port == 9990  # Linkerd defaults


def test_defaults_follow_linkerd():
    cfg = loads_linker("routers:\n- protocol: http\n").config
    r = cfg.routers[0]
    assert r.effective_label == "http" and r.dstPrefix == "/svc" and r.bindingTimeoutMs == 10000
    assert [(s.ip, s.port) for s in r.servers] == [("127.0.0.1", 4140)]


def test_seed_config_error_example_names_path_and_line():
    bad = SEED.replace("port: 4001", "port: abc")
    assert errors(bad) == ["routers[0].servers[0].port: expected an integer 1-65535, got 'abc' (line 10)"]


def test_routers_are_required():
    assert errors("admin:\n  port: 9990\n") == ["routers: required key is missing (line 1)"]
    assert errors("routers: []\n") == ["routers: expected at least 1 item, got 0 (line 1)"]
    assert errors("- a\n- b\n") == ["expected a mapping with a 'routers' key at the top level (line 1)"]


def test_unknown_top_level_key_and_typo_in_router():
    errs = errors("routers:\n- protocol: http\n  lable: x\n  servers:\n  - port: 1\n    clearContxt: true\nadmn: {}\n")
    assert errs == [
        "admn: unknown key; did you mean 'admin'? (line 7)",
        "routers[0].lable: unknown key; did you mean 'label'? (line 3)",
        "routers[0].servers[0].clearContxt: unknown key; did you mean 'clearContext'? (line 6)",
    ]


def test_invalid_dtab_is_reported_with_its_line():
    errs = errors("routers:\n- protocol: http\n  dtab: |\n    /svc => ;\n")
    assert len(errs) == 1
    assert errs[0].startswith("routers[0].dtab: invalid dtab: ") and errs[0].endswith("(line 3)")


def test_duplicate_labels_and_ports_are_errors():
    errs = errors("""routers:
- protocol: http
  servers: [{port: 4140}]
- protocol: http
  servers:
  - port: 4140
""")
    assert errs == [
        "routers[1].label: duplicate router label 'http' (also routers[0]); give each router its own label (line 4)",
        "routers[1].servers[0].port: port 4140 on 127.0.0.1 is already used by routers[0].servers[0] (line 6)",
    ]


def test_unknown_namer_kind_lists_known_kinds():
    errs = errors("namers:\n- kind: io.l5d.fss\n  rootDir: disco\nrouters:\n- protocol: http\n")
    from namerouter import plugins

    assert errs == ["namers[0].kind: unknown kind 'io.l5d.fss'; did you mean 'io.l5d.fs'? "
                    f"(known kinds: {', '.join(sorted(plugins.NAMERS))}) (line 2)"]


def test_telemetry_prometheus_accepted_and_unprovided_kinds_warn():
    v = loads_linker("""routers:
- protocol: http
telemetry:
- kind: io.l5d.prometheus
  path: /metrics
  prefix: linkerd_
- kind: io.l5d.commonMetrics
usage:
  orgId: my-org
  enabled: false
""")
    prom = v.config.prometheus()
    assert isinstance(prom, PrometheusConfig) and prom.path == "/metrics" and prom.prefix == "linkerd_"
    assert len(v.config.telemetry) == 1
    assert [str(w) for w in v.warnings] == [
        "telemetry[1]: kind io.l5d.commonMetrics is not provided by namerouter and is ignored: "
        "/admin/metrics.json is always served (line 7)"]
    assert errors("routers:\n- protocol: http\ntelemetry:\n- kind: io.l5d.prometheus\n  path: metrics\n") == [
        "telemetry[0]: path: must start with '/', got 'metrics' (line 4)"]
    assert errors("routers:\n- protocol: http\ntelemetry:\n- kind: io.l5d.graphite\n") == [
        "telemetry[0].kind: unknown kind 'io.l5d.graphite' (known kinds: io.l5d.influxdb, io.l5d.prometheus, "
        "io.l5d.recentRequests, io.l5d.statsd, io.l5d.tracelog, io.l5d.zipkin, io.namerouter.otlp, io.zipkin.http) "
        "(line 4)"]


def test_identifier_single_or_list_and_admin_security():
    cfg = loads_linker("""admin:
  security:
    pathBlacklist: ["^/admin/shutdown$"]
routers:
- protocol: http
  identifier:
  - kind: io.l5d.path
    segments: 2
    consume: true
  - kind: io.l5d.header.token
- protocol: http
  label: two
  identifier: {kind: io.l5d.static, path: /web}
  servers: [{port: 4141}]
""").config
    assert cfg.admin.security.pathBlacklist == ["^/admin/shutdown$"]
    a, b = cfg.routers
    assert [i.kind for i in a.identifiers()] == ["io.l5d.path", "io.l5d.header.token"]
    assert a.identifiers()[0].segments == 2
    assert b.identifiers()[0].path == "/web"


def test_interpreter_unknown_kind_is_an_error():
    errs = errors("routers:\n- protocol: http\n  interpreter:\n    kind: io.l5d.nosuch\n")
    assert len(errs) == 1
    assert errs[0].startswith("routers[0].interpreter.kind: unknown kind 'io.l5d.nosuch' (known kinds: default, ")
    assert "io.l5d.namerd.http" in errs[0] and errs[0].endswith(") (line 4)")


def test_several_errors_across_sections():
    errs = errors("""admin:
  port: 99999
routers:
- protocol: thrift
  bindingTimeoutMs: soon
""")
    # A thrift router is refused in one line (its other keys are moot); the rest is still checked.
    assert errs == [
        "routers[0].protocol: 'thrift': the thrift and mux protocols are not supported (namerouter routes HTTP) "
        "(line 4)",
        "admin.port: expected an integer 0-65535, got 99999 (line 2)",
    ]


@pytest.mark.parametrize("registry", ["NAMERS", "INTERPRETERS", "TRANSFORMERS", "ANNOUNCERS", "TELEMETERS",
                                      "NAMERD_STORAGE"])
def test_every_plugin_names_its_config_class_config_class(registry):
    """One name for a plugin's config dataclass: ``config_class`` (what the validator reads);
    run-time code then gets the validated object, never the plain mapping."""
    import dataclasses

    from namerouter import plugins
    from namerouter.config.validate import config_class_of

    for kind in getattr(plugins, registry):
        cls = plugins.load(getattr(plugins, registry), kind)
        assert dataclasses.is_dataclass(cls.config_class), (registry, kind)
        assert config_class_of(cls) is cls.config_class
        assert not hasattr(cls, "Config"), f"{registry} {kind}: use config_class, not Config"


def test_a_plugin_without_config_class_is_an_error_not_a_plain_mapping(monkeypatch):
    from namerouter import plugins
    from namerouter.config.validate import Validator

    class NoSchema:
        @classmethod
        def from_config(cls, config, runtime=None):
            return cls()

    monkeypatch.setattr(plugins, "load", lambda registry, kind: NoSchema)
    v = Validator()
    v.convert(list[Any], [{"kind": "x"}], "namers", 3, {"plugins": {"x": "m:NoSchema"}}, None)
    assert [str(e) for e in v.errors] == [
        "namers[0].kind: kind x could not be loaded: TypeError: plugin "
        "'test_a_plugin_without_config_class_is_an_error_not_a_plain_mapping.<locals>.NoSchema' "
        "declares no config_class dataclass (line 3)"]
