"""Which transitions become Kubernetes Events, and which Events are counted as posted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client

from kubesaga.engine import Transition
from kubesaga.operator.events import EventPoster
from kubesaga.store import SagaObject

pytestmark = pytest.mark.unit

SAGA = SagaObject({"metadata": {"name": "s", "namespace": "ns", "uid": "u"}})


class Core:
    """Stands in for CoreV1Api: records bodies; refuses those whose reason is in ``refuse``."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.created: list[Any] = []
        self.done = asyncio.Event()
        self.expected = 0

    async def create_namespaced_event(self, namespace: str, body: Any) -> None:
        try:
            if body.reason in self.refuse:
                raise RuntimeError("apiserver said no")
            self.created.append(body)
        finally:
            self.expected -= 1
            if self.expected == 0:
                self.done.set()


async def test_only_events_the_apiserver_created_are_counted() -> None:
    posted: list[None] = []
    api = client.ApiClient()
    poster = EventPoster(api, "all", on_posted=lambda: posted.append(None))
    core = Core(refuse={"StepSucceeded"})
    poster.core = core  # type: ignore[assignment]
    transitions = (
        Transition("Started", "started"),
        Transition("StepSucceeded", "step a succeeded", step="a"),
        Transition("Completed", "done"),
    )
    core.expected = len(transitions)
    try:
        poster.post(SAGA, transitions)
        async with asyncio.timeout(10):
            await core.done.wait()
    finally:
        await poster.close()
        await api.close()
    assert [e.reason for e in core.created] == ["Started", "Completed"]
    assert len(posted) == 2


async def test_events_queued_when_the_operator_stops_are_still_posted() -> None:
    api = client.ApiClient()
    poster = EventPoster(api, "all")
    core = Core(refuse=set())
    poster.core = core  # type: ignore[assignment]
    transitions = tuple(Transition(f"R{i}", "m") for i in range(5))
    core.expected = len(transitions)
    try:
        poster.post(SAGA, transitions)
        await poster.close()  # at once: nothing was posted yet
    finally:
        await api.close()
    assert [e.reason for e in core.created] == [t.reason for t in transitions]
