"""``AsyncSagaClient``: start, inspect, compensate, approve, wait for and watch Sagas (asyncio).

The client never talks to RabbitMQ or kopf: it writes Saga specs and reads their status; the
operator does the rest. ``SagaClient`` (``sync_client``) is the same API, blocking; everything
but the transport (kubernetes_asyncio here) lives in ``resource``, ``progress`` and
``api_errors``, so the two cannot drift.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.client import approvals, resource
from kubesaga.client.api_errors import translate
from kubesaga.client.errors import SagaNotFound
from kubesaga.client.handles import AsyncSagaHandle
from kubesaga.client.progress import Progress, Waiter
from kubesaga.client.saga import Saga
from kubesaga.models import (
    API_GROUP,
    API_VERSION,
    PLURAL,
    ApprovalAnswer,
    JsonObject,
    SagaSpec,
    StepSpec,
)
from kubesaga.store.kube import make_api_client
from kubesaga.store.sagas import Conflict, NotFound, SagaStore
from kubesaga.store.watching import follow


class AsyncSagaClient:
    """Sagas in one namespace by default (every method takes ``namespace=`` to use another).

    Errors are the ``SagaClientError`` family (``kubesaga.SagaNotFound`` and friends), never a
    transport's own exception.
    """

    def __init__(self, api: client.ApiClient, namespace: str = "default") -> None:
        self.api = api
        self.namespace = namespace
        self.objects = client.CustomObjectsApi(api)
        self._store = SagaStore(api)

    @classmethod
    async def connect(
        cls, kubeconfig: str | None = None, namespace: str = "default"
    ) -> AsyncSagaClient:
        """A client from a kubeconfig (default: $KUBECONFIG), else the in-cluster account."""
        return cls(await make_api_client(kubeconfig), namespace)

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> AsyncSagaClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(
        self,
        name: str,
        steps: Iterable[StepSpec | Mapping[str, Any]],
        context: JsonObject | None = None,
        *,
        namespace: str | None = None,
        deadline_seconds: float | None = None,
        ttl_seconds_after_finished: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> AsyncSagaHandle:
        """Create the saga (the operator runs it) and return a handle to it.

        Idempotent: if a saga of that name exists with the same spec it is returned as is, so
        a retried request starts nothing twice. Raises ``SagaAlreadyExists`` when one exists
        with a different spec and ``SagaInvalid`` when the spec is refused (locally, or by the
        apiserver's CEL rules, with its message).
        """
        ns = namespace or self.namespace
        spec = resource.build_spec(
            steps,
            context,
            deadline_seconds=deadline_seconds,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            namespace=ns,
            name=name,
        )
        return await self.create(name, spec, namespace=ns, labels=labels)

    async def create(
        self,
        name: str,
        spec: SagaSpec,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> AsyncSagaHandle:
        """``start`` with a ready ``SagaSpec`` (e.g. from a manifest); equally idempotent."""
        ns = namespace or self.namespace
        body = resource.saga_body(ns, name, spec, labels)
        try:
            raw = await self.objects.create_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, PLURAL, body
            )
            return AsyncSagaHandle(self, Saga.from_raw(raw), created=True)
        except ApiException as error:
            if error.status != 409:
                raise translate(error, namespace=ns, name=name) from None
        try:
            existing = await self._read(ns, name)
        except SagaNotFound:  # deleted between our create and read: create it once more
            return await self.create(name, spec, namespace=ns, labels=labels)
        return AsyncSagaHandle(self, resource.adopt_existing(existing, spec))

    async def get(self, name: str, *, namespace: str | None = None) -> AsyncSagaHandle:
        """A handle to an existing saga; ``SagaNotFound`` if there is none."""
        return AsyncSagaHandle(self, await self._read(namespace or self.namespace, name))

    async def list_sagas(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        label_selector: str = "",
    ) -> list[AsyncSagaHandle]:
        """Every saga in the namespace (or in all of them), or those ``label_selector`` picks
        (``app=shop``, as ``kubectl -l``)."""
        return await self._list(namespace, all_namespaces, "", label_selector)

    async def list_active(
        self, *, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[AsyncSagaHandle]:
        """Sagas not in a final phase (filtered by the apiserver on status.phase)."""
        return await self._list(namespace, all_namespaces, resource.ACTIVE_SELECTOR)

    async def compensate(self, name: str, *, namespace: str | None = None) -> Saga:
        """Ask the operator to undo the saga (also once Completed); returns at once.

        Sets ``spec.compensate``; ``wait`` afterwards waits for the compensation to finish.
        """
        return await self._compensate(namespace or self.namespace, name)

    async def suspend(self, name: str, *, namespace: str | None = None) -> Saga:
        """Stop dispatching for the saga (``spec.suspend: true``); returns at once.

        Attempts in flight finish and are recorded; no step, retry or compensation starts
        until ``resume``. The operator shows it as phase ``Suspended`` (a final saga stays as
        it is). The deadline keeps counting unless the saga set ``suspendPausesDeadline``.
        """
        patch = resource.suspend_patch(True, None)
        return await self._patch(namespace or self.namespace, name, patch)

    async def resume(self, name: str, *, namespace: str | None = None) -> Saga:
        """Let a suspended saga go on from where it stood (``spec.suspend: false``)."""
        patch = resource.suspend_patch(False, None)
        return await self._patch(namespace or self.namespace, name, patch)

    async def redrive(self, name: str, *, namespace: str | None = None) -> Saga:
        """Run the failed compensations of a saga Failed because one failed, then the rest.

        Bumps ``spec.redrive``; returns at once (``wait`` waits for the outcome). Raises
        ``SagaNotRedrivable``, changing nothing, for any other saga (Completed, Compensated,
        still running, invalid, or with a redrive pending).
        """
        return await self._redrive(namespace or self.namespace, name)

    async def approve(
        self,
        name: str,
        step: str,
        reason: str = "",
        *,
        by: str | None = None,
        namespace: str | None = None,
    ) -> Saga:
        """Approve the approval step ``step``: it succeeds, and the saga goes on.

        Records ``by`` (default: the caller's Kubernetes user name) and ``reason`` in
        ``spec.approvals``; the operator copies them into the step's status and output. Raises
        ``ApprovalRefused`` when the step is not waiting (not reached yet, answered or timed
        out already, saga compensating or ended), saying why; returns at once.
        """
        return await self._answer(namespace or self.namespace, name, step, True, reason, by)

    async def reject(
        self,
        name: str,
        step: str,
        reason: str = "",
        *,
        by: str | None = None,
        namespace: str | None = None,
    ) -> Saga:
        """Reject the approval step ``step``: it fails, and the saga compensates.

        As ``approve`` otherwise (who and why recorded, ``ApprovalRefused`` when not waiting).
        """
        return await self._answer(namespace or self.namespace, name, step, False, reason, by)

    async def wait(
        self, name: str, timeout: float | None = None, *, namespace: str | None = None
    ) -> Saga:
        """Wait (by watching, not polling) until the saga settles; return its final snapshot.

        Settled means final for the latest spec: right after ``compensate()`` on a Completed
        saga this waits for the compensation, not for the completion already recorded. Raises
        ``SagaTimeout`` after ``timeout`` seconds, ``SagaNotFound`` if it is (or gets) deleted.
        """
        return await self._wait(namespace or self.namespace, name, timeout)

    async def watch(
        self, name: str, timeout: float | None = None, *, namespace: str | None = None
    ) -> AsyncGenerator[Saga, None]:
        """Yield the saga now, then again whenever its phase or a step's phase changes.

        Ends after yielding the settled saga (see ``wait``). Raises ``SagaTimeout`` when it has
        not settled after ``timeout`` seconds, ``SagaNotFound`` if it is deleted. Leaving early?
        Use ``contextlib.aclosing(client.watch(...))`` so the watch request ends with the loop.
        """
        ns = namespace or self.namespace
        progress = Progress(await self._read(ns, name))
        first = progress.first()
        if first is not None:
            yield first
        if progress.finished:
            return
        events = self._follow(ns, name, progress.last.resource_version)
        # The deadline bounds each wait for the next event, not the whole generator: a timeout
        # scope must not stay open across a yield (it would cancel the caller's code instead).
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        async with contextlib.aclosing(events):
            while True:
                scope = asyncio.timeout_at(deadline)
                try:
                    async with scope:
                        kind, raw = await anext(events)
                except TimeoutError:
                    if scope.expired():  # ours, not a transport's own timeout
                        raise progress.timed_out(timeout, "watching") from None
                    raise
                saga = progress(kind, raw)
                if saga is not None:
                    yield saga
                    if progress.finished:
                        return

    async def delete(self, name: str, *, namespace: str | None = None) -> None:
        """Delete the saga (what is running is not undone: ``compensate`` first for that)."""
        ns = namespace or self.namespace
        try:
            await self.objects.delete_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, PLURAL, name
            )
        except ApiException as error:
            raise translate(error, namespace=ns, name=name) from None

    # ------------------------------------------------------------------ transport

    async def _read(self, namespace: str, name: str, uid: str | None = None) -> Saga:
        try:
            raw = await self.objects.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            raise translate(error, namespace=namespace, name=name) from None
        return resource.same_incarnation(Saga.from_raw(raw), uid)

    async def _list(
        self, namespace: str | None, all_namespaces: bool, selector: str, labels: str = ""
    ) -> list[AsyncSagaHandle]:
        ns = "" if all_namespaces else namespace or self.namespace
        try:
            objects = await self._store.list(ns or None, selector, labels)
        except (ApiException, Conflict, NotFound) as error:  # the apiserver's is the cause
            raise translate(error.__cause__ or error, namespace=ns) from None
        return [AsyncSagaHandle(self, Saga.of(obj)) for obj in objects]

    async def _compensate(self, namespace: str, name: str, uid: str | None = None) -> Saga:
        return await self._patch(namespace, name, resource.compensate_patch(uid))

    async def _redrive(self, namespace: str, name: str, uid: str | None = None) -> Saga:
        saga = await self._read(namespace, name, uid)
        return await self._patch(namespace, name, resource.redrive_patch(saga))

    async def _patch(self, namespace: str, name: str, patch: dict[str, Any]) -> Saga:
        """A merge patch of the saga's spec (compensate, suspend, redrive)."""
        try:
            obj = await self._store.merge_patch(namespace, name, patch)
        except (ApiException, Conflict, NotFound) as error:  # the apiserver's is the cause
            raise translate(error.__cause__ or error, namespace=namespace, name=name) from None
        return Saga.of(obj)

    async def _answer(
        self, namespace: str, name: str, step: str, approved: bool, reason: str, by: str | None
    ) -> Saga:
        saga = await self._read(namespace, name)
        approvals.check(saga, step)
        api: Any = self.objects  # _content_type is accepted at run time, not in the stubs
        try:
            if by is None:
                auth: Any = client.AuthenticationV1Api(self.api)
                by = approvals.username(
                    await auth.create_self_subject_review(approvals.SELF_SUBJECT_REVIEW)
                )
            answer = ApprovalAnswer(step=step, approved=approved, by=by, reason=reason)
            raw = await api.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                approvals.answer_patch(saga, answer),
                _content_type="application/json-patch+json",
            )
        except ApiException as error:
            raise approvals.refused_by_api(
                translate(error, namespace=namespace, name=name), saga, step
            ) from None
        return Saga.from_raw(raw)

    async def _wait(
        self, namespace: str, name: str, timeout: float | None, uid: str | None = None
    ) -> Saga:
        waiter = Waiter(await self._read(namespace, name, uid))
        done = waiter.done()
        if done is not None:
            return done
        events = self._follow(namespace, name, waiter.last.resource_version)
        scope = asyncio.timeout(timeout)
        try:
            async with contextlib.aclosing(events), scope:
                async for kind, raw in events:
                    saga = waiter(kind, raw)
                    if saga is not None:
                        return saga
        except TimeoutError:
            if scope.expired():  # ours, not a transport's own timeout
                raise waiter.timed_out(timeout, "waiting") from None
            raise
        raise AssertionError("follow() ended")  # it never does

    async def _follow(
        self, namespace: str, name: str, version: str
    ) -> AsyncGenerator[tuple[str, Any], None]:
        events = follow(
            self.objects.list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            field_selector=resource.name_selector(name),
            resource_version=version,
        )
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
        except ApiException as error:
            raise translate(error, namespace=namespace, name=name) from None
