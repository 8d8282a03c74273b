"""Rich renderings of sagas: a table for lists, a tree of steps for one saga."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kubesaga.client import Saga
from kubesaga.models import SagaPhase, StepPhase

PHASE_STYLE = {
    SagaPhase.PENDING: "dim",
    SagaPhase.RUNNING: "cyan",
    SagaPhase.SUSPENDED: "bold yellow",
    SagaPhase.COMPLETED: "green",
    SagaPhase.COMPENSATING: "yellow",
    SagaPhase.COMPENSATED: "magenta",
    SagaPhase.FAILED: "bold red",
}
STEP_STYLE = {
    StepPhase.PENDING: "dim",
    StepPhase.RUNNING: "cyan",
    StepPhase.AWAITING_APPROVAL: "bold cyan",
    StepPhase.SUCCEEDED: "green",
    StepPhase.FAILED: "red",
    StepPhase.SKIPPED: "dim",
    StepPhase.COMPENSATING: "yellow",
    StepPhase.COMPENSATED: "magenta",
    StepPhase.COMPENSATION_FAILED: "bold red",
}


def make_console() -> Console:
    """A console for people; 120 columns when writing to a file or a CI log, not 80."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    return console


def age(since: datetime | None, now: datetime | None = None) -> str:
    if since is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - since).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def saga_table(sagas: list[Saga]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAMESPACE", "NAME", "PHASE", "PROGRESS", "CURRENT", "AGE"):
        table.add_column(column)
    for saga in sagas:
        status = saga.status
        table.add_row(
            saga.namespace,
            saga.name,
            Text(saga.phase.value, style=PHASE_STYLE[saga.phase]),
            status.progress if status else "",
            (status.current_step or "") if status else "",
            age(status.started_at if status else None),
        )
    return table


def saga_tree(saga: Saga) -> Tree:
    status = saga.status
    head = Text.assemble(
        (f"{saga.namespace}/{saga.name} ", "bold"),
        (saga.phase.value, PHASE_STYLE[saga.phase]),
        f"  {status.progress}" if status else "",
    )
    tree = Tree(head)
    if status and status.message:
        tree.add(Text(status.message, style="italic"))
    deps = saga.spec.dependencies()
    for spec in saga.spec.steps:
        st = status.step(spec.name) if status else None
        phase = st.phase if st else StepPhase.PENDING
        label = Text.assemble(
            (spec.name, "bold"),
            "  ",
            (phase.value, STEP_STYLE[phase]),
            f"  {spec.action or 'approval'}",
            f"  attempt {st.attempt}" if st and st.attempt else "",
            f"  after {', '.join(deps[spec.name])}" if deps[spec.name] else "",
        )
        node = tree.add(label)
        if st and st.error:
            node.add(Text(f"error {st.error.type}: {st.error.message}", style="red"))
        if st and st.approval and st.approval.by:
            node.add(Text(f"{st.approval.outcome} by {st.approval.by}: {st.approval.reason}"))
        comp = st.compensation if st else None
        if comp is not None and spec.compensation:
            line = Text(f"compensation {spec.compensation}  attempt {comp.attempt}")
            if comp.error:
                line.append(f"  {comp.error.type}: {comp.error.message}", style="red")
            node.add(line)
    return tree
