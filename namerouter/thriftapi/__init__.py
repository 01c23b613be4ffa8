"""namerd's thrift ``Namer`` service (``namer.thrift``), loaded with thriftpy2.

``namer`` is the loaded IDL module (structs, exceptions, ``namer.Namer``); ``convert``
maps its values to the dtab and naming types and back.
"""
from __future__ import annotations

import os

import thriftpy2

IDL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "namer.thrift")

# One module object per process; not registered in sys.modules (no import hooks).
namer = thriftpy2.load(IDL_PATH, module_name="namerouter_namer_thrift")
