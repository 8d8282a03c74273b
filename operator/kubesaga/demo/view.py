"""What the demo shows: a live board of the sagas, transition lines, and the final summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from kubesaga.cli.render import PHASE_STYLE
from kubesaga.client import Saga
from kubesaga.demo.examples import Example
from kubesaga.models import SagaPhase


@dataclass
class Tracked:
    """One example's saga as last seen on the watch."""

    example: Example
    name: str
    created: float = field(default_factory=time.monotonic)
    saga: Saga | None = None
    settled_after: float | None = None
    """Seconds from creation until the watch saw the final phase."""

    @property
    def phase(self) -> SagaPhase:
        return self.saga.phase if self.saga else SagaPhase.PENDING

    @property
    def settled(self) -> bool:
        return self.saga is not None and self.saga.is_settled()

    @property
    def as_expected(self) -> bool:
        return self.settled and self.phase is self.example.expected

    def elapsed(self) -> float:
        return (
            self.settled_after
            if self.settled_after is not None
            else time.monotonic() - self.created
        )

    def summary_line(self) -> str:
        """``Running 1/3 reserve_inventory``: what changed, for the transition lines."""
        status = self.saga.status if self.saga else None
        if status is None:
            return "Pending"
        parts = [status.phase.value, status.progress]
        if status.current_step:
            parts.append(f"[{status.current_step}]")
        if status.phase.is_final and status.message:
            parts.append(f"- {status.message}")
        return " ".join(p for p in parts if p)

    def attempts(self) -> int:
        status = self.saga.status if self.saga else None
        return sum(s.attempt for s in status.steps) if status else 0

    def retries(self) -> int:
        status = self.saga.status if self.saga else None
        return sum(max(s.attempt - 1, 0) for s in status.steps) if status else 0


def _duration(tracked: Tracked) -> str:
    """The operator's own timing (startedAt to finishedAt) once final, else time since creation."""
    status = tracked.saga.status if tracked.saga else None
    if status and status.started_at and status.finished_at:
        return f"{(status.finished_at - status.started_at).total_seconds():.1f}s"
    return f"{tracked.elapsed():.1f}s"


class Board:
    """The live table: rendered again on every watch event and on rich's refresh tick (for the
    elapsed time), from what the watch delivered; it never reads the API itself."""

    def __init__(self, tracked: list[Tracked]) -> None:
        self.tracked = tracked

    def __rich__(self) -> RenderableType:
        table = Table(title="kubesaga demo: sagas (live, from a watch)", title_justify="left")
        for column in ("EXAMPLE", "SAGA", "PHASE", "PROGRESS", "IN FLIGHT", "ELAPSED"):
            table.add_column(column)
        for t in self.tracked:
            status = t.saga.status if t.saga else None
            table.add_row(
                t.example.key,
                t.name,
                Text(t.phase.value, style=PHASE_STYLE[t.phase]),
                status.progress if status else "",
                (status.current_step or "") if status else "",
                f"{t.elapsed():.1f}s",
            )
        return table


def summary_table(tracked: list[Tracked]) -> Table:
    """One row per saga; RESULT is ``ok`` when it ended in the phase its example expects."""
    table = Table(title="kubesaga demo: summary", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("EXAMPLE", "SAGA", "PHASE", "RESULT", "STEPS", "RETRIES", "TIME"):
        table.add_column(column, no_wrap=True)
    for t in tracked:
        status = t.saga.status if t.saga else None
        if t.as_expected:
            result = Text("ok", style="green")
        else:
            result = Text(f"WANTED {t.example.expected.value}", style="bold red")
        table.add_row(
            t.example.key,
            t.name,
            Text(t.phase.value, style=PHASE_STYLE[t.phase]),
            result,
            status.progress if status else "-",
            str(t.retries()),
            _duration(t) if t.settled else f">{t.elapsed():.0f}s",
        )
    return table


def summary_notes(tracked: list[Tracked]) -> list[str]:
    """What happened to the sagas that did not simply complete, one line each."""
    return [
        f"{t.example.key}: {_what_happened(t)}"
        for t in tracked
        if t.phase is not SagaPhase.COMPLETED or not t.as_expected
    ]


def _what_happened(t: Tracked) -> str:
    status = t.saga.status if t.saga else None
    if status is None:
        return "never picked up by the operator"
    return status.message
