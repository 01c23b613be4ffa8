"""Live binding: observables, address sets, bound names, namers, interpreters."""
from .addr import ADDR_NEG, ADDR_PENDING, WEIGHT_KEY, Addr, AddrBound, AddrFailed, Address, addr_from_json
from .bound import BoundName
from .namer import Namer
from .var import PENDING, Activity, ActivityState, Closable, Failed, Ok, Var

__all__ = [
    "Var", "Activity", "ActivityState", "PENDING", "Ok", "Failed", "Closable",
    "Address", "Addr", "AddrBound", "AddrFailed", "ADDR_NEG", "ADDR_PENDING", "WEIGHT_KEY",
    "addr_from_json", "BoundName", "Namer",
]
