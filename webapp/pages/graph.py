"""Lay out a FlowGram workflow left to right, for the task page's server-side SVG.

:func:`layout` is pure: schema in, boxes and edges out (integer pixel coordinates).
On each level (the top level, or the ``blocks`` of a loop) a node's column is its
depth: the longest path to it from the level's start (back edges of a cycle are
ignored). Columns are placed left to right and centred vertically; within a column
nodes are ordered by the mean height of their predecessors, which keeps most edges
from crossing. A node with ``blocks`` is drawn as a larger box holding its own
level, laid out the same way, at any depth of nesting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Box", "Layout", "Link", "layout"]

NODE_W = 168
NODE_H = 46
#: Horizontal space between columns (room for the edges and their port labels).
COL_GAP = 64
ROW_GAP = 22
#: Inside a container: padding around its level, and the band holding its title.
PAD = 16
HEADER = 30
MARGIN = 10
#: Titles longer than this many characters (per pixel width) are shortened with an ellipsis.
CHAR_WIDTH = 7.6
#: Node types a level's layout starts from.
_START_TYPES = ("start", "block-start")
DEFAULT_PORT = "defaultOutput"
#: Notes on the canvas, never run: not drawn.
_SKIPPED_TYPES = frozenset({"comment"})


@dataclass(frozen=True)
class Box:
    """One node's rectangle; ``label`` is the title shortened to fit."""

    id: str
    type: str
    title: str
    label: str
    x: int
    y: int
    w: int
    h: int
    #: column on its level: the longest path from the level's start
    depth: int
    #: the node whose ``blocks`` hold this one (None on the top level)
    parent: str | None
    #: True when the node holds a nested level (a loop body)
    container: bool

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h


