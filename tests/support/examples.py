"""Helpers for the tests that run an example directory's one-command runner."""
from __future__ import annotations

import importlib.util
import subprocess
from types import ModuleType

from .ports import free_port


def load_script(path: str, name: str) -> ModuleType:
    """Import a runner script (examples are plain scripts, not packages) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def free_ports(mod: ModuleType) -> dict[str, int]:
    """A free port for every port the runner lets the user choose (its DEFAULT_PORTS)."""
    return {k: free_port() for k in mod.DEFAULT_PORTS}


def port_args(ports: dict[str, int]) -> list[str]:
    out: list[str] = []
    for k, v in ports.items():
        out += [f"--{k}-port", str(v)]
    return out


def curl(*args: str) -> str:
    r = subprocess.run(["curl", "-s", "-S", "--max-time", "10", *args], capture_output=True, text=True, timeout=20)
    return r.stdout
