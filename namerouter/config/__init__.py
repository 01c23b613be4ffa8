"""Config files → validated dataclasses; errors name the key path and line.

``loader`` parses YAML/JSON keeping line marks, ``validate`` turns values into the
dataclasses components declare, ``schema`` is the router's top level (Linkerd's
config.yaml). The router schema is imported lazily so namerd can use the generic parts
without importing the data plane.
"""
from .loader import ConfigError, ConfigIssue, parse_text, read_source, to_plain
from .validate import Validated, Validator, config_class_of, kind_of, load, loads, validate

__all__ = ["ConfigError", "ConfigIssue", "parse_text", "read_source", "to_plain", "Validated",
           "Validator", "config_class_of", "kind_of", "load", "loads", "validate"]