@dataclass(frozen=True)
class Link:
    """An edge from the right side of ``source`` to the left side of ``target``."""

    source: str
    target: str
    #: the source port (a condition's branch key), None for the default output
    port: str | None
    parent: str | None
    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def path(self) -> str:
        """An SVG cubic Bézier path between the two anchors."""
        dx = max(30, abs(self.x2 - self.x1) // 2)
        return (f"M{self.x1},{self.y1} C{self.x1 + dx},{self.y1} {self.x2 - dx},{self.y2} "
                f"{self.x2},{self.y2}")

    @property
    def label_at(self) -> tuple[int, int]:
        """Where the port label goes: a quarter of the way along the curve, just above it."""
        dx = max(30, abs(self.x2 - self.x1) // 2)
        t = 0.25
        xs = (self.x1, self.x1 + dx, self.x2 - dx, self.x2)
        ys = (self.y1, self.y1, self.y2, self.y2)
        weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3)
        x = sum(w * v for w, v in zip(weights, xs))
        y = sum(w * v for w, v in zip(weights, ys))
        return round(x), round(y) - 4


@dataclass(frozen=True)
class Layout:
    """Every box (containers before what they hold) and every edge, and the drawing's size."""

    width: int
    height: int
    boxes: list[Box]
    links: list[Link]

    def box(self, node_id: str) -> Box:
        """The box of ``node_id``. :raises KeyError: for an unknown node"""
        for box in self.boxes:
            if box.id == node_id:
                return box
        raise KeyError(node_id)


def layout(schema: dict[str, Any] | None) -> Layout:
    """Place every node of a FlowGram ``schema`` (loop bodies nested) left to right.

    Malformed parts are skipped rather than refused (the page still draws the rest): nodes
    without an id or with a repeated one, edges naming unknown nodes or crossing levels.
    """
    seen: set[str] = set()
    width, height, boxes, links = _level(_nodes((schema or {}).get("nodes"), seen),
                                         (schema or {}).get("edges"), None, seen)
    boxes = [_shift(b, MARGIN, MARGIN) for b in boxes]
    links = [_shift(link, MARGIN, MARGIN) for link in links]
    return Layout(width + 2 * MARGIN, height + 2 * MARGIN, boxes, links)


def _nodes(raw: Any, seen: set[str]) -> list[dict[str, Any]]:
    """The well-formed nodes of one level, each id once across the whole schema; no comments."""
    nodes = []
    for node in raw if isinstance(raw, list) else []:
        if not isinstance(node, dict) or node.get("type") in _SKIPPED_TYPES:
            continue
        if isinstance(node.get("id"), str) and node["id"] and node["id"] not in seen:
            seen.add(node["id"])
            nodes.append(node)
    return nodes


def _title(node: dict[str, Any]) -> str:
    data = node.get("data")
    title = data.get("title") if isinstance(data, dict) else None
    return title if isinstance(title, str) and title.strip() else node["id"]


def _shorten(text: str, width: int) -> str:
    limit = max(4, int((width - 20) / CHAR_WIDTH))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _shift(item: Any, dx: int, dy: int) -> Any:
    if isinstance(item, Box):
        return replace(item, x=item.x + dx, y=item.y + dy)
    return replace(item, x1=item.x1 + dx, y1=item.y1 + dy, x2=item.x2 + dx, y2=item.y2 + dy)


def _depths(ids: list[str], types: dict[str, str], succ: dict[str, list[str]]) -> dict[str, int]:
    """Longest path from the start(s), ignoring back edges; unreachable nodes start at 0 too."""
    roots = [i for i in ids if types[i] in _START_TYPES]
    has_pred = {t for targets in succ.values() for t in targets}
    roots += [i for i in ids if i not in has_pred and i not in roots]
    roots += [i for i in ids if i not in roots]  # what is left sits on a cycle
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
    postorder: list[str] = []
    back: set[tuple[str, str]] = set()
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:  # iterative: a chain of thousands of nodes must not hit the recursion limit
            node, children = stack[-1]
            for child in children:
                if state.get(child) == 1:
                    back.add((node, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(succ[child])))
                    break
            else:
                state[node] = 2
                postorder.append(node)
                stack.pop()
    depth = dict.fromkeys(ids, 0)
    for node in reversed(postorder):  # a topological order of the forward edges
        for child in succ[node]:
            if (node, child) not in back:
                depth[child] = max(depth[child], depth[node] + 1)
    return depth


def _level(raw_nodes: list[dict[str, Any]], raw_edges: Any, parent: str | None, seen: set[str]
           ) -> tuple[int, int, list[Box], list[Link]]:
    """Lay out one level at the origin: ``(width, height, boxes, links)``.

    :param seen: node ids taken so far anywhere in the schema (a repeated id is skipped).
    """
    by_id = {n["id"]: n for n in raw_nodes}
    ids = [n["id"] for n in raw_nodes]
    types = {n["id"]: str(n.get("type") or "") for n in raw_nodes}
    edges: list[tuple[str, str, str | None]] = []
    for edge in raw_edges if isinstance(raw_edges, list) else []:
        if not isinstance(edge, dict):
            continue
        source, target = edge.get("sourceNodeID"), edge.get("targetNodeID")
        if source in by_id and target in by_id and source != target:
            port = edge.get("sourcePortID")
            edges.append((source, target, port if isinstance(port, str) and port != DEFAULT_PORT else None))
    succ: dict[str, list[str]] = {i: [] for i in ids}
    pred: dict[str, list[str]] = {i: [] for i in ids}
    for source, target, _ in edges:
        succ[source].append(target)
        pred[target].append(source)
    depth = _depths(ids, types, succ)

    # Sizes: a node with blocks is as big as its own level plus padding and a title band.
    sizes: dict[str, tuple[int, int]] = {}
    inner: dict[str, tuple[list[Box], list[Link]]] = {}
    for node in raw_nodes:
        blocks = _nodes(node.get("blocks"), seen)
        if blocks:
            w, h, boxes, links = _level(blocks, node.get("edges"), node["id"], seen)
            sizes[node["id"]] = (max(w + 2 * PAD, NODE_W), h + HEADER + PAD)
            inner[node["id"]] = (boxes, links)
        else:
            sizes[node["id"]] = (NODE_W, NODE_H)

    columns: dict[int, list[str]] = {}
    for i in ids:
        columns.setdefault(depth[i], []).append(i)
    col_heights = {d: sum(sizes[i][1] for i in col) + ROW_GAP * (len(col) - 1) for d, col in columns.items()}
    height = max(col_heights.values(), default=0)
    position = {node_id: index for index, node_id in enumerate(ids)}
    place: dict[str, tuple[int, int]] = {}
    x = 0
    for d in sorted(columns):
        col = columns[d]

        def key(node_id: str) -> tuple[int, float, int]:
            above = [place[p][1] + sizes[p][1] / 2 for p in pred[node_id] if p in place]
            if types[node_id] in _START_TYPES:
                return (0, 0.0, position[node_id])
            if above:
                return (1, sum(above) / len(above), position[node_id])
            return (2, 0.0, position[node_id])

        col.sort(key=key)
        col_w = max(sizes[i][0] for i in col)
        y = (height - col_heights[d]) // 2
        for node_id in col:
            w, h = sizes[node_id]
            place[node_id] = (x + (col_w - w) // 2, y)
            y += h + ROW_GAP
        x += col_w + COL_GAP
    width = max(0, x - COL_GAP)

    boxes: list[Box] = []
    links: list[Link] = []
    for d in sorted(columns):
        for node_id in columns[d]:
            (bx, by), (w, h) = place[node_id], sizes[node_id]
            title = _title(by_id[node_id])
            boxes.append(Box(node_id, types[node_id], title, _shorten(title, w), bx, by, w, h, depth[node_id],
                             parent, node_id in inner))
            if node_id in inner:
                child_boxes, child_links = inner[node_id]
                boxes += [_shift(b, bx + PAD, by + HEADER) for b in child_boxes]
                links += [_shift(link, bx + PAD, by + HEADER) for link in child_links]

    # Anchors: several edges leaving (or entering) one side are spread along it, in the order of
    # the boxes at their other end, so they do not cross right at the node.
    def centre(node_id: str) -> float:
        return place[node_id][1] + sizes[node_id][1] / 2

    outs: dict[str, list[int]] = {i: [] for i in ids}
    ins: dict[str, list[int]] = {i: [] for i in ids}
    for number, (source, target, _) in enumerate(edges):
        outs[source].append(number)
        ins[target].append(number)
    out_rank: dict[int, tuple[int, int]] = {}
    in_rank: dict[int, tuple[int, int]] = {}
    for node_id in ids:
        leaving = sorted(outs[node_id], key=lambda e: (centre(edges[e][1]), position[edges[e][1]]))
        entering = sorted(ins[node_id], key=lambda e: (centre(edges[e][0]), position[edges[e][0]]))
        out_rank.update({e: (k, len(leaving)) for k, e in enumerate(leaving)})
        in_rank.update({e: (k, len(entering)) for k, e in enumerate(entering)})
    for number, (source, target, port) in enumerate(edges):
        (sx, sy), (sw, sh) = place[source], sizes[source]
        (tx, ty), (_, th) = place[target], sizes[target]
        k, n = out_rank[number]
        j, m = in_rank[number]
        links.append(Link(source, target, port, parent, sx + sw, sy + sh * (k + 1) // (n + 1),
                          tx, ty + th * (j + 1) // (m + 1)))
    return width, height, boxes, links
