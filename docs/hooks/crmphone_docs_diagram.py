"""Draw a state machine's transition table as an inline SVG: states as boxes, edges as arrows.

The docs hook calls :func:`state_diagram` with a table such as
``crmphone.phone.session.TRANSITIONS``, so the picture is laid out from the code at every build and
cannot drift from it. The layout is a small layered drawing, top to bottom:

* **Rows.** A depth-first walk from the initial state marks back edges (to a state still on the
  walk) and self-loops; every other edge points down, and a state's row is the longest path of
  such edges from a root. States within a row keep the order they were given in.
* **Edges between neighbouring rows** are straight lines from the bottom of one box to the top of
  the next (or back up), their label beside the line.
* **Edges that skip rows** run in vertical lanes beside the drawing, so they never cross a box:
  left of it when both ends are the first state of their row, right when both are the last, the
  less busy side otherwise. Shorter edges take the inner lanes, so lanes nest without crossing.
  Labels sit on their lane, moved along it until they overlap nothing already placed.
* **Self-loops** hang off a box's top-right corner.

Every edge is a ``<g class="crmphone-edge">`` with ``data-from``, ``data-to`` and ``data-triggers``
attributes, which is what the docs tests read. Colours come from the theme's CSS variables, so
the picture follows the page's colour scheme; text is monospace, so its width is predictable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

import attrs

__all__ = ["Edge", "state_diagram"]

_FONT = 12.0
_CHAR = _FONT * 0.6  # a monospace glyph's advance
_LINE = 15.0
_NODE_FONT = 13.0
_NODE_CHAR = _NODE_FONT * 0.62  # bold glyphs are a little wider
_NODE_H = 34.0
_NODE_PAD = 16.0
_H_GAP = 56.0
_ROW_GAP_MIN = 64.0
_LANE_GAP = 20.0
_MARGIN = 12.0
_RADIUS = 6.0
# Lane edges are told apart by colour (mid tones that read on light and dark backgrounds).
_LANE_COLOURS = ("#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b")

Side = Literal["top", "bottom", "left", "right"]


@attrs.frozen
class Edge:
    """One arrow: ``source`` to ``target``, for ``triggers``, labelled with ``lines``."""

    source: str
    target: str
    triggers: tuple[str, ...]
    lines: tuple[str, ...]


@attrs.frozen
class _Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    def overlaps(self, other: _Box, pad: float = 2.0) -> bool:
        return not (
            self.right + pad <= other.x
            or other.right + pad <= self.x
            or self.bottom + pad <= other.y
            or other.bottom + pad <= self.y
        )


@attrs.define
class _Attachment:
    edge: int
    key: tuple[float, ...]
    x: float = 0.0
    y: float = 0.0


def _text_width(lines: Iterable[str]) -> float:
    return max((len(line) for line in lines), default=0) * _CHAR


def _ranks(states: Sequence[str], edges: Sequence[Edge], initial: str) -> dict[str, int]:
    """Each state's row: longest path from a root over the edges that are not back edges."""
    out: dict[str, list[str]] = {state: [] for state in states}
    for edge in edges:
        if edge.source != edge.target:
            out[edge.source].append(edge.target)
    back: set[tuple[str, str]] = set()
    visited: set[str] = set()
    finished: list[str] = []
    for root in [initial, *states]:
        if root in visited:
            continue
        # An explicit stack: (state, iterator over its successors); "on_stack" marks back edges.
        on_stack = {root}
        visited.add(root)
        stack = [(root, iter(out[root]))]
        while stack:
            state, successors = stack[-1]
            target = next(successors, None)
            if target is None:
                stack.pop()
                on_stack.discard(state)
                finished.append(state)
            elif target in on_stack:
                back.add((state, target))
            elif target not in visited:
                visited.add(target)
                on_stack.add(target)
                stack.append((target, iter(out[target])))
    rank = dict.fromkeys(states, 0)
    for state in reversed(finished):  # reverse finishing order is a topological order
        for target in out[state]:
            if (state, target) not in back:
                rank[target] = max(rank[target], rank[state] + 1)
    return rank


