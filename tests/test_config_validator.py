"""The generic config validator: types, bounds, paths and lines, kinds, unknown keys."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pytest

from namerouter.config import ConfigError, kind_of, loads


@dataclass
class Inner:
    port: int = field(default=80, metadata={"min": 1, "max": 65535})
    ip: str = "127.0.0.1"
    weight: float = field(default=1.0, metadata={"min": 0.0})


@dataclass
class PluginCfg:
    rootDir: str
    intervalMs: int = field(default=100, metadata={"min": 1})


class Plugin:
    """A plugin class found through the registry; it names its schema ``config_class``."""

    config_class = PluginCfg

    @classmethod
    def from_config(cls, config: PluginCfg, runtime: Any) -> "Plugin":
        return cls()


@dataclass
class ExperimentalCfg:
    x: int = 1


class ExperimentalPlugin:
    experimental = True
    config_class = ExperimentalCfg


REGISTRY = {
    "io.test.plugin": f"{__name__}:Plugin",
    "io.test.exp": f"{__name__}:ExperimentalPlugin",
    "io.test.broken": "no.such.module:Thing",
}


@dataclass
class A:
    kind: str = "a"
    a: int = 0


@dataclass
class B:
    kind: str = "b"
    b: str = ""


@dataclass
class Root:
    name: str
    servers: list[Inner] = field(default_factory=list, metadata={"min_items": 1})
    mode: Literal["fast", "slow"] = "fast"
    balancer: str = field(default="p2c", metadata={"choices": ("p2c", "ewma", "roundRobin")})
    enabled: bool = False
    limits: dict[str, int] = field(default_factory=dict)
    opaque: Optional[dict[str, Any]] = None
    items: list[Any] = field(default_factory=list, metadata={"plugins": REGISTRY})
    one: Union[A, B, None] = None
    either: Union[Inner, list[Inner], None] = None
    many: list[Any] = field(default_factory=list, metadata={
        "kinds": {"a": A, "b": B}, "single_or_list": True, "unsupported": {"z": "not here"}})
    ratio: Optional[float] = None


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        loads(Root, text)
    return [str(e) for e in exc.value.errors]


def test_valid_config_with_nested_values():
    v = loads(Root, """
name: x
servers:
- port: 8080
  ip: 10.0.0.1
- {port: "9090", weight: 2}
mode: slow
balancer: ewma
enabled: true
limits: {a: 1, b: 2}
opaque: {anything: [1, 2, {x: y}]}
""")
    r = v.config
    assert r.name == "x" and r.mode == "slow" and r.balancer == "ewma" and r.enabled is True
    assert r.servers == [Inner(8080, "10.0.0.1"), Inner(9090, "127.0.0.1", 2.0)]
    assert r.limits == {"a": 1, "b": 2}
    assert r.opaque == {"anything": [1, 2, {"x": "y"}]}
    assert type(r.opaque) is dict  # marks dropped from opaque values
    assert v.warnings == []


def test_error_names_key_path_and_line():
    errs = errors_of("""name: x
servers:
- port: 80
- ip: 1.2.3.4
  port: abc
""")
    assert errs == ["servers[1].port: expected an integer 1-65535, got 'abc' (line 5)"]


def test_several_errors_are_reported_together():
    errs = errors_of("""servers:
- port: 0
  weight: -1
mode: medium
balancer: ewmaa
enabled: maybe
ratio: fast
""")
    assert errs == [
        "name: required key is missing (line 1)",
        "servers[0].port: expected an integer 1-65535, got 0 (line 2)",
        "servers[0].weight: expected a number >= 0.0, got -1 (line 3)",
        "mode: expected one of fast, slow, got 'medium' (line 4)",
        "balancer: expected one of p2c, ewma, roundRobin, got 'ewmaa'; did you mean 'ewma'? (line 5)",
        "enabled: expected true or false, got 'maybe' (line 6)",
        "ratio: expected a number, got 'fast' (line 7)",
    ]


def test_unknown_keys_are_errors_with_hints():
    errs = errors_of("""name: x
servers:
- prot: 80
  colour: red
""")
    assert errs[0] == "servers[0].prot: unknown key; did you mean 'port'? (line 3)"
    assert errs[1] == "servers[0].colour: unknown key (known keys: ip, port, weight) (line 4)"


def test_wrong_container_types():
    errs = errors_of("""name: [1, 2]
servers: {port: 80}
limits: [1]
""")
    assert errs == [
        "name: expected a string, got a list (line 1)",
        "servers: expected a list, got a mapping (line 2)",
        "limits: expected a mapping, got a list (line 3)",
    ]


def test_min_items():
    assert errors_of("name: x\nservers: []\n") == ["servers: expected at least 1 item, got 0 (line 2)"]


def test_plain_scalars_keep_their_text_for_strings():
    v = loads(Root, "name: 127.10\nservers: [{ip: 127.1}]\n")
    assert v.config.name == "127.10"
    assert v.config.servers[0].ip == "127.1"


def test_plugins_dispatch_on_kind_through_the_registry():
    v = loads(Root, """name: x
servers: [{}]
items:
- kind: io.test.plugin
  rootDir: /tmp/disco
