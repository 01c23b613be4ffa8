"""Read YAML or JSON config text into plain Python values that remember their lines.

The validator needs the line of every value to write messages such as
``routers[0].servers[0].port: expected an integer 1-65535, got 'abc' (line 9)``, and
plain ``yaml.safe_load`` forgets where things came from. Mappings and sequences are
therefore built as :class:`MarkedDict` / :class:`MarkedList`, which keep, for each
child, the line of its value and (for mappings) of its key, and the raw text of plain
scalars so a string field can take ``ip: 127.1`` exactly as written.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Optional, TextIO, Union

import yaml

try:  # the C loader is ~10x faster; both give the same nodes and marks
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class ConfigIssue:
    """One problem found in a config: where (key path, line) and what."""

    __slots__ = ("path", "message", "line")

    def __init__(self, path: str, message: str, line: Optional[int] = None) -> None:
        self.path = path
        self.message = message
        self.line = line

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        line = f" (line {self.line})" if self.line else ""
        return f"{where}{self.message}{line}"

    def __repr__(self) -> str:
        return f"ConfigIssue({str(self)!r})"


class ConfigError(Exception):
    """The config is invalid; ``errors`` lists every problem found, not just the first."""

    def __init__(self, errors: list[ConfigIssue], source: str = "") -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"invalid config {self.source}" if self.source else "invalid config"
        n = len(self.errors)
        lines = [f"{head}: {n} error{'s' if n != 1 else ''}"]
        lines += [f"  {e}" for e in self.errors]
        return "\n".join(lines)


class MarkedDict(dict[Any, Any]):
    """A mapping that knows the line of itself, of each key and of each value."""

    line: Optional[int] = None

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, Optional[int]] = {}
        self.key_lines: dict[Any, Optional[int]] = {}
        self.raw: dict[Any, str] = {}  # plain-scalar source text, by key


class MarkedList(list[Any]):
    """A sequence that knows the line of itself and of each item."""

    line: Optional[int] = None

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[Optional[int]] = []
        self.raw: dict[int, str] = {}


def _plain_text(node: yaml.Node) -> Optional[str]:
    if isinstance(node, yaml.ScalarNode) and not node.style:  # plain scalar (None or "")
        return str(node.value)
    return None


class _MarkedLoader(_BaseLoader):
    """Safe loader whose mappings/sequences record lines; duplicate keys are errors."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.duplicates: list[ConfigIssue] = []


def _construct_map(loader: _MarkedLoader, node: yaml.MappingNode) -> MarkedDict:
    loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
    d = MarkedDict()
    d.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark)
        if key in d:
            loader.duplicates.append(ConfigIssue(
                str(key), "duplicate key (the earlier value would be silently lost)",
                key_node.start_mark.line + 1))
        d[key] = loader.construct_object(value_node, deep=True)
        d.lines[key] = value_node.start_mark.line + 1
        d.key_lines[key] = key_node.start_mark.line + 1
        raw = _plain_text(value_node)
        if raw is not None:
            d.raw[key] = raw
    return d


def _construct_seq(loader: _MarkedLoader, node: yaml.SequenceNode) -> MarkedList:
    out = MarkedList()
    out.line = node.start_mark.line + 1
    for i, child in enumerate(node.value):
        out.append(loader.construct_object(child, deep=True))
        out.lines.append(child.start_mark.line + 1)
        raw = _plain_text(child)
        if raw is not None:
            out.raw[i] = raw
    return out


_MarkedLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkedLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _looks_like_json(text: str, source: str) -> bool:
    return source.endswith(".json") or text.lstrip().startswith(("{", "["))


def parse_text(text: str, source: str = "<config>") -> Any:
    """Parse YAML or JSON text into marked values; ConfigError on a syntax error.

    JSON is checked with the json module first (its messages are the familiar ones),
    then read through the YAML loader (JSON is YAML) to get line marks.
    """
    if _looks_like_json(text, source):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError([ConfigIssue("", f"invalid JSON: {e.msg}, column {e.colno}", e.lineno)],
                              source) from None
    loader = _MarkedLoader(text)
    try:
        value = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "syntax error"
        line = mark.line + 1 if mark is not None else None
        col = f", column {mark.column + 1}" if mark is not None else ""
        raise ConfigError([ConfigIssue("", f"invalid YAML: {problem}{col}", line)], source) from None
    except yaml.YAMLError as e:
        raise ConfigError([ConfigIssue("", f"invalid YAML: {e}")], source) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError(loader.duplicates, source)
    return value


def read_source(path: Union[str, "TextIO"]) -> tuple[str, str]:
    """(text, display name) of a config file path, ``-`` for stdin, or an open file."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    if not isinstance(path, str):
        return path.read(), getattr(path, "name", "<config>")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except OSError as e:
        raise ConfigError([ConfigIssue("", f"cannot read config file {path}: {e.strerror}")], path) from None
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue("", f"config file {path} is not UTF-8 text: {e.reason}")], path) from None


def to_plain(value: Any) -> Any:
    """Drop the marks: plain dicts/lists, e.g. for ``/config.json``."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value
