"""Kubernetes Events on Sagas, posted in the background so they never slow a transition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes_asyncio import client

from kubesaga.engine import Transition
from kubesaga.models import API_GROUP, API_VERSION, KIND
from kubesaga.store import SagaObject

log = logging.getLogger("kubesaga.operator.events")

ROUTINE_REASONS = frozenset({"StepSucceeded"})
"""Transitions posted only with ``KUBESAGA_EVENTS=all``: a step that succeeded is routine (the
status says it), and an Event per step costs the apiserver as much as the status write itself.
Phase changes, failures, retries and compensations are what people look for: the default."""


DRAIN_SECONDS = 3.0
"""How long a stopping operator keeps posting the Events it had queued."""


class EventPoster:
    """Queues Events and posts them from one task; drops them when the queue is full.

    ``on_posted`` is called after each Event the apiserver created (the operator counts them:
    an Event costs the apiserver as much as a status write, so the bench reports both).
    """

    def __init__(
        self,
        api: client.ApiClient,
        mode: str,
        component: str = "kubesaga",
        on_posted: Callable[[], None] | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.mode = mode
        self.component = component
        self.on_posted = on_posted
        self.queue: asyncio.Queue[tuple[SagaObject, Transition]] = asyncio.Queue(maxsize=10_000)
        self.task: asyncio.Task[None] | None = None

    def wanted(self, transition: Transition) -> bool:
        if self.mode == "none":
            return False
        if self.mode == "phases":
            return transition.warning or transition.reason not in ROUTINE_REASONS
        return True

    def post(self, saga: SagaObject, transitions: tuple[Transition, ...]) -> None:
        # Queued Events keep the saga's identity only, not the copy (its spec and status).
        saga = SagaObject(
            {"metadata": {"namespace": saga.namespace, "name": saga.name, "uid": saga.uid}}
        )
        for transition in transitions:
            if self.wanted(transition):
                try:
                    self.queue.put_nowait((saga, transition))
                except asyncio.QueueFull:
                    log.warning("event queue full; dropping event %s", transition.reason)
        if self.task is None and not self.queue.empty():
            self.start()

    def start(self) -> None:
        """Start the posting task (before kopf starts, so kopf's shutdown need not wait on it)."""
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="kubesaga-events")

    async def _run(self) -> None:
        while True:
            saga, transition = await self.queue.get()
            try:
                await self._send(saga, transition)
            except Exception as error:  # an Event is best effort: never fail a saga for it
                log.debug("posting event failed: %s", error)
            else:
                if self.on_posted is not None:
                    self.on_posted()
            finally:
                self.queue.task_done()

    async def _send(self, saga: SagaObject, transition: Transition) -> None:
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{saga.name}.", namespace=saga.namespace),
            involved_object=client.V1ObjectReference(
                api_version=f"{API_GROUP}/{API_VERSION}",
                kind=KIND,
                name=saga.name,
                namespace=saga.namespace,
                uid=saga.uid,
                field_path=f"spec.steps{{{transition.step}}}" if transition.step else None,
            ),
            reason=transition.reason,
            message=transition.message[:1024],
            type="Warning" if transition.warning else "Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=self.component),
            reporting_component=self.component,
        )
        await self.core.create_namespaced_event(saga.namespace, body)

    async def close(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Post what is queued (for at most ``drain_seconds``), then stop.

        The last transitions of a stopping operator (a saga's Completed, say) are the ones
        people look for; they are posted unless the apiserver is too slow to take them.
        """
        if self.task is None:
            return
        try:
            async with asyncio.timeout(drain_seconds):
                await self.queue.join()
        except TimeoutError:
            log.warning("stopping with %d Events not posted", self.queue.qsize())
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
