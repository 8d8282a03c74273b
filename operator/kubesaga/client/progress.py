"""Deciding, event by event, what ``wait`` and ``watch`` do: shared by both clients.

Both clients read the saga once, then follow it with a watch from that read's resourceVersion
(nothing polls). Each event of the watch goes through one of these, which says whether the wait
is over (``Waiter``) or what the watch yields (``Progress``). A saga that is deleted, or deleted
and created again under the same name (a different uid), ends either with ``SagaNotFound``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubesaga.client.errors import SagaNotFound, SagaTimeout
from kubesaga.client.saga import Saga


class _Follower:
    """Turns watch events of one saga into snapshots, and notices when it is gone."""

    def __init__(self, first: Saga) -> None:
        self.namespace = first.namespace
        self.name = first.name
        self.uid = first.uid
        self.last = first

    def snapshot(self, kind: str, raw: Mapping[str, Any]) -> Saga | None:
        """The saga in this event; None for events that carry no new state (bookmarks)."""
        where = f"{self.namespace}/{self.name}"
        if kind == "DELETED":
            raise SagaNotFound(
                f"saga {where} was deleted while waiting for it",
                namespace=self.namespace,
                name=self.name,
            )
        if kind not in ("ADDED", "MODIFIED"):
            return None
        saga = Saga.from_raw(raw)
        if saga.uid != self.uid:
            raise SagaNotFound(
                f"saga {where} was deleted and created again while waiting for it",
                namespace=self.namespace,
                name=self.name,
            )
        self.last = saga
        return saga

    def timed_out(self, timeout: float | None, doing: str) -> SagaTimeout:
        """The error for a wait or watch that ran out of time, saying where the saga stood."""
        return SagaTimeout(
            f"saga {self.namespace}/{self.name} did not settle within {timeout} s while "
            f"{doing}; it is {self.last.phase}",
            last=self.last,
            namespace=self.namespace,
            name=self.name,
        )


class Waiter(_Follower):
    """``wait``: over at the first snapshot that is settled (final for the latest spec)."""

    def done(self) -> Saga | None:
        """The first read already settled it (no watch needed)."""
        return self.last if self.last.is_settled() else None

    def __call__(self, kind: str, raw: Mapping[str, Any]) -> Saga | None:
        saga = self.snapshot(kind, raw)
        return saga if saga is not None and saga.is_settled() else None


class Progress(_Follower):
    """``watch``: yields the first snapshot, then each one where the saga's or a step's phase
    changed; finished once a settled snapshot was yielded."""

    def __init__(self, first: Saga) -> None:
        super().__init__(first)
        self.seen: tuple[Any, ...] | None = None
        self.finished = False

    def first(self) -> Saga | None:
        """The first read, to yield before watching."""
        return self._if_changed(self.last)

    def __call__(self, kind: str, raw: Mapping[str, Any]) -> Saga | None:
        saga = self.snapshot(kind, raw)
        return self._if_changed(saga) if saga is not None else None

    def _if_changed(self, saga: Saga) -> Saga | None:
        shape = _shape(saga)
        if shape == self.seen:
            return None
        self.seen = shape
        self.finished = saga.is_settled()
        return saga


def _shape(saga: Saga) -> tuple[Any, ...]:
    """What a phase change is: the saga's phase, whether it settled, and each step's phases."""
    steps = saga.status.steps if saga.status else []
    return (
        saga.phase,
        saga.is_settled(),
        tuple((s.name, s.phase) for s in steps),
    )
