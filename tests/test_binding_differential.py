"""Differential property test of the one binding core (namerouter/dtab/binding.py).

Offline binding (``offline.bind``) and the live interpreter (``DefaultInterpreter.bind``)
run the same algorithm with different namer policies; both are compared with a direct,
unmemoised transcription of dtab-semantics.md §8 written here, on random *cyclic* dtabs
with small ``max_depth`` — where a path is met again at several depths, so memoised
answers, depth accounting and union/alt failure handling all matter.

This catches, for example, a memo key that ignores the depth (checked by mutating
``binding.py`` so and seeing this test fail).
"""
from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from namerouter.dtab import Dtab, Path, offline
from namerouter.dtab.errors import MaxDepthExceeded
from namerouter.dtab.tree import NEG, Alt, Leaf, NameTree, Union, Weighted
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.naming.var import Failed, Ok

NAMES = ["/a", "/b", "/c", "/a/x", "/b/y"]
#: The semantics are compared without the budget (the reference has none; examples too
#: big for it are skipped); the budget has its own tests.
NO_BUDGET = 10**9
LEAVES = ["/$/inet/127.1/1", "/$/inet/127.1/2", "/$/nil", "/$/fail", "/$/unknown.Namer", "~", "!", "$"]


def _dtabs() -> st.SearchStrategy[str]:
    simple = st.sampled_from(NAMES + LEAVES)
    weighted = st.tuples(st.sampled_from(["", "2 * ", "0.5 * "]), simple).map("".join)
    union = st.lists(weighted, min_size=1, max_size=3).map(" & ".join)
    tree = st.lists(union, min_size=1, max_size=3).map(" | ".join)
    dentry = st.tuples(st.sampled_from(["/a", "/b", "/c", "/a/x", "/*"]), tree).map(lambda pt: f"{pt[0]} => {pt[1]}")
    return st.lists(dentry, min_size=1, max_size=5).map(";".join)


class _TooBig(Exception):
    pass


def reference_bind(dtab: Dtab, path: Path, max_depth: int) -> NameTree[Any]:
    """dtab-semantics.md §8, literally: recursive, no memo (small inputs only)."""
    calls = [0]

    def b(tree: NameTree[Any], depth: int) -> NameTree[Any]:
        if depth > max_depth:
            raise MaxDepthExceeded(max_depth)
        if isinstance(tree, Leaf):
            if not isinstance(tree.value, Path):
                return tree
            calls[0] += 1
            if calls[0] > 50_000:
                raise _TooBig()
            looked = dtab.lookup(tree.value)
            if looked is NEG:
                looked = offline.offline_lookup(tree.value)
            return b(looked, depth + 1)
        if isinstance(tree, Union):
            ws = tree.weighted
            if not ws:
                return NEG
            if len(ws) == 1:
                return b(ws[0].tree, depth)
            oks, first = [], None
            for w in ws:
                try:
                    oks.append(Weighted(w.weight, b(w.tree, depth)))
                except _TooBig:
                    raise
                except Exception as e:
                    first = first or e
            if not oks:
                assert first is not None
                raise first
            return Union(*oks).simplified()
        if isinstance(tree, Alt):
            if not tree.trees:
                return NEG
            if len(tree.trees) == 1:
                return b(tree.trees[0], depth)
            for t in tree.trees:
                r = b(t, depth)
                if r is not NEG:
                    return r
            return NEG
        return tree

    return b(Leaf(path), 0).simplified()


def _outcome_offline(d: Dtab, p: Path, depth: int) -> Any:
    try:
        return ("ok", offline.bind(d, p, max_depth=depth, budget=NO_BUDGET).map(lambda v: (v.id, v.residual)))
    except Exception as e:
        return ("failed", type(e).__name__, str(e))


def _outcome_live(d: Dtab, p: Path, depth: int) -> Any:
    st_ = DefaultInterpreter(max_depth=depth, budget=NO_BUDGET).bind(d, p).sample()
    if isinstance(st_, Failed):
        return ("failed", type(st_.error).__name__, str(st_.error))
    assert isinstance(st_, Ok), st_
    return ("ok", st_.value.map(lambda v: (v.id, v.residual)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_dtabs(), st.sampled_from(["/a", "/b/z", "/c", "/a/x"]), st.integers(min_value=1, max_value=6))
def test_offline_and_live_bind_agree_with_the_spec_on_cyclic_dtabs(dtab: str, path: str, max_depth: int) -> None:
    d, p = Dtab.read(dtab), Path.read(path)
    try:
        expected: Any = ("ok", reference_bind(d, p, max_depth).map(lambda v: (v.id, v.residual)))
    except _TooBig:
        return
    except Exception as e:
        expected = ("failed", type(e).__name__, str(e))
    assert _outcome_offline(d, p, max_depth) == expected, (dtab, path, max_depth)
    assert _outcome_live(d, p, max_depth) == expected, (dtab, path, max_depth)


def test_a_path_met_at_two_depths_binds_by_its_own_depth() -> None:
    """The case a memo keyed by path alone gets wrong: /b is reached at depth 2 (via /c)
    and at depth 1 (via /a's second branch); only the deeper one exceeds max_depth.
    (Reaching a bound address costs one lookup more than the rewrites: the system namer's.)"""
    d = Dtab.read("/a => /c & /b; /c => /b; /b => /$/inet/127.1/1")
    # /a(0) -> /c(1) -> /b(2) -> /$/inet(3) -> bound at 4: over max_depth 3, dropped;
    # /a(0) -> /b(1) -> /$/inet(2) -> bound at 3: fine
    assert str(offline.bind(d, Path.read("/a"), max_depth=3)) == "/$/inet/127.1/1"
    assert _outcome_live(d, Path.read("/a"), 3) == _outcome_offline(d, Path.read("/a"), 3)