- kind: io.test.exp
  experimental: true
  x: 5
""")
    p, e = v.config.items
    assert isinstance(p, PluginCfg) and p.rootDir == "/tmp/disco" and p.intervalMs == 100
    assert kind_of(p) == "io.test.plugin"
    assert isinstance(e, ExperimentalCfg) and e.x == 5 and kind_of(e) == "io.test.exp"


def test_unknown_kind_lists_known_kinds():
    errs = errors_of("name: x\nservers: [{}]\nitems:\n- kind: io.test.plugn\n  rootDir: a\n")
    assert errs == ["items[0].kind: unknown kind 'io.test.plugn'; did you mean 'io.test.plugin'? "
                    "(known kinds: io.test.broken, io.test.exp, io.test.plugin) (line 4)"]


def test_plugin_errors_missing_kind_experimental_and_unloadable():
    errs = errors_of("""name: x
servers: [{}]
items:
- rootDir: a
- kind: io.test.exp
- kind: io.test.broken
- kind: io.test.plugin
  intervalMs: 0
""")
    assert errs[0].startswith("items[0]: required key 'kind' is missing (known kinds: io.test.broken")
    assert errs[1] == ("items[1]: kind io.test.exp is experimental and must be explicitly enabled "
                       "by setting 'experimental: true' (line 5)")
    assert errs[2].startswith("items[2].kind: kind io.test.broken could not be loaded: ModuleNotFoundError")
    assert errs[3] == "items[3]: required key is missing (line 7)".replace("items[3]", "items[3].rootDir")
    assert errs[4] == "items[3].intervalMs: expected an integer >= 1, got 0 (line 8)"


def test_union_of_kinded_dataclasses_and_single_or_list():
    v = loads(Root, "name: x\nservers: [{}]\none: {kind: b, b: hi}\nmany: {kind: a, a: 3}\n")
    assert v.config.one == B("b", "hi")
    assert v.config.many == [A("a", 3)]
    v = loads(Root, "name: x\nservers: [{}]\nmany: [{kind: a}, {kind: z, x: 1}, {kind: b}]\n")
    assert v.config.many == [A(), B()]
    assert [str(w) for w in v.warnings] == [
        "many[1]: kind z is not provided by namerouter and is ignored: not here (line 3)"]
    assert errors_of("name: x\nservers: [{}]\none: {kind: c}\n") == [
        "one.kind: unknown kind 'c' (known kinds: a, b) (line 3)"]


def test_union_of_item_or_list_reports_the_inner_error():
    v = loads(Root, "name: x\nservers: [{}]\neither: {port: 1}\n")
    assert v.config.either == Inner(1)
    v = loads(Root, "name: x\nservers: [{}]\neither: [{port: 1}, {port: 2}]\n")
    assert v.config.either == [Inner(1), Inner(2)]
    assert errors_of("name: x\nservers: [{}]\neither:\n- port: 1\n- port: x\n") == [
        "either[1].port: expected an integer 1-65535, got 'x' (line 5)"]


def test_null_means_default_for_fields_with_defaults():
    v = loads(Root, "name: x\nservers:\n- port:\n  ip: ~\n")
    assert v.config.servers == [Inner()]


def test_duplicate_keys_are_errors():
    assert errors_of("name: x\nservers: [{}]\nname: y\n") == [
        "name: duplicate key (the earlier value would be silently lost) (line 3)"]


def test_yaml_syntax_error_names_the_line():
    errs = errors_of("name: x\nservers:\n  - port: 1\n  bad indent: [\n")
    assert len(errs) == 1 and errs[0].startswith("invalid YAML: ") and "(line " in errs[0]


def test_json_is_accepted_with_lines():
    v = loads(Root, '{\n  "name": "x",\n  "servers": [{"port": 81}]\n}\n', "c.json")
    assert v.config.servers == [Inner(81)]
    errs = errors_of('{\n  "name": "x",\n  "servers": [\n    {"port": "http"}\n  ]\n}')
    assert errs == ["servers[0].port: expected an integer 1-65535, got 'http' (line 4)"]
    errs = errors_of('{"name": "x",\n "servers": [}')
    assert errs[0].startswith("invalid JSON: ") and errs[0].endswith("(line 2)")


def test_config_error_text_lists_every_error():
    with pytest.raises(ConfigError) as exc:
        loads(Root, "servers: [{port: 0}]\n", "my.yaml")
    text = str(exc.value)
    assert text.splitlines() == [
        "invalid config my.yaml: 2 errors",
        "  name: required key is missing (line 1)",
        "  servers[0].port: expected an integer 1-65535, got 0 (line 1)",
    ]


@dataclass
class Range:
    lo: int = 0
    hi: int = 10

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ValueError(f"lo ({self.lo}) must not exceed hi ({self.hi})")


@dataclass
class Top:
    range: Range = field(default_factory=Range)


def test_post_init_errors_are_reported_at_the_block():
    with pytest.raises(ConfigError) as exc:
        loads(Top, "range:\n  lo: 5\n  hi: 1\n")
    assert [str(e) for e in exc.value.errors] == ["range: lo (5) must not exceed hi (1) (line 2)"]
