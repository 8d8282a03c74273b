"""The dependency graph of a saga's steps: validation, dependents and ancestors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from kubesaga.models import SagaSpec, SagaStatus, StepPhase, limits


@dataclass(frozen=True)
class StepGraph:
    """Effective dependencies of every step (absent dependsOn = the previous step)."""

    deps: Mapping[str, tuple[str, ...]]
    order: tuple[str, ...]
    """Step names in spec order."""

    @classmethod
    def of(cls, spec: SagaSpec) -> StepGraph:
        return cls(
            deps={name: tuple(d) for name, d in spec.dependencies().items()},
            order=tuple(step.name for step in spec.steps),
        )

    @cached_property
    def dependents(self) -> Mapping[str, tuple[str, ...]]:
        """Steps that depend directly on each step."""
        out: dict[str, list[str]] = {name: [] for name in self.order}
        for name in self.order:
            for dep in self.deps[name]:
                if dep in out:
                    out[dep].append(name)
        return {name: tuple(v) for name, v in out.items()}

    def ancestors(self, name: str) -> tuple[str, ...]:
        """Every step ``name`` depends on, directly or not, in spec order."""
        seen: set[str] = set()
        stack = list(self.deps[name])
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack.extend(self.deps[dep])
        return tuple(n for n in self.order if n in seen)


def spec_problem(spec: SagaSpec) -> str | None:
    """Why a spec cannot run (unknown or self dependencies, a cycle, too large), or None.

    The CRD's CEL rules reject most of these on ``kubectl apply``; this check keeps the engine
    safe when the schema was bypassed or could not express the rule (cycles, size).
    """
    size = len(json.dumps(spec.to_wire(), separators=(",", ":")))
    if size > limits.MAX_SPEC_BYTES:
        return (
            f"spec is {size} bytes, over the limit of {limits.MAX_SPEC_BYTES}; "
            "keep large data outside the Saga and pass references"
        )
    graph = StepGraph.of(spec)
    for name in graph.order:
        for dep in graph.deps[name]:
            if dep == name:
                return f"step {name!r} depends on itself"
            if dep not in graph.deps:
                return f"step {name!r} depends on unknown step {dep!r}"
    cycle = find_cycle(graph.deps)
    if cycle:
        return "dependency cycle: " + " -> ".join(cycle)
    return None


def find_cycle(deps: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """A dependency cycle as a closed path (``a -> b -> a``), or None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        path.append(node)
        for dep in deps[node]:
            if color.get(dep) == grey:
                return [*path[path.index(dep) :], dep]
            if color.get(dep) == white:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        color[node] = black
        return None

    for node in deps:
        if color[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def status_problem(spec: SagaSpec, status: SagaStatus) -> str | None:
    """Why ``status`` cannot be the operator's record of ``spec`` (edited by hand?), or None.

    The engine trusts what it wrote; this check keeps a status from elsewhere from completing a
    saga that never ran or from leaving it waiting for an attempt nobody dispatched.
    """
    names = [s.name for s in status.steps]
    expected = [s.name for s in spec.steps]
    if names != expected:
        return f"status steps {names} do not match the spec's steps {expected}"
    for step in status.steps:
        if step.phase is StepPhase.RUNNING and step.attempt < 1:
            return f"step {step.name!r} is Running but was never dispatched"
        if step.phase is StepPhase.RUNNING and not (step.dispatch_id or step.next_attempt_at):
            return f"step {step.name!r} is Running with no attempt in flight or due"
        if step.phase is StepPhase.AWAITING_APPROVAL and (
            spec.step(step.name).approval is None
            or step.approval is None
            or step.approval.outcome is not None
        ):
            return f"step {step.name!r} is AwaitingApproval but no approval is open for it"
        if step.phase is StepPhase.COMPENSATING:
            comp = step.compensation
            if comp is None or comp.attempt < 1 or not (comp.dispatch_id or comp.next_attempt_at):
                return f"step {step.name!r} is Compensating with no attempt in flight or due"
    return None
