"""An artifact's lineage as an SVG graph, laid out and drawn on the server (no script, no inline style).

Nodes are the artifact, every ancestor (:meth:`kaiyuan.hub.registry.Registry.lineage`) and every descendant made
from it (adapters, merges, exports: not the evaluations and cards about it, which the model page lists apart).
Edges run from parent to child, left to right: a node's column is the length of the longest chain of parents above
it, so a base model sits left of its adapter, the adapter left of the merge, the merge left of its exports; a
dataset is drawn in the column just before the first artifact trained on it (beside that artifact's base) and
styled apart (``node dataset``). Each node links to its page. Every name and id is escaped (``Markup.format``).
A lineage recorded as nodes and edges — what ``kaiyuan push`` writes into a hub revision's
``.kaiyuan/reports.json`` — is drawn the same way (:func:`graph_from_dict`, :func:`graph_svg`), each node linking
where the caller says (the hub's pages: the node's repo).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from kaiyuan.hub.registry import Artifact, Registry

NODE_W, NODE_H = 200, 46
COL_GAP, ROW_GAP, PAD = 96, 22, 12
ARC_ROOM = 34  # above the nodes, for the edges that skip a column (they arc over the nodes in between)
NAME_CHARS = 27
# kinds about an artifact rather than made from it: not drawn as its descendants
NOT_DESCENDANTS = frozenset({"eval", "card"})


@dataclass
class Node:
    id: str
    name: str
    kind: str
    current: bool = False
    missing: bool = False  # an ancestor named by a manifest but not in the registry
    column: int = 0
    row: int = 0
    x: int = 0
    y: int = 0


@dataclass
class Edge:
    parent: str
    child: str
    relations: list[str] = field(default_factory=list)


@dataclass
class Graph:
    nodes: dict[str, Node]
    edges: list[Edge]

    def parents_of(self, node_id: str) -> list[str]:
        return [e.parent for e in self.edges if e.child == node_id]

    def children_of(self, node_id: str) -> list[str]:
        return [e.child for e in self.edges if e.parent == node_id]


# --------------------------------------------------------------------------------------------- the graph


def _add_edge(edges: dict[tuple[str, str], Edge], parent: str, child: str, relation: str) -> None:
    edge = edges.setdefault((parent, child), Edge(parent, child))
    if relation not in edge.relations:
        edge.relations.append(relation)


def lineage_graph(artifact: Artifact, registry: Registry) -> Graph:
    """The artifact, its ancestors and its descendants, with an edge per parent → child link among them."""
    nodes = {artifact.id: Node(artifact.id, artifact.name, artifact.kind, current=True)}
    edges: dict[tuple[str, str], Edge] = {}
    for step in registry.lineage(artifact.id):
        if step["id"] not in nodes:
            missing = bool(step.get("missing"))
            nodes[step["id"]] = Node(step["id"], step["name"] or step["id"], step["kind"] or "missing", missing=missing)
        _add_edge(edges, step["id"], step["child"], step["relation"])
    queue = deque([artifact.id])
    while queue:
        parent = queue.popleft()
        for child in registry.children(parent):
            if child.kind in NOT_DESCENDANTS:
                continue
            for parent_id, relation in registry.parents(child.id):
                if parent_id == parent:
                    _add_edge(edges, parent, child.id, relation)
            if child.id not in nodes:
                nodes[child.id] = Node(child.id, child.name, child.kind)
                queue.append(child.id)
    return Graph(nodes, list(edges.values()))


MAX_NODES, MAX_EDGES = 300, 2000  # a pushed lineage larger than this is not drawn
KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def _text(value: Any, limit: int = 255) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def graph_from_dict(data: Any, current: str | None = None) -> Graph:
    """The graph of a lineage recorded as ``{"nodes": [{"id", "kind", "name", …}], "edges": [{"parent", "child",
    "relation"}]}`` (what ``kaiyuan push`` writes into ``.kaiyuan/reports.json``); ``current`` is drawn as the node
    the page is about. The data is untrusted: nodes without a string id and edges between unknown nodes are left
    out; a kind that is not a plain word becomes ``unknown``; :class:`ValueError` when it is not such a dict at all
    or too large to draw."""
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("nodes", "edges")):
        raise ValueError("expected {nodes: [...], edges: [...]}")
    if len(data["nodes"]) > MAX_NODES or len(data["edges"]) > MAX_EDGES:
        raise ValueError(f"{len(data['nodes'])} nodes and {len(data['edges'])} edges: too many to draw")
    nodes: dict[str, Node] = {}
    for item in data["nodes"]:
        node_id = _text(item.get("id")) if isinstance(item, dict) else None
        if node_id is None or node_id in nodes:
            continue
        kind = item.get("kind") if isinstance(item.get("kind"), str) and KIND.fullmatch(item["kind"]) else "unknown"
        nodes[node_id] = Node(node_id, _text(item.get("name")) or node_id, kind, current=node_id == current)
    edges: dict[tuple[str, str], Edge] = {}
    for item in data["edges"]:
        if not isinstance(item, dict):
            continue
        parent, child = _text(item.get("parent")), _text(item.get("child"))
        if parent is not None and child is not None and parent in nodes and child in nodes and parent != child:
            _add_edge(edges, parent, child, _text(item.get("relation"), 64) or "?")
    if not nodes:
        raise ValueError("no nodes")
    return Graph(nodes, list(edges.values()))


def _columns(graph: Graph) -> None:
    """Column = longest chain of parents; a dataset moves right to just before its first consumer."""
    memo: dict[str, int] = {}

    def depth(node_id: str, trail: frozenset[str]) -> int:
        if node_id not in memo:
            parents = [p for p in graph.parents_of(node_id) if p not in trail]
            memo[node_id] = 1 + max((depth(p, trail | {node_id}) for p in parents), default=-1)
        return memo[node_id]

    for node in graph.nodes.values():
        node.column = depth(node.id, frozenset())
    for node in graph.nodes.values():
        consumers = [graph.nodes[c].column for c in graph.children_of(node.id)]
        if node.kind == "dataset" and consumers:
            node.column = max(node.column, min(consumers) - 1)


def _row_key(graph: Graph, node: Node) -> tuple[bool, float, str]:
    """Weights before datasets, then the mean row of the parents already placed (left of it), then the name."""
    rows = [graph.nodes[p].row for p in graph.parents_of(node.id) if graph.nodes[p].column < node.column]
    return node.kind == "dataset", sum(rows) / len(rows) if rows else 0.0, node.name


def _rows(graph: Graph) -> None:
    """Rows within a column: near the parents' rows (fewer crossings), datasets below the weights."""
    columns: dict[int, list[Node]] = {}
    for node in graph.nodes.values():
        columns.setdefault(node.column, []).append(node)
    for column in sorted(columns):
        for row, node in enumerate(sorted(columns[column], key=lambda n: _row_key(graph, n))):
            node.row = row


