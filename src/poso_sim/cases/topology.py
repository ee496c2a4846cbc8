"""Network topology helpers: adjacency maps and the radial-structure checks a case must pass.

Branches/pipes are directed ``from -> to`` (the reference fixes all flow directions a priori).
Every check returns ``None`` when the network is fine, or a short reason string otherwise; the
caller (``poso_sim.cases.schema``) prefixes it with the offending field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Edge = tuple[int, int, int]  # (edge id, from node, to node)


def adjacency(nodes: Iterable[int], edges: Iterable[Edge]) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """``(inc, out)``: for every node the ids of the edges ending at it / starting at it, in edge order."""
    inc: dict[int, list[int]] = {n: [] for n in nodes}
    out: dict[int, list[int]] = {n: [] for n in inc}
    for k, f, t in edges:
        out[f].append(k)
        inc[t].append(k)
    return inc, out


def digraph(nodes: Iterable[int], edges: Iterable[Edge]) -> Any:
    """The network as a networkx ``MultiDiGraph`` (networkx is imported here: 0.3-0.7 s, only to explain a
    network that fails a check)."""
    import networkx as nx  # heavy (0.3-0.7 s): only for a network that is not a tree

    g = nx.MultiDiGraph()
    g.add_nodes_from(nodes)
    for k, f, t in edges:
        g.add_edge(f, t, key=k)
    return g


def _plural(what: str, n: int) -> str:
    if n == 1:
        return what
    return what + ("es" if what.endswith("s") else "s")


def _fmt(ids: Iterable[int], limit: int = 8) -> str:
    ids = sorted(ids)
    s = ", ".join(str(i) for i in ids[:limit])
    return s + (", ..." if len(ids) > limit else "")


def _is_spanning_tree(nodes: Sequence[int], edges: Sequence[Edge]) -> bool:
    """True when the network is certainly a spanning tree: nodes, distinct undirected edges without self-loops,
    as many edges as nodes less one, all connected (anything else is for :func:`tree_problem` to explain)."""
    every = set(nodes).union(*((f, t) for _, f, t in edges))
    pairs = {frozenset((f, t)) for _, f, t in edges}
    if not every or len(pairs) != len(edges) or any(f == t for _, f, t in edges) or len(edges) != len(every) - 1:
        return False
    parent = {n: n for n in every}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for _, f, t in edges:
        a, b = root(f), root(t)
        if a == b:
            return False
        parent[a] = b
    return True


def tree_problem(nodes: Sequence[int], edges: Sequence[Edge], what: str = "node") -> str | None:
    """Reason why the undirected network is not a spanning tree (connected, no cycle), else None."""
    if _is_spanning_tree(nodes, edges):
        return None
    import networkx as nx  # heavy (0.3-0.7 s): only to explain a network that is not a tree

    g = digraph(nodes, edges)
    if g.number_of_nodes() == 0:
        return "network is empty"
    ug = nx.Graph(g.to_undirected())
    if ug.number_of_edges() != g.number_of_edges():
        return "network has parallel edges (not radial)"
    if any(f == t for _, f, t in edges):
        bad = next(k for k, f, t in edges if f == t)
        return f"edge {bad} is a self-loop"
    if not nx.is_connected(ug):
        comps = sorted(nx.connected_components(ug), key=len, reverse=True)
        cut = set().union(*comps[1:])
        verb = "is" if len(cut) == 1 else "are"
        return f"network is disconnected: {_plural(what, len(cut))} {_fmt(cut)} {verb} not connected to the rest"
    if g.number_of_edges() != g.number_of_nodes() - 1:
        cyc = nx.find_cycle(ug)
        return f"network is not radial: cycle through {_plural(what, 2)} {_fmt({u for u, _ in cyc})}"
    return None


def _is_arborescence(nodes: Sequence[int], edges: Sequence[Edge], root: int) -> bool:
    """True when the network is certainly a tree whose edges all point away from ``root``: every node reached
    from ``root``, fed by at most one edge, none feeding ``root`` (anything else is for
    :func:`arborescence_problem` to explain)."""
    every = set(nodes).union(*((f, t) for _, f, t in edges))
    fed: dict[int, int] = {}
    out: dict[int, list[int]] = {}
    for _, f, t in edges:
        fed[t] = fed.get(t, 0) + 1
        out.setdefault(f, []).append(t)
    if root not in every or fed.get(root, 0) or any(c > 1 for c in fed.values()):
        return False
    seen, todo = {root}, [root]
    while todo:
        for t in out.get(todo.pop(), ()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen == every


def arborescence_problem(nodes: Sequence[int], edges: Sequence[Edge], root: int, what: str = "node") -> str | None:
    """Reason why the directed network is not a tree whose edges all point away from ``root``."""
    if _is_arborescence(nodes, edges, root):
        return None
    import networkx as nx  # heavy (0.3-0.7 s): only to explain a network that is not a tree

    g = digraph(nodes, edges)
    unreached = set(g.nodes) - {root} - set(nx.descendants(g, root))
    if unreached:
        return f"{_plural(what, len(unreached))} {_fmt(unreached)} cannot be reached from source {what} {root} along the pipe directions"
    multi = [n for n in g.nodes if g.in_degree(n) > 1]
    if multi:
        return f"{_plural(what, len(multi))} {_fmt(multi)} {'is' if len(multi) == 1 else 'are'} fed by more than one pipe (not a tree rooted at {root})"
    if g.in_degree(root) != 0:
        return f"source {what} {root} has an incoming pipe"
    return None


def sending_leaf_problem(node: int, edges: Sequence[Edge]) -> str | None:
    """Reason why ``node`` is not a leaf that only sends (exactly one edge, starting at the node)."""
    touching = [(k, f, t) for k, f, t in edges if node in (f, t)]
    if len(touching) != 1:
        return f"must be a leaf of the heat network (has {len(touching)} pipes)"
    k, f, _ = touching[0]
    if f != node:
        return f"must only send supply water, but pipe {k} ends at it"
    return None
