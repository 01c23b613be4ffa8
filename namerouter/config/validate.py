"""Validate parsed config values into the dataclasses each component declares.

Components own their schema: a dataclass whose field names are Linkerd's camelCase keys,
with type hints, defaults and ``field(metadata=...)``. This module knows no component;
it walks the type hints. Supported hints: ``int``, ``float``, ``str``, ``bool``,
``Any``/``dict`` (opaque, passed through as plain values), ``list[X]``, ``dict[str, X]``,
``Optional[X]``, ``Literal[...]``, nested dataclasses, and unions of dataclasses that
have a ``kind`` field (dispatched on it).

Field metadata keys (all optional):

``min``, ``max``       numeric bounds (inclusive)
``choices``            allowed values (for a list: allowed items)
``min_items``          shortest allowed list
``key``                YAML key when it differs from the Python name (e.g. ``for``)
``check``              ``fn(value)`` raising ``ValueError`` with a message for bad values
                       (``__post_init__`` may raise one with a ``config_key`` attribute:
                       the error is then reported at that key below the dataclass)
``plugins``            kind-dispatch: a registry (``kind -> "module:Class"``) or the name
                       of one in :mod:`namerouter.plugins` (``"NAMERS"``). The class's
                       config dataclass is its ``config_class`` attribute.
``kinds``              kind-dispatch over ``{kind: dataclass}`` given directly
``default_kind``       kind used when an item has no ``kind`` key
``kind_key``           the key that names the kind instead of ``kind`` (a router's ``protocol``)
``single_or_list``     a list field that also accepts one item (Linkerd's ``identifier``)
``unsupported``        ``{kind: reason}``: kinds Linkerd has and we don't; they produce a
                       warning and are dropped instead of failing the whole config
``doc``                free text for humans

Every problem is collected (several errors are reported together) as a ConfigIssue with
the key path and line, e.g. ``routers[0].servers[0].port: expected an integer 1-65535,
got 'abc' (line 9)``. Unknown keys are errors, with a "did you mean" hint when close.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import types
import typing
from typing import Any, Callable, Generic, Optional, TypeVar, Union

from .. import plugins as plugin_registry
from ..plugins import kind_of as kind_of
from .loader import ConfigError, ConfigIssue, MarkedDict, MarkedList, parse_text, read_source, to_plain

T = TypeVar("T")
#: a field's ``metadata`` (see the module docstring for the keys)
Meta = dict[str, Any]

_INVALID = object()  # a value that failed validation (an error was recorded)
_DROP = object()  # an item to leave out (an unsupported plugin kind, with a warning)

#: keys every kind-dispatched item may carry even if its dataclass doesn't declare them
_PLUGIN_COMMON_KEYS = ("kind", "experimental")


@dataclasses.dataclass
class Validated(Generic[T]):
    """A validated config: the dataclass tree, the warnings, and the plain input."""

    config: T
    warnings: list[ConfigIssue]
    raw: Any


def config_class_of(cls: Any) -> type:
    """The config dataclass a plugin class declares as its ``config_class`` (every plugin
    kind has one: run-time code gets a validated object, never the plain mapping)."""
    c = getattr(cls, "config_class", None)
    if not (isinstance(c, type) and dataclasses.is_dataclass(c)):
        raise TypeError(f"plugin {getattr(cls, '__qualname__', cls)!r} declares no config_class dataclass")
    return c


def _show(value: Any) -> str:
    """A value as the user wrote it, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if "'" not in value else '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _range_text(meta: Meta) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f" {lo}-{hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _hint(word: str, candidates: typing.Iterable[str]) -> str:
    """"; did you mean 'x'?" for a close candidate. A shared dotted namespace
    (``io.l5d.``) is ignored, so ``io.l5d.mesh`` is not "close" to ``io.l5d.fs``."""
    best, best_ratio = None, 0.75
    for c in candidates:
        common = os.path.commonprefix([word, c])
        cut = common.rfind(".") + 1
        ratio = difflib.SequenceMatcher(None, word[cut:], c[cut:]).ratio()
        if ratio >= best_ratio and (best is None or ratio > best_ratio):
            best, best_ratio = c, ratio
    return f"; did you mean '{best}'?" if best else ""


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


