"""Where each step of a saga is drawn: a layered longest-path layout of the step DAG.

Computed here rather than in the browser because no third-party layout library may be served
(nothing fetched is committed, and there is no CDN), and because a pure function is easy to
test. A step's layer is the length of the longest dependency chain leading to it, so every edge
points to a later column; inside a column steps keep spec order, then one barycentre pass pulls
each step toward its dependencies to cut edge crossings. The browser only turns the numbers into
SVG.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubesaga.models import SagaSpec, SagaStatus, StepPhase

NODE_WIDTH = 180
NODE_HEIGHT = 48
COLUMN_GAP = 70
ROW_GAP = 24
MARGIN = 16


@dataclass(frozen=True)
class Node:
    name: str
    phase: str
    layer: int
    x: int
    y: int
    compensation: str | None
    """The compensation's state (its step phase) once it started, else None."""
    undo_order: int | None
    """1 for the first compensation started, 2 for the next...; None when never compensated."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str
    """``forward`` (dependsOn: source runs first) or ``compensation`` (undo target after
    source: a forward edge drawn in reverse)."""
    via: tuple[tuple[int, int, int], ...] = ()
    """Columns a long edge crosses, in its direction: (left x, right x, centre y) of the slot
    kept free for it there."""


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def layers(deps: dict[str, list[str]], order: list[str]) -> dict[str, int]:
    """Longest-path layer of each step; the spec is validated acyclic before it gets here."""
    out: dict[str, int] = {}

    def layer(name: str, path: frozenset[str]) -> int:
        if name not in out:
            if name in path:  # a cycle the CRD could not refuse: draw it flat, not forever
                return 0
            inner = path | {name}
            out[name] = 1 + max(
                (layer(d, inner) for d in deps.get(name, []) if d in deps), default=-1
            )
        return out[name]

    for name in order:
        layer(name, frozenset())
    return out


def layout(spec: SagaSpec, status: SagaStatus | None) -> Layout:
    """Positions, phases and edges of every step of ``spec`` (status may be missing)."""
    deps = {name: [d for d in ds if d != name] for name, ds in spec.dependencies().items()}
    order = [step.name for step in spec.steps]
    depth = layers(deps, order)
    columns = _columns(deps, order, depth)
    tallest = max((len(c) for c in columns.values()), default=0)
    height = MARGIN * 2 + tallest * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    place: dict[str, tuple[int, int]] = {}
    for index, column in columns.items():
        offset = (tallest - len(column)) * (NODE_HEIGHT + ROW_GAP) // 2
        for position, entry in enumerate(column):
            x = MARGIN + index * (NODE_WIDTH + COLUMN_GAP)
            place[entry] = (x, MARGIN + offset + position * (NODE_HEIGHT + ROW_GAP))
    steps = {s.name: s for s in status.steps} if status else {}
    undo = _undo_order(status)
    nodes = []
    for name in sorted(order, key=lambda n: (depth[n], place[n][1])):
        step = steps.get(name)
        nodes.append(
            Node(
                name=name,
                phase=step.phase.value if step else StepPhase.PENDING.value,
                layer=depth[name],
                x=place[name][0],
                y=place[name][1],
                compensation=step.phase.value if step and step.compensation else None,
                undo_order=undo.get(name),
            )
        )
    width = MARGIN * 2 + len(columns) * NODE_WIDTH + max(len(columns) - 1, 0) * COLUMN_GAP
    failed = {s.name for s in steps.values() if s.phase is StepPhase.FAILED}

    def via(source: str, target: str) -> tuple[tuple[int, int, int], ...]:
        """The slots a long edge passes through: (left x, right x, centre y) per column."""
        out = []
        for index in range(depth[source] + 1, depth[target]):
            x, y = place[_dummy(source, target, index)]
            out.append((x, x + NODE_WIDTH, y + NODE_HEIGHT // 2))
        return tuple(out)

    edges = [
        Edge(
            source,
            target,
            kind,
            via(source, target) if kind == "forward" else tuple(reversed(via(target, source))),
        )
        for source, target, kind in _edges(deps, order, undo, failed)
    ]
    return Layout(width, height, tuple(nodes), tuple(edges))


def _dummy(source: str, target: str, index: int) -> str:
    return f"\0{source}>{target}@{index}"


def _columns(
    deps: dict[str, list[str]], order: list[str], depth: dict[str, int]
) -> dict[int, list[str]]:
    """Steps and dummy slots per column, ordered to cut crossings.

    An edge longer than one column gets a dummy slot in each column it crosses (as in
    Sugiyama's method), so it is routed around the steps there rather than through them.
    """
    columns: dict[int, list[str]] = {i: [] for i in sorted(set(depth.values()))}
    before: dict[str, list[str]] = {}
    rank: dict[str, tuple[int, int]] = {}
    for name in order:
        columns[depth[name]].append(name)
        before.setdefault(name, [])
        rank[name] = (order.index(name), 0)
        for dep in deps[name]:
            if dep not in depth:
                continue
            previous = dep
            for index in range(depth[dep] + 1, depth[name]):
                slot = _dummy(dep, name, index)
                columns[index].append(slot)
                before[slot] = [previous]
                rank[slot] = (order.index(name), 1)
                previous = slot
            before[name].append(previous)
    row: dict[str, float] = {}
    for index, column in columns.items():
        if index > min(columns):  # one barycentre pass: toward the rows of the predecessors
            column.sort(key=lambda e: (_mean([row[p] for p in before[e] if p in row], 0), rank[e]))
        else:
            column.sort(key=lambda e: rank[e])
        for position, entry in enumerate(column):
            row[entry] = position
    return columns


def _edges(
    deps: dict[str, list[str]], order: list[str], undo: dict[str, int], failed: set[str]
) -> list[tuple[str, str, str]]:
    edges = [(d, name, "forward") for name in order for d in deps[name] if d in deps]
    # The compensation path: undoing a step waits for its dependents, so it runs against the
    # arrows: from the step that failed, or from a dependent undone first, to each dependency
    # whose compensation started.
    edges += [
        (name, d, "compensation")
        for name in order
        for d in deps[name]
        if d in undo and (name in undo or name in failed)
    ]
    return edges


def _undo_order(status: SagaStatus | None) -> dict[str, int]:
    if status is None:
        return {}
    started = [
        (s.compensation.started_at, index, s.name)
        for index, s in enumerate(status.steps)
        if s.compensation is not None and s.compensation.started_at is not None
    ]
    started.sort(key=lambda item: (item[0], -item[1]))
    return {name: position + 1 for position, (_, _, name) in enumerate(started)}


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default
