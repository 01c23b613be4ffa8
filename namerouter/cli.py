"""``namerouter`` command line: dispatch to subcommands, each in its own module.

    namerouter config.yaml            run the routers a config describes (Linkerd's `linkerd config.yaml`)
    namerouter run config.yaml        the same
    namerouter dtab show|bind|delegate|lint ...
    namerouter announce --zk HOST:PORT --path /discovery/x --host H --port P [-- CMD ...]
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

# subcommand -> module with a ``main(argv) -> int`` function (imported lazily so that
# `namerouter dtab` never imports the data plane, kazoo, ...).
SUBCOMMANDS = {
    "run": "namerouter.cli_run",
    "dtab": "namerouter.cli_dtab",
    "announce": "namerouter.cli_announce",
}

USAGE = """usage: namerouter CONFIG.yaml | namerouter run CONFIG.yaml
       namerouter dtab {show,bind,delegate,lint} ...
       namerouter announce --zk HOST:PORT --path ZNODE --host HOST --port PORT [-- CMD ...]
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    cmd = args[0]
    if cmd in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[cmd])
        return int(module.main(args[1:]) or 0)
    # Linkerd style: the only argument is the config file (or - for stdin).
    module = importlib.import_module(SUBCOMMANDS["run"])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
