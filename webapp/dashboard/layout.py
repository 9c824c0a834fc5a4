"""Where each step of a flow's graph is drawn: rows top to bottom by rank,
steps of one rank side by side, a box around each nested flow, and a path for
each edge.  Plain numbers (SVG user units); the page's script draws them."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from webapp.dashboard.data import Graph

NODE_W = 268
NODE_H = 46  # name; state, duration, host
NODE_H_TALL = 64  # ... and the error of a failed step
H_GAP = 28  # between the steps of one rank
V_GAP = 24  # between ranks
PAD = 14  # a group's margin around its steps, per level of nesting inside it
GROUP_TOP = 26  # room for a group's label
GROUP_BOTTOM = 12
MARGIN = 12


def lay_out(graph: Graph, tall: Collection[str] = ()) -> dict[str, Any]:
    """Boxes for nodes and groups, paths for edges, and the drawing's size.

    ``tall`` names the nodes that need a third line (their error).
    """
    parent = {g.name: g.parent for g in graph.groups}
    children: dict[str | None, list[str]] = {}
    for group in graph.groups:
        children.setdefault(group.parent, []).append(group.name)
    ranks: dict[int, list[str]] = {}
    node_group = {}
    for node in graph.nodes:
        ranks.setdefault(node.rank, []).append(node.name)
        node_group[node.name] = node.group
    rank_of = {n.name: n.rank for n in graph.nodes}

    # Each group's first and last rank, over its own steps and its nested groups'.
    span: dict[str, tuple[int, int]] = {}
    for node in graph.nodes:
        group = node.group
        while group is not None:
            low, high = span.get(group, (node.rank, node.rank))
            span[group] = (min(low, node.rank), max(high, node.rank))
            group = parent[group]

    def levels(group: str) -> int:  # nesting levels from ``group`` inwards
        return 1 + max((levels(c) for c in children.get(group, []) if c in span), default=0)

    def stacked(group: str, end: int) -> int:  # groups opening (closing) with this one
        same = [c for c in children.get(group, [])
                if c in span and span[c][end] == span[group][end]]
        return 1 + max((stacked(c, end) for c in same), default=0)

    height_of = {r: max(NODE_H_TALL if n in tall else NODE_H for n in names)
                 for r, names in ranks.items()}
    y: dict[int, float] = {}
    cursor = float(MARGIN)
    for rank in sorted(ranks):
        cursor += GROUP_TOP * sum(1 for s in span.values() if s[0] == rank)
        y[rank] = cursor
        cursor += height_of[rank] + GROUP_BOTTOM * sum(1 for s in span.values() if s[1] == rank)
        cursor += V_GAP
    height = cursor - V_GAP + MARGIN if ranks else 2 * MARGIN

    widest = max((len(names) for names in ranks.values()), default=1)
    inner = widest * NODE_W + (widest - 1) * H_GAP
    side = PAD * max((levels(g) for g in children.get(None, []) if g in span), default=0)
    center = MARGIN + side + inner / 2
    nodes: dict[str, dict[str, float]] = {}
    for rank, names in ranks.items():
        row = len(names) * NODE_W + (len(names) - 1) * H_GAP
        for i, name in enumerate(names):
            nodes[name] = {"x": center - row / 2 + i * (NODE_W + H_GAP), "y": y[rank],
                           "w": NODE_W, "h": NODE_H_TALL if name in tall else NODE_H}

    groups: dict[str, dict[str, float]] = {}
    for group in (g.name for g in graph.groups):
        members = [n for n, g in node_group.items() if _inside(g, group, parent)]
        if not members:
            groups[group] = {"x": 0, "y": 0, "w": 0, "h": 0}
            continue
        pad = PAD * levels(group)
        left = min(nodes[n]["x"] for n in members) - pad
        right = max(nodes[n]["x"] + NODE_W for n in members) + pad
        low, high = span[group]
        top = y[low] - GROUP_TOP * stacked(group, 0)
        bottom = y[high] + height_of[high] + GROUP_BOTTOM * stacked(group, 1)
        groups[group] = {"x": left, "y": top, "w": right - left, "h": bottom - top}

    edges = {}
    for edge in graph.edges:
        a, b = nodes[edge.source], nodes[edge.target]
        x1, y1 = a["x"] + NODE_W / 2, a["y"] + a["h"]
        x2, y2 = b["x"] + NODE_W / 2, b["y"]
        skips = rank_of[edge.target] - rank_of[edge.source] > 1
        if x1 == x2 and not skips:
            path = f"M{x1:g},{y1:g} L{x2:g},{y2:g}"
        elif x1 == x2:  # around the steps in between, on the right
            bend = x1 + NODE_W / 2 + 2 * PAD
            path = f"M{x1:g},{y1:g} C{bend:g},{y1 + 24:g} {bend:g},{y2 - 24:g} {x2:g},{y2:g}"
        else:
            dy = min(V_GAP * 2, (y2 - y1) / 2)
            path = f"M{x1:g},{y1:g} C{x1:g},{y1 + dy:g} {x2:g},{y2 - dy:g} {x2:g},{y2:g}"
        edges[(edge.source, edge.target)] = {"path": path, "label_x": (x1 + x2) / 2 + 8,
                                             "label_y": (y1 + y2) / 2 + 4}
    return {"width": 2 * (MARGIN + side) + inner, "height": height, "nodes": nodes,
            "groups": groups, "edges": edges}


def _inside(group: str | None, outer: str, parent: dict[str, str | None]) -> bool:
    while group is not None:
        if group == outer:
            return True
        group = parent[group]
    return False
