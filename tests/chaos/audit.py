"""Checking a chaos run: the handlers' ledger against the sagas' final status.

Pure functions over what the run left behind (ledger lines, final Saga objects, specs), so a
failure names the saga, the step and the rule it broke.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kubesaga.models import SagaSpec, SagaStatus, StepPhase


@dataclass(frozen=True)
class Run:
    """One handler run as the ledger saw it: a start, and an end/fail unless killed."""

    kind: str  # "execute" | "compensate"
    saga: str
    step: str
    attempt: int
    dispatch_id: str
    dispatched_at: datetime | None
    start: float
    end: float | None  # wall time of a successful end
    failed: bool
    pid: int


def load_ledger(folder: Path) -> list[Run]:
    """Every handler run of every worker process, start paired with its end by (pid, id)."""
    entries: list[dict[str, Any]] = []
    for path in sorted(folder.glob("worker-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                entries.append(json.loads(line))
    runs: dict[tuple[int, str, str, float], dict[str, Any]] = {}
    for e in entries:
        key = (e["pid"], e["kind"], e["dispatch_id"], e["start"])
        run = runs.setdefault(key, {"entry": e, "end": None, "failed": False})
        if e["event"] == "end":
            run["end"] = e["at"]
        elif e["event"] == "fail":
            run["failed"] = True
    out: list[Run] = []
    for run in runs.values():
        e = run["entry"]
        at = e.get("dispatched_at")
        out.append(
            Run(
                kind=e["kind"],
                saga=e["saga"],
                step=e["step"],
                attempt=int(e["attempt"]),
                dispatch_id=e["dispatch_id"],
                dispatched_at=datetime.fromisoformat(at) if at else None,
                start=float(e["start"]),
                end=run["end"],
                failed=run["failed"],
                pid=int(e["pid"]),
            )
        )
    return sorted(out, key=lambda r: r.start)


def open_runs(folder: Path, pid: int) -> int:
    """Handler runs of process ``pid`` started but not finished (a kill now lands mid-step)."""
    path = folder / f"worker-{pid}.jsonl"
    if not path.exists():
        return 0
    started: set[tuple[str, float]] = set()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        key = (e["dispatch_id"], e["start"])
        if e["event"] == "start":
            started.add(key)
        else:
            started.discard(key)
    return len(started)


@dataclass
class Audit:
    violations: list[str]
    checked_steps: int
    compensations: int
    duplicate_runs: int
    """Handler runs repeating a dispatch id already run (redeliveries), executed again."""


def audit(
    specs: Mapping[str, SagaSpec],
    statuses: Mapping[str, SagaStatus | None],
    expected: Mapping[str, str],
    runs: Iterable[Run],
) -> Audit:
    """Check every saga of the run; returns the violations found (empty when all is well)."""
    by_saga: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_saga[run.saga].append(run)
    violations: list[str] = []
    checked = compensations = duplicates = 0
    for name, spec in specs.items():
        status = statuses.get(name)
        if status is None:
            violations.append(f"{name}: no status")
            continue
        if status.phase.value != expected[name]:
            violations.append(
                f"{name}: ended {status.phase.value}, expected {expected[name]} "
                f"({status.reason}: {status.message})"
            )
        saga_runs = by_saga.get(name, [])
        seen_ids: set[tuple[str, str]] = set()
        for run in saga_runs:
            if (run.kind, run.dispatch_id) in seen_ids:
                duplicates += 1
            seen_ids.add((run.kind, run.dispatch_id))

        # No forward step dispatched once compensation started.
        began = status.compensation_requested_at
        if began is not None:
            for run in saga_runs:
                if (
                    run.kind == "execute"
                    and run.dispatched_at is not None
                    and run.dispatched_at >= began
                ):
                    violations.append(
                        f"{name}/{run.step}: attempt {run.attempt} dispatched at "
                        f"{run.dispatched_at.isoformat()}, not before compensation began "
                        f"at {began.isoformat()}"
                    )

        deps = spec.dependencies()
        dependents: dict[str, list[str]] = defaultdict(list)
        for step_name, step_deps in deps.items():
            for dep in step_deps:
                dependents[dep].append(step_name)

        def ok_ends(step: str, kind: str, runs_: list[Run] = saga_runs) -> dict[str, float]:
            """Successful runs of ``kind`` for ``step``: dispatch id -> earliest end."""
            ends: dict[str, float] = {}
            for r in runs_:
                if r.step == step and r.kind == kind and r.end is not None:
                    ends[r.dispatch_id] = min(ends.get(r.dispatch_id, r.end), r.end)
            return ends

        for st in status.steps:
            checked += 1
            step_spec = spec.step(st.name)
            executed = ok_ends(st.name, "execute")
            undone = ok_ends(st.name, "compensate")
            compensations += len(undone)
            succeeded = st.phase in (
                StepPhase.SUCCEEDED,
                StepPhase.COMPENSATING,
                StepPhase.COMPENSATED,
                StepPhase.COMPENSATION_FAILED,
            )
            # Net effect of the action: one successful dispatch id per succeeded step, the one
            # recorded in status; none for a step that failed or never ran.
            want_exec = {st.dispatch_id} if succeeded and st.dispatch_id else set()
            if set(executed) != want_exec:
                violations.append(
                    f"{name}/{st.name} ({st.phase.value}): successful executions "
                    f"{sorted(executed)}, expected {sorted(want_exec)}"
                )
            # Net effect of the compensation: exactly once for a succeeded step with one.
            needs_undo = bool(executed) and step_spec.compensation is not None
            expect_undo = 1 if needs_undo and status.phase.value == "Compensated" else 0
            if len(undone) != expect_undo:
                violations.append(
                    f"{name}/{st.name}: compensated by {len(undone)} distinct dispatch ids "
                    f"{sorted(undone)}, expected {expect_undo}"
                )
            if expect_undo and st.phase is not StepPhase.COMPENSATED:
                violations.append(f"{name}/{st.name}: phase {st.phase.value}, not Compensated")
            if not undone:
                continue
            comp_runs = [r for r in saga_runs if r.step == st.name and r.kind == "compensate"]
            first_start = min(r.start for r in comp_runs)
            if executed and first_start <= min(executed.values()):
                violations.append(f"{name}/{st.name}: compensation started before it succeeded")
            # Reverse dependency order: every compensated dependent finished undoing first.
            for dependent in dependents[st.name]:
                dep_undone = ok_ends(dependent, "compensate")
                dep_executed = ok_ends(dependent, "execute")
                if dep_executed and not dep_undone:
                    violations.append(
                        f"{name}: {st.name} compensated while its dependent {dependent} "
                        "succeeded and was never compensated"
                    )
                    continue
                if not dep_undone:
                    continue
                # The dependent's first successful undo: a later re-run of the same dispatch id
                # (a redelivery) may still be going on; that is the idempotent repeat, not order.
                done_at = min(dep_undone.values())
                if first_start <= done_at:
                    violations.append(
                        f"{name}: compensation of {st.name} started at {first_start:.3f}, "
                        f"before its dependent {dependent} was undone at {done_at:.3f}"
                    )
                for r in comp_runs:
                    if r.dispatched_at is not None and r.dispatched_at.timestamp() <= done_at:
                        violations.append(
                            f"{name}: compensation of {st.name} was dispatched at "
                            f"{r.dispatched_at.isoformat()}, before {dependent} was undone"
                        )
    return Audit(violations, checked, compensations, duplicates)