class Validator:
    """One validation run; collects errors and warnings instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []

    def error(self, path: str, message: str, line: Optional[int]) -> Any:
        self.errors.append(ConfigIssue(path, message, line))
        return _INVALID

    def warn(self, path: str, message: str, line: Optional[int]) -> None:
        self.warnings.append(ConfigIssue(path, message, line))

    # -- dispatch on the type hint ---------------------------------------------------

    def convert(self, tp: Any, value: Any, path: str, line: Optional[int],
                meta: Optional[Meta] = None, raw: Optional[str] = None) -> Any:
        meta = meta or {}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)

        if "plugins" in meta or "kinds" in meta:
            if origin is list:
                return self._list(args[0] if args else Any, value, path, line, meta)
            if value is None and (tp is Any or _is_optional(tp)):
                return None
            return self._plugin(value, path, line, meta)
        if tp is Any or tp is object:
            return to_plain(value)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1:
                return self.convert(rest[0], value, path, line, meta, raw)
            if all(dataclasses.is_dataclass(a) for a in rest):
                return self._plugin(value, path, line, {**meta, "kinds": _kinds_of(rest)})
            shaped = [a for a in rest if _shape(a) == _shape_of(value)]
            if len(shaped) == 1:  # e.g. Union[X, list[X]]: the value's shape decides
                return self.convert(shaped[0], value, path, line, meta, raw)
            for a in rest:  # e.g. Union[int, str]: first that fits, errors discarded
                sub = Validator()
                out = sub.convert(a, value, path, line, meta, raw)
                if not sub.errors:
                    self.warnings += sub.warnings
                    return out
            names = " or ".join(_type_name(a) for a in rest)
            return self.error(path, f"expected {names}, got {_show(value)}", line)
        if origin is typing.Literal:
            return self._choice(value, list(args), path, line)
        if origin is list or tp is list:
            return self._list(args[0] if args else Any, value, path, line, meta)
        if origin is dict or tp is dict:
            if not args:
                if not isinstance(value, dict):
                    return self.error(path, f"expected a mapping, got {_show(value)}", line)
                return to_plain(value)
            return self._dict(args[1], value, path, line, meta)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.dataclass(tp, value, path, line)
        if tp is bool:
            return self._bool(value, path, line)
        if tp is int:
            return self._number(int, value, path, line, meta)
        if tp is float:
            return self._number(float, value, path, line, meta)
        if tp is str:
            return self._str(value, path, line, meta, raw)
        return self.error(path, f"internal: unsupported type {tp!r} in the schema", line)

    # -- scalars ---------------------------------------------------------------------

    def _choice(self, value: Any, choices: list[Any], path: str, line: Optional[int]) -> Any:
        if value in choices and not (isinstance(value, bool) and not any(c is value for c in choices)):
            return value
        shown = ", ".join(str(c) for c in choices)
        hint = _hint(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        return self.error(path, f"expected one of {shown}, got {_show(value)}{hint}", line)

    def _bool(self, value: Any, path: str, line: Optional[int]) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return self.error(path, f"expected true or false, got {_show(value)}", line)

    def _number(self, kind: type, value: Any, path: str, line: Optional[int], meta: Meta) -> Any:
        what = "an integer" if kind is int else "a number"
        expected = f"expected {what}{_range_text(meta)}, got {_show(value)}"
        v: Any = value
        if isinstance(v, str):  # Jackson accepts "4140" for an int; so do we
            try:
                v = kind(v.strip())
            except ValueError:
                return self.error(path, expected, line)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return self.error(path, expected, line)
        if kind is int:
            if isinstance(v, float):
                if not v.is_integer():
                    return self.error(path, expected, line)
                v = int(v)
        else:
            v = float(v)
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return self.error(path, expected, line)
        if "choices" in meta:
            return self._choice(v, list(meta["choices"]), path, line)
        return self._check(v, path, line, meta)

    def _str(self, value: Any, path: str, line: Optional[int], meta: Meta, raw: Optional[str]) -> Any:
        if isinstance(value, str):
            v = value
        elif raw is not None and isinstance(value, (int, float, bool)):
            v = raw  # `ip: 127.1` is the text 127.1, not the float 127.1
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            v = str(value)
        else:
            return self.error(path, f"expected a string, got {_show(value)}", line)
        if "choices" in meta:
            return self._choice(v, list(meta["choices"]), path, line)
        return self._check(v, path, line, meta)

    def _check(self, v: Any, path: str, line: Optional[int], meta: Meta) -> Any:
        check: Optional[Callable[[Any], Any]] = meta.get("check")
        if check is None:
            return v
        try:
            out = check(v)
        except (ValueError, TypeError) as e:
            return self.error(path, str(e), line)
        except Exception as e:  # e.g. DtabSyntaxError: still the user's mistake
            return self.error(path, f"{type(e).__name__}: {e}", line)
        return v if out is None else out

    # -- containers ------------------------------------------------------------------

    def _list(self, item_tp: Any, value: Any, path: str, line: Optional[int], meta: Meta) -> Any:
        if not isinstance(value, list):
            if meta.get("single_or_list") and value is not None:
                value = [value]
                lines: list[Optional[int]] = [line]
                raws: dict[int, str] = {}
            else:
                return self.error(path, f"expected a list, got {_show(value)}", line)
        else:
            lines = value.lines if isinstance(value, MarkedList) else [line] * len(value)
            raws = value.raw if isinstance(value, MarkedList) else {}
        item_meta = {k: v for k, v in meta.items() if k not in ("min_items", "single_or_list")}
        out = []
        ok = True
        for i, item in enumerate(value):
            conv = self.convert(item_tp, item, f"{path}[{i}]", lines[i] or line, item_meta, raws.get(i))
            if conv is _INVALID:
                ok = False
            elif conv is not _DROP:
                out.append(conv)
        min_items = meta.get("min_items")
        if min_items is not None and len(value) < min_items:
            self.error(path, f"expected at least {min_items} item{'s' if min_items != 1 else ''}, got {len(value)}", line)
            ok = False
        return out if ok else _INVALID

    def _dict(self, value_tp: Any, value: Any, path: str, line: Optional[int], meta: Meta) -> Any:
        if not isinstance(value, dict):
            return self.error(path, f"expected a mapping, got {_show(value)}", line)
        lines = value.lines if isinstance(value, MarkedDict) else {}
        raws = value.raw if isinstance(value, MarkedDict) else {}
        out: dict[str, Any] = {}
        ok = True
        for k, v in value.items():
            conv = self.convert(value_tp, v, _join(path, k), lines.get(k, line), meta, raws.get(k))
            if conv is _INVALID:
                ok = False
            else:
                out[str(k)] = conv
        return out if ok else _INVALID

    def dataclass(self, cls: type, value: Any, path: str, line: Optional[int],
                  extra_keys: tuple[str, ...] = ()) -> Any:
        """Build ``cls`` from a mapping; every key must be a field (or in extra_keys)."""
        if value is None:
            value = MarkedDict()  # `admin:` with nothing under it = all defaults
            value.line = line
        if not isinstance(value, dict):
            return self.error(path, f"expected a mapping, got {_show(value)}", line)
        lines = value.lines if isinstance(value, MarkedDict) else {}
        key_lines = value.key_lines if isinstance(value, MarkedDict) else {}
        raws = value.raw if isinstance(value, MarkedDict) else {}
        here = getattr(value, "line", None) or line
        hints = _hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        by_key = {f.metadata.get("key", f.name): f for f in fields}
        kwargs: dict[str, Any] = {}
        ok = True
        for key in value:
            if key not in by_key and key not in extra_keys:
                known = sorted(by_key)
                hint = _hint(str(key), known)
                detail = hint if hint else f" (known keys: {', '.join(known)})" if known else " (no keys allowed here)"
                self.error(_join(path, key), f"unknown key{detail}", key_lines.get(key, here))
                ok = False
        for key, f in by_key.items():
            fpath = _join(path, key)
            if key not in value or (value[key] is None and _has_default(f) and not _is_optional(hints[f.name])):
                if not _has_default(f):
                    self.error(fpath, "required key is missing", here)
                    ok = False
                continue
            conv = self.convert(hints[f.name], value[key], fpath, lines.get(key, here),
                                dict(f.metadata), raws.get(key))
            if conv is _INVALID:
                ok = False
            elif conv is _DROP:
                continue
            else:
                kwargs[f.name] = conv
        if not ok:
            return _INVALID
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as e:  # __post_init__ cross-field checks
            # An error may name the key at fault (``config_key``, e.g. TLS's "keyPath").
            key = getattr(e, "config_key", None)
            if isinstance(key, str) and key:
                return self.error(_join(path, key), str(e), lines.get(key.split(".")[0].split("[")[0], here))
            return self.error(path, str(e), here)

    # -- kind-dispatched plugins -----------------------------------------------------

    def _plugin(self, value: Any, path: str, line: Optional[int], meta: Meta) -> Any:
        registry = meta.get("plugins")
        if isinstance(registry, str):
            registry = getattr(plugin_registry, registry)
        kinds: dict[str, Any] = dict(meta.get("kinds") or {})
        known = sorted(set(kinds) | set(registry or {}))
        unsupported: dict[str, str] = dict(meta.get("unsupported") or {})
        if not isinstance(value, dict):
            return self.error(path, f"expected a mapping with a 'kind' key (one of {', '.join(known)}), "
                                    f"got {_show(value)}", line)
        lines = value.lines if isinstance(value, MarkedDict) else {}
        here = getattr(value, "line", None) or line
        key: str = meta.get("kind_key", "kind")
        kind = value.get(key, meta.get("default_kind"))
        if kind is None:
            return self.error(path, f"required key '{key}' is missing (known kinds: {', '.join(known)})", here)
        kline = lines.get(key, here)
        if not isinstance(kind, str):
            return self.error(_join(path, key), f"expected a string, got {_show(kind)}", kline)
        if kind in unsupported:
            self.warn(path, f"kind {kind} is not provided by namerouter and is ignored: {unsupported[kind]}", kline)
            return _DROP
        if kind in kinds:
            cls: Any = kinds[kind]
            schema: type = cls
        elif registry and kind in registry:
            try:
                cls = plugin_registry.load(registry, kind)
                schema = config_class_of(cls)
            except Exception as e:
                return self.error(_join(path, "kind"), f"kind {kind} could not be loaded: "
                                  f"{type(e).__name__}: {e}", kline)
        elif key != "kind":
            return self.error(_join(path, key), f"expected one of {', '.join(known)}, got {_show(kind)}", kline)
        else:
            return self.error(_join(path, "kind"), f"unknown kind '{kind}'{_hint(kind, known)} "
                              f"(known kinds: {', '.join(known)})", kline)
        if getattr(cls, "experimental", False) is True and value.get("experimental") is not True:
            self.error(path, f"kind {kind} is experimental and must be explicitly enabled "
                             f"by setting 'experimental: true'", here)
            return _INVALID
        out = self.dataclass(schema, value, path, line, extra_keys=_PLUGIN_COMMON_KEYS if key == "kind" else ())
        if out is _INVALID:
            return out
        names = {f.name for f in dataclasses.fields(schema)}
        if key in names:
            object.__setattr__(out, key, kind)
        else:
            try:
                object.__setattr__(out, "_kind", kind)
            except (AttributeError, TypeError):  # slots: kind_of() falls back to None
                pass
        return out


def _kinds_of(classes: list[type]) -> dict[str, type]:
    out = {}
    for c in classes:
        for f in dataclasses.fields(c):
            if f.name == "kind" and isinstance(f.default, str):
                out[f.default] = c
    return out


def _shape(tp: Any) -> str:
    origin = typing.get_origin(tp) or tp
    if origin is list:
        return "list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    return "scalar"


def _shape_of(value: Any) -> str:
    return "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else "scalar"


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls)
    return h


def validate(
    schema: type[T],
    data: Any,
    source: str = "",
    checks: Optional[Callable[["Validator", T, Any], None]] = None,
    expected: Optional[str] = None,
) -> Validated[T]:
    """Validate parsed ``data`` into ``schema``; raise ConfigError listing every problem.

    ``checks(validator, config, data)`` adds whole-config checks (they run only when the
    schema itself validated); ``expected`` is the message for a top level that is not a
    mapping (e.g. "expected a mapping with a 'routers' key at the top level").
    """
    v = Validator()
    if expected is not None and not isinstance(data, dict):
        raise ConfigError([ConfigIssue("", expected, getattr(data, "line", 1))], source)
    out = v.dataclass(schema, data, "", getattr(data, "line", None) or 1)
    if checks is not None and out is not _INVALID:
        checks(v, out, data)
    if v.errors or out is _INVALID:
        raise ConfigError(v.errors or [ConfigIssue("", "invalid config")], source)
    return Validated(out, v.warnings, to_plain(data))


def load(schema: type[T], source: Any) -> Validated[T]:
    """Read (path, ``-`` for stdin, or open file), parse and validate a config."""
    text, name = read_source(source)
    return loads(schema, text, name)


def loads(schema: type[T], text: str, source: str = "<config>") -> Validated[T]:
    """Parse and validate config text (YAML or JSON)."""
    if not text.strip():
        raise ConfigError([ConfigIssue("", "config is empty")], source)
    return validate(schema, parse_text(text, source), source)
