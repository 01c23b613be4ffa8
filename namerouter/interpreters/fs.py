"""Interpreter kind ``io.l5d.fs``: the default interpreter with its dtab in a watched file
(Linkerd's FsInterpreterConfig)::

    interpreter:
      kind: io.l5d.fs
      dtabFile: /etc/namerouter/dtab

Bindings use ``<file dtab> ++ <router dtab> ++ <request dtab>`` — the file plays the
part namerd's namespace plays for ``io.l5d.namerd.http``, the router's own ``dtab``
comes after it, as in Linkerd. The file is polled every 50 ms while something is bound
(a change reaches routing within ~100 ms). Until the file exists bindings are pending
(Linkerd does the same); a file that does not parse fails every binding with the
parser's message and the file name, until it is fixed.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from ..dtab.dtab import Dtab
from ..dtab.errors import DtabSyntaxError
from ..naming.transform import build_transformers
from ..naming.var import PENDING, Activity, ActivityState, Closable, Failed, LazyVar, Ok
from .default import interpreter_options, register_metrics
from .dtab_source import DtabSourceInterpreter

MAX_DTAB_BYTES = 500 * 1024


@dataclass
class FsInterpreterConfig:
    dtabFile: str = field(metadata={"doc": "file holding the dtab (watched)"})
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


class DtabFileVar(LazyVar[ActivityState[Dtab]]):
    """The parsed content of a dtab file, polled while observed."""

    __slots__ = ("path", "interval", "_sig", "_task")

    def __init__(self, path: str, interval: float = 0.05) -> None:
        super().__init__(PENDING)
        self.path = os.path.abspath(path)
        self.interval = interval
        self._sig: Any = None
        self._task: Optional[asyncio.Task[None]] = None

    def check(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._sig = None
            self.update(PENDING)
            return
        except OSError as e:
            self.update(Failed(OSError(f"dtabFile {self.path}: {e.strerror or e}")))
            return
        sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        fresh = time.time_ns() - st.st_mtime_ns < 1_000_000_000
        if sig == self._sig and not fresh:
            return
        self._sig = sig
        if st.st_size > MAX_DTAB_BYTES:
            self.update(Failed(ValueError(f"dtabFile {self.path} is over {MAX_DTAB_BYTES // 1024} KB")))
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
            self.update(Ok(Dtab.read(text)))
        except FileNotFoundError:
            self.update(PENDING)
        except DtabSyntaxError as e:
            self.update(Failed(DtabSyntaxError(f"dtabFile {self.path} line {e.line}: {e}", e.text, e.offset)))
        except (OSError, UnicodeDecodeError) as e:
            self.update(Failed(ValueError(f"dtabFile {self.path}: {e}")))

    def sample(self) -> ActivityState[Dtab]:
        if not self._observers:
            self.check()
        return self._value

    def start(self) -> Closable:
        self._sig = None
        self.check()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return Closable()
        self._task = loop.create_task(self._poll(), name=f"dtabFile {self.path}")
        return Closable(self._stop)

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()


class FsInterpreter(DtabSourceInterpreter):
    """The default interpreter whose base dtab is the content of ``dtab_file``."""

    kind = "io.l5d.fs"
    config_class = FsInterpreterConfig

    def __init__(self, dtab_file: str, poll_interval: float = 0.05, **kwargs: Any) -> None:
        self.dtab_file = DtabFileVar(dtab_file, poll_interval)
        super().__init__(Activity(self.dtab_file), **kwargs)

    @classmethod
    def from_config(cls, config: FsInterpreterConfig, runtime: Any = None) -> "FsInterpreter":
        transformers = build_transformers(config.transformers or (), runtime)
        interp = cls(config.dtabFile, transformers=transformers, **interpreter_options(runtime))
        register_metrics(interp, runtime)
        return interp