def _skips(edge: Edge, graph: Graph) -> bool:
    """Whether an edge passes a column on its way (it is drawn as an arc over the nodes in between)."""
    return graph.nodes[edge.child].column - graph.nodes[edge.parent].column > 1


def layout(graph: Graph) -> tuple[int, int]:
    """Place every node; the drawing's (width, height)."""
    _columns(graph)
    _rows(graph)
    top = PAD + (ARC_ROOM if any(_skips(e, graph) for e in graph.edges) else 0)
    for node in graph.nodes.values():
        node.x = PAD + node.column * (NODE_W + COL_GAP)
        node.y = top + node.row * (NODE_H + ROW_GAP)
    columns = 1 + max((n.column for n in graph.nodes.values()), default=0)
    rows = 1 + max((n.row for n in graph.nodes.values()), default=0)
    return (2 * PAD + columns * NODE_W + (columns - 1) * COL_GAP,
            top + PAD + rows * NODE_H + (rows - 1) * ROW_GAP)


# --------------------------------------------------------------------------------------------- drawing


def _short(text: str, limit: int = NAME_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node(node: Node, href: str | None) -> Markup:
    classes = " ".join(["node", node.kind] + (["current"] if node.current else []) + (["missing"] if node.missing
                                                                                       else []))
    body = Markup(
        '<g class="{classes}" data-id="{id}" data-kind="{kind}"><title>{name} ({kind}, {id})</title>'
        '<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6"></rect>'
        '<text class="node-name" x="{tx}" y="{ty1}">{short}</text>'
        '<text class="node-id" x="{tx}" y="{ty2}">{id}</text></g>'
    ).format(classes=classes, id=node.id, kind=node.kind, name=node.name, short=_short(node.name), x=node.x,
             y=node.y, w=NODE_W, h=NODE_H, tx=node.x + 10, ty1=node.y + 19, ty2=node.y + 36)
    if href is None:
        return body
    return Markup('<a href="{href}" class="node-link">{body}</a>').format(href=href, body=body)


def _edge(edge: Edge, graph: Graph) -> Markup:
    parent, child = graph.nodes[edge.parent], graph.nodes[edge.child]
    x1, y1 = parent.x + NODE_W, parent.y + NODE_H // 2
    x2, y2 = child.x, child.y + NODE_H // 2
    if _skips(edge, graph):  # over the top: clear of the nodes in the columns between
        bend, cy1, cy2 = COL_GAP // 2, PAD - ARC_ROOM // 2, PAD - ARC_ROOM // 2
        mid_y = (y1 + y2) // 8 + 3 * cy1 // 4 - 3
    else:
        bend, cy1, cy2 = max(30, (x2 - x1) // 2), y1, y2
        mid_y = (y1 + y2) // 2 - 4
    label = ", ".join(edge.relations)
    return Markup(
        '<g class="link" data-parent="{parent}" data-child="{child}"><title>{label}</title>'
        '<path class="edge" d="M{x1},{y1} C{c1},{cy1} {c2},{cy2} {x2},{y2}" marker-end="url(#lineage-arrow)"></path>'
        '<text class="edge-label" x="{mx}" y="{my}">{label}</text></g>'
    ).format(parent=edge.parent, child=edge.child, label=label, x1=x1, y1=y1, x2=x2, y2=y2, c1=x1 + bend,
             c2=x2 - bend, cy1=cy1, cy2=cy2, mx=(x1 + x2) // 2, my=mid_y)


def registry_link(node: Node) -> str | None:
    """Where a node of a registry lineage links: its artifact's page (nowhere for one not in the registry)."""
    return None if node.missing else f"/models/{node.id}"


def lineage_svg(artifact: Artifact, registry: Registry) -> Markup:
    """The drawing of ``artifact``'s lineage (an ``<svg class="lineage">`` element), safe to put in a page."""
    return graph_svg(lineage_graph(artifact, registry), artifact.name, registry_link)


def graph_svg(graph: Graph, name: str, link: Callable[[Node], str | None]) -> Markup:
    """The drawing of ``graph`` (the lineage of ``name``), each node linking to ``link(node)`` (None: no link)."""
    width, height = layout(graph)
    edges = Markup("").join(_edge(e, graph) for e in graph.edges)
    nodes = Markup("").join(_node(n, link(n)) for n in sorted(graph.nodes.values(), key=lambda n: (n.column, n.row)))
    return Markup(
        '<svg class="lineage" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'role="img" aria-labelledby="lineage-title"><title id="lineage-title">Lineage of {name}</title>'
        '<defs><marker id="lineage-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path class="arrow" d="M0,0 L10,5 L0,10 z"></path></marker></defs>{edges}{nodes}</svg>'
    ).format(w=width, h=height, name=name, edges=edges, nodes=nodes)