def _halo_text(x: float, y: float, lines: Sequence[str], anchor: str) -> str:
    spans = "".join(
        f'<tspan x="{x:.1f}" y="{y + i * _LINE:.1f}">{escape(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return f'<text class="crmphone-label" text-anchor="{anchor}">{spans}</text>'


def _label_box(x: float, y: float, lines: Sequence[str], anchor: str) -> _Box:
    """The box text drawn at ``x``, baseline ``y`` (first line) takes, with its anchor."""
    width = _text_width(lines)
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return _Box(left - 3, y - _FONT, width + 6, _LINE * (len(lines) - 1) + _FONT + 5)


def _rounded(points: Sequence[tuple[float, float]]) -> str:
    """An orthogonal polyline through ``points`` with rounded corners, as path data."""
    path = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for index in range(1, len(points) - 1):
        # previous point → corner → next point: stop short of the corner and curve round it.
        (px, py), (cx, cy), (nx, ny) = points[index - 1], points[index], points[index + 1]
        r = min(_RADIUS, max(abs(cx - px), abs(cy - py)) / 2, max(abs(nx - cx), abs(ny - cy)) / 2)
        before = (cx - r * _sign(cx - px), cy - r * _sign(cy - py))
        after = (cx + r * _sign(nx - cx), cy + r * _sign(ny - cy))
        path.append(f"L{before[0]:.1f},{before[1]:.1f}")
        path.append(f"Q{cx:.1f},{cy:.1f} {after[0]:.1f},{after[1]:.1f}")
    path.append(f"L{points[-1][0]:.1f},{points[-1][1]:.1f}")
    return " ".join(path)


def _sign(value: float) -> float:
    return (value > 0) - (value < 0)


def state_diagram(
    states: Sequence[str],
    edges: Sequence[Edge],
    *,
    initial: str,
    title: str,
    ident: str,
) -> str:
    """The SVG (one HTML block, no blank lines) of ``states`` joined by ``edges``.

    ``initial`` gets a start marker; ``title`` is the picture's accessible name; ``ident`` keeps
    its element ids apart from any other diagram on the page.
    """
    known = set(states)
    for edge in edges:
        if edge.source not in known or edge.target not in known:
            raise ValueError(f"edge {edge.source} -> {edge.target} names an unknown state")
    if initial not in known:
        raise ValueError(f"the initial state {initial} is not among the states")

    rank = _ranks(states, edges, initial)
    rows: list[list[str]] = [[] for _ in range(max(rank.values()) + 1)]
    for state in states:
        rows[rank[state]].append(state)

    node_w = max(len(s) for s in states) * _NODE_CHAR + 2 * _NODE_PAD
    adjacent = [i for i, e in enumerate(edges) if abs(rank[e.source] - rank[e.target]) == 1]
    tallest = max((len(edges[i].lines) for i in adjacent), default=1)
    row_gap = max(_ROW_GAP_MIN, tallest * _LINE + 28)
    boxes: dict[str, _Box] = {}
    for index, row in enumerate(rows):
        width = len(row) * node_w + (len(row) - 1) * _H_GAP
        for position, state in enumerate(row):
            x = -width / 2 + position * (node_w + _H_GAP)
            boxes[state] = _Box(x, 40 + index * (_NODE_H + row_gap), node_w, _NODE_H)

    # --- which edges run in lanes, and on which side
    lane_side: dict[int, Literal["left", "right"]] = {}
    busy = {"left": 0, "right": 0}
    for i, edge in enumerate(edges):
        if edge.source == edge.target or abs(rank[edge.source] - rank[edge.target]) < 2:
            continue
        pair = (edge.source, edge.target)
        first = all(rows[rank[s]][0] == s for s in pair)
        last = all(rows[rank[s]][-1] == s for s in pair)
        if first and not last:
            side: Literal["left", "right"] = "left"
        elif last and not first:
            side = "right"
        elif first and last:
            side = "left" if busy["left"] <= busy["right"] else "right"
        else:
            side = "left" if rows[rank[edge.source]][0] == edge.source else "right"
        lane_side[i] = side
        busy[side] += 1

    def span(i: int) -> int:
        return abs(rank[edges[i].source] - rank[edges[i].target])

    lanes: dict[int, int] = {}
    for side_name in ("left", "right"):
        ordered = sorted((i for i, s in lane_side.items() if s == side_name), key=span)
        lanes.update({i: n for n, i in enumerate(ordered)})

    widest_lane_label = max((_text_width(edges[i].lines) for i in lane_side), default=0.0)
    min_x = min(box.x for box in boxes.values())
    max_x = max(box.right for box in boxes.values())
    inner = widest_lane_label / 2 + 14

    def lane_x(i: int) -> float:
        if lane_side[i] == "left":
            return min_x - inner - lanes[i] * _LANE_GAP
        return max_x + inner + lanes[i] * _LANE_GAP

    # --- attachment points on each side of each box
    self_loops = {e.source for e in edges if e.source == e.target}
    sides: dict[tuple[str, Side], list[_Attachment]] = {}

    def attach(state: str, side: Side, i: int, key: tuple[float, ...]) -> _Attachment:
        point = _Attachment(i, key)
        sides.setdefault((state, side), []).append(point)
        return point

    ends: dict[int, tuple[_Attachment, _Attachment]] = {}
    for i, edge in enumerate(edges):
        if edge.source == edge.target:
            continue
        src, dst = boxes[edge.source], boxes[edge.target]
        if i in lane_side:
            lane = lane_side[i]
            top_is_source = src.y < dst.y
            outer = float(lanes[i])
            # At the upper end the outer lanes attach higher, at the lower end lower: no crossing.
            src_key = (-outer,) if top_is_source else (outer,)
            dst_key = (outer,) if top_is_source else (-outer,)
            ends[i] = (attach(edge.source, lane, i, src_key), attach(edge.target, lane, i, dst_key))
        elif rank[edge.target] > rank[edge.source]:
            ends[i] = (
                attach(edge.source, "bottom", i, (dst.cx, 0)),
                attach(edge.target, "top", i, (src.cx, 0)),
            )
        elif rank[edge.target] < rank[edge.source]:
            ends[i] = (
                attach(edge.source, "top", i, (dst.cx, 1)),
                attach(edge.target, "bottom", i, (src.cx, 1)),
            )
        else:  # same row: side to side
            leftwards = dst.x < src.x
            ends[i] = (
                attach(edge.source, "left" if leftwards else "right", i, (0,)),
                attach(edge.target, "right" if leftwards else "left", i, (0,)),
            )
    start_point = attach(initial, "top", -1, (boxes[initial].cx, -1))

    for (state, where), attached in sides.items():
        box = boxes[state]
        attached.sort(key=lambda p: p.key)
        count = len(attached)
        for n, point in enumerate(attached):
            if where in ("top", "bottom"):
                point.x = box.x + box.w * (n + 1) / (count + 1)
                point.y = box.y if where == "top" else box.bottom
            else:
                low, high = (0.45, 0.9) if where == "right" and state in self_loops else (0.2, 0.8)
                fraction = low + (high - low) * ((n + 1) / (count + 1))
                point.x = box.x if where == "left" else box.right
                point.y = box.y + box.h * fraction

    # --- draw
    placed: list[_Box] = list(boxes.values())
    parts: list[str] = []
    lane_extent: list[float] = []

    lane_colour = {i: n % len(_LANE_COLOURS) for n, i in enumerate(sorted(lane_side))}

    def edge_group(i: int, body: str) -> str:
        edge = edges[i]
        colour = f' style="color:{_LANE_COLOURS[lane_colour[i]]}"' if i in lane_colour else ""
        return (
            f'<g class="crmphone-edge"{colour} data-from={quoteattr(edge.source)} '
            f"data-to={quoteattr(edge.target)} data-triggers={quoteattr(' '.join(edge.triggers))}>"
            f"<title>{escape(edge.source)} → {escape(edge.target)}: "
            f"{escape(', '.join(edge.triggers))}</title>{body}</g>"
        )

    arrow = f'marker-end="url(#{ident}-arrow)"'
    for i, edge in enumerate(edges):
        if edge.source == edge.target:
            box = boxes[edge.source]
            x0, y0 = box.right - 14, box.y
            x1, y1 = box.right, box.y + box.h * 0.22
            path = (
                f"M{x0:.1f},{y0:.1f} C{x0:.1f},{y0 - 34:.1f} {x1 + 38:.1f},{y1 - 12:.1f} "
                f"{x1:.1f},{y1:.1f}"
            )
            lx, ly = box.right + 14, box.y - 22 - _LINE * (len(edge.lines) - 1)
            label = _label_box(lx, ly, edge.lines, "start")
            placed.append(label)
            parts.append(
                edge_group(
                    i,
                    f'<path class="crmphone-line" d="{path}" {arrow}/>'
                    + _halo_text(lx, ly, edge.lines, "start"),
                )
            )
            continue
        begin, end = ends[i]
        if i in lane_side:
            x = lane_x(i)
            lane_extent.append(x)
            points = [(begin.x, begin.y), (x, begin.y), (x, end.y), (end.x, end.y)]
            top, bottom = sorted((begin.y, end.y))
            width = _text_width(edge.lines)
            height = _LINE * len(edge.lines)
            middle = (top + bottom) / 2 - height / 2 + _FONT
            candidates = sorted(
                (top + 14 + step * 6.0 + _FONT for step in range(int((bottom - top) / 6))),
                key=lambda y: abs(y - middle),
            )
            chosen = middle
            for y in candidates:
                box = _label_box(x, y, edge.lines, "middle")
                if box.bottom < bottom - 6 and not any(box.overlaps(p) for p in placed):
                    chosen = y
                    break
            placed.append(_label_box(x, chosen, edge.lines, "middle"))
            lane_extent.extend((x - width / 2 - 4, x + width / 2 + 4))
            lane_arrow = f'marker-end="url(#{ident}-arrow-{lane_colour[i]})"'
            parts.append(
                edge_group(
                    i,
                    f'<path class="crmphone-line" d="{_rounded(points)}" {lane_arrow}/>'
                    + _halo_text(x, chosen, edge.lines, "middle"),
                )
            )
            continue
        mx, my = (begin.x + end.x) / 2, (begin.y + end.y) / 2
        if begin.y == end.y:  # same row
            anchor, lx = "middle", mx
            ly = my - 8 - _LINE * (len(edge.lines) - 1)
        else:
            source_box = boxes[edge.source]
            on_left = (begin.x + end.x) / 2 < source_box.cx - 1
            anchor = "end" if on_left else "start"
            lx = mx - 7 if on_left else mx + 7
            ly = my - _LINE * (len(edge.lines) - 1) / 2 + _FONT / 3
        placed.append(_label_box(lx, ly, edge.lines, anchor))
        parts.append(
            edge_group(
                i,
                f'<path class="crmphone-line" d="M{begin.x:.1f},{begin.y:.1f} '
                f'L{end.x:.1f},{end.y:.1f}" {arrow}/>' + _halo_text(lx, ly, edge.lines, anchor),
            )
        )

    start = boxes[initial]
    parts.append(
        f'<g class="crmphone-start"><circle cx="{start_point.x:.1f}" cy="{start.y - 24:.1f}" '
        f'r="5"/><path class="crmphone-line" d="M{start_point.x:.1f},{start.y - 19:.1f} '
        f'L{start_point.x:.1f},{start.y:.1f}" {arrow}/></g>'
    )
    for state in states:
        box = boxes[state]
        parts.append(
            f'<g class="crmphone-state" data-state={quoteattr(state)}>'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
            f'rx="6"/><text x="{box.cx:.1f}" y="{box.y + box.h / 2 + _NODE_FONT / 3:.1f}" '
            f'text-anchor="middle">{escape(state)}</text></g>'
        )

    xs = [b.x for b in placed] + [b.right for b in placed] + lane_extent
    ys = [b.y for b in placed] + [b.bottom for b in placed] + [start.y - 32]
    left, right = min(xs) - _MARGIN, max(xs) + _MARGIN
    top, bottom = min(ys) - _MARGIN, max(ys) + _MARGIN
    width, height = right - left, bottom - top
    style = (
        f"<style>#{ident} .crmphone-line{{fill:none;stroke:currentColor;stroke-width:1.3}}"
        f"#{ident} .crmphone-label{{font:{_FONT:g}px var(--md-code-font-family,monospace);"
        "fill:currentColor;paint-order:stroke;stroke:var(--md-default-bg-color,#fff);"
        "stroke-width:4px;stroke-linejoin:round}"
        f"#{ident} .crmphone-state rect{{fill:var(--md-code-bg-color,#f5f5f5);"
        "stroke:currentColor;stroke-width:1.3}"
        f"#{ident} .crmphone-state text{{font:bold {_NODE_FONT:g}px "
        "var(--md-code-font-family,monospace);fill:currentColor}"
        f"#{ident} .crmphone-start circle,#{ident} marker path{{fill:currentColor}}"
        f"#{ident} .crmphone-edge .crmphone-label{{fill:currentColor}}</style>"
    )
    marker = (
        "<defs>"
        + "".join(
            f'<marker id="{ident}-arrow{suffix}" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z"{fill}/></marker>'
            for suffix, fill in [
                ("", ""),
                *((f"-{n}", f' style="fill:{c}"') for n, c in enumerate(_LANE_COLOURS)),
            ]
        )
        + "</defs>"
    )
    return (
        f'<div class="crmphone-diagram"><svg id="{ident}" xmlns="http://www.w3.org/2000/svg" '
        f'role="img" aria-labelledby="{ident}-title" '
        f'viewBox="{left:.1f} {top:.1f} {width:.1f} {height:.1f}" '
        f'style="width:100%;max-width:{width:.0f}px;height:auto">'
        f'<title id="{ident}-title">{escape(title)}</title>{style}{marker}'
        + "".join(parts)
        + "</svg></div>"
    )
