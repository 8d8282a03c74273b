"""``SagaClient``: start, inspect, compensate, approve, wait for and watch Sagas, blocking.

For the services that start sagas from synchronous code (Django, Flask, Celery tasks,
scripts), on the official ``kubernetes`` package. It is ``AsyncSagaClient`` method for method,
with the same docs; everything but the transport lives in ``resource``, ``progress`` and
``api_errors``. Safe to share between threads (the ``kubernetes`` ApiClient pools connections).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubesaga.client import approvals, resource
from kubesaga.client.api_errors import translate
from kubesaga.client.errors import SagaNotFound
from kubesaga.client.handles import SagaHandle
from kubesaga.client.progress import Progress, Waiter
from kubesaga.client.saga import Saga
from kubesaga.client.sync_watch import follow
from kubesaga.models import (
    API_GROUP,
    API_VERSION,
    PLURAL,
    ApprovalAnswer,
    JsonObject,
    SagaSpec,
    StepSpec,
)
from kubesaga.store.config_source import IN_CLUSTER, config_source


class SagaClient:
    """Sagas in one namespace by default (every method takes ``namespace=`` to use another).

    Errors are the ``SagaClientError`` family (``kubesaga.SagaNotFound`` and friends), never a
    transport's own exception.
    """

    def __init__(self, api: client.ApiClient, namespace: str = "default") -> None:
        self.api = api
        self.namespace = namespace
        # Typed as Any: the package's signatures are partly untyped and return plain objects.
        self.objects: Any = client.CustomObjectsApi(api)

    @classmethod
    def connect(cls, kubeconfig: str | None = None, namespace: str = "default") -> SagaClient:
        """A client from a kubeconfig (default: $KUBECONFIG), else the in-cluster account.

        The same precedence as the operator and ``AsyncSagaClient`` (``config_source``).
        """
        configuration = client.Configuration()
        path = config_source(kubeconfig)
        loaders: Any = config  # untyped in the package
        if path is IN_CLUSTER:
            loaders.load_incluster_config(client_configuration=configuration)
        else:
            loaders.load_kube_config(
                config_file=path, client_configuration=configuration, persist_config=False
            )
        return cls(client.ApiClient(configuration=configuration), namespace)

    def close(self) -> None:
        api: Any = self.api  # untyped in the package
        api.close()

    def __enter__(self) -> SagaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(
        self,
        name: str,
        steps: Iterable[StepSpec | Mapping[str, Any]],
        context: JsonObject | None = None,
        *,
        namespace: str | None = None,
        deadline_seconds: float | None = None,
        ttl_seconds_after_finished: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> SagaHandle:
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
        return self.create(name, spec, namespace=ns, labels=labels)

    def create(
        self,
        name: str,
        spec: SagaSpec,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> SagaHandle:
        """``start`` with a ready ``SagaSpec`` (e.g. from a manifest); equally idempotent."""
        ns = namespace or self.namespace
        body = resource.saga_body(ns, name, spec, labels)
        try:
            raw = self.objects.create_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, PLURAL, body
            )
            return SagaHandle(self, Saga.from_raw(raw), created=True)
        except ApiException as error:
            if error.status != 409:
                raise translate(error, namespace=ns, name=name) from None
        try:
            existing = self._read(ns, name)
        except SagaNotFound:  # deleted between our create and read: create it once more
            return self.create(name, spec, namespace=ns, labels=labels)
        return SagaHandle(self, resource.adopt_existing(existing, spec))

    def get(self, name: str, *, namespace: str | None = None) -> SagaHandle:
        """A handle to an existing saga; ``SagaNotFound`` if there is none."""
        return SagaHandle(self, self._read(namespace or self.namespace, name))

    def list_sagas(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        label_selector: str = "",
    ) -> list[SagaHandle]:
        """Every saga in the namespace (or in all of them), or those ``label_selector`` picks
        (``app=shop``, as ``kubectl -l``)."""
        return self._list(namespace, all_namespaces, "", label_selector)

    def list_active(
        self, *, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[SagaHandle]:
        """Sagas not in a final phase (filtered by the apiserver on status.phase)."""
        return self._list(namespace, all_namespaces, resource.ACTIVE_SELECTOR)

    def compensate(self, name: str, *, namespace: str | None = None) -> Saga:
        """Ask the operator to undo the saga (also once Completed); returns at once.

        Sets ``spec.compensate``; ``wait`` afterwards waits for the compensation to finish.
        """
        return self._compensate(namespace or self.namespace, name)

    def suspend(self, name: str, *, namespace: str | None = None) -> Saga:
        """Stop dispatching for the saga (``spec.suspend: true``); returns at once.

        Attempts in flight finish and are recorded; no step, retry or compensation starts
        until ``resume``. The operator shows it as phase ``Suspended`` (a final saga stays as
        it is). The deadline keeps counting unless the saga set ``suspendPausesDeadline``.
        """
        patch = resource.suspend_patch(True, None)
        return self._patch(namespace or self.namespace, name, patch)

    def resume(self, name: str, *, namespace: str | None = None) -> Saga:
        """Let a suspended saga go on from where it stood (``spec.suspend: false``)."""
        patch = resource.suspend_patch(False, None)
        return self._patch(namespace or self.namespace, name, patch)

    def redrive(self, name: str, *, namespace: str | None = None) -> Saga:
        """Run the failed compensations of a saga Failed because one failed, then the rest.

        Bumps ``spec.redrive``; returns at once (``wait`` waits for the outcome). Raises
        ``SagaNotRedrivable``, changing nothing, for any other saga (Completed, Compensated,
        still running, invalid, or with a redrive pending).
        """
        return self._redrive(namespace or self.namespace, name)

    def approve(
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
        return self._answer(namespace or self.namespace, name, step, True, reason, by)

    def reject(
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
        return self._answer(namespace or self.namespace, name, step, False, reason, by)

    def wait(
        self, name: str, timeout: float | None = None, *, namespace: str | None = None
    ) -> Saga:
        """Wait (by watching, not polling) until the saga settles; return its final snapshot.

        Settled means final for the latest spec: right after ``compensate()`` on a Completed
        saga this waits for the compensation, not for the completion already recorded. Raises
        ``SagaTimeout`` after ``timeout`` seconds, ``SagaNotFound`` if it is (or gets) deleted.
        """
        return self._wait(namespace or self.namespace, name, timeout)

    def watch(
        self, name: str, timeout: float | None = None, *, namespace: str | None = None
    ) -> Generator[Saga, None, None]:
        """Yield the saga now, then again whenever its phase or a step's phase changes.

        Ends after yielding the settled saga (see ``wait``). Raises ``SagaTimeout`` when it has
        not settled after ``timeout`` seconds, ``SagaNotFound`` if it is deleted. Leaving early?
        Use ``contextlib.closing(client.watch(...))`` so the watch request ends with the loop.
        """
        ns = namespace or self.namespace
        progress = Progress(self._read(ns, name))
        deadline = _deadline(timeout)  # from the first read on, as in AsyncSagaClient
        first = progress.first()
        if first is not None:
            yield first
        if progress.finished:
            return
        for kind, raw in self._follow(ns, name, progress.last.resource_version, deadline):
            saga = progress(kind, raw)
            if saga is not None:
                yield saga
                if progress.finished:
                    return
        raise progress.timed_out(timeout, "watching")

    def delete(self, name: str, *, namespace: str | None = None) -> None:
        """Delete the saga (what is running is not undone: ``compensate`` first for that)."""
        ns = namespace or self.namespace
        try:
            self.objects.delete_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL, name)
        except ApiException as error:
            raise translate(error, namespace=ns, name=name) from None

    # ------------------------------------------------------------------ transport

    def _read(self, namespace: str, name: str, uid: str | None = None) -> Saga:
        try:
            raw = self.objects.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            raise translate(error, namespace=namespace, name=name) from None
        return resource.same_incarnation(Saga.from_raw(raw), uid)

    def _list(
        self, namespace: str | None, all_namespaces: bool, selector: str, labels: str = ""
    ) -> list[SagaHandle]:
        ns = "" if all_namespaces else namespace or self.namespace
        try:
            if ns:
                raw = self.objects.list_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    ns,
                    PLURAL,
                    field_selector=selector,
                    label_selector=labels,
                )
            else:
                raw = self.objects.list_cluster_custom_object(
                    API_GROUP,
                    API_VERSION,
                    PLURAL,
                    field_selector=selector,
                    label_selector=labels,
                )
        except ApiException as error:
            raise translate(error, namespace=ns) from None
        return [SagaHandle(self, Saga.from_raw(item)) for item in raw.get("items", [])]

    def _compensate(self, namespace: str, name: str, uid: str | None = None) -> Saga:
        return self._patch(namespace, name, resource.compensate_patch(uid))

    def _redrive(self, namespace: str, name: str, uid: str | None = None) -> Saga:
        saga = self._read(namespace, name, uid)
        return self._patch(namespace, name, resource.redrive_patch(saga))

    def _patch(self, namespace: str, name: str, patch: dict[str, Any]) -> Saga:
        """A merge patch of the saga's spec (compensate, suspend, redrive)."""
        try:
            raw = self.objects.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            raise translate(error, namespace=namespace, name=name) from None
        return Saga.from_raw(raw)

    def _answer(
        self, namespace: str, name: str, step: str, approved: bool, reason: str, by: str | None
    ) -> Saga:
        saga = self._read(namespace, name)
        approvals.check(saga, step)
        try:
            auth: Any = client.AuthenticationV1Api(self.api)  # takes a dict at run time
            who = by or approvals.username(
                auth.create_self_subject_review(approvals.SELF_SUBJECT_REVIEW)
            )
            answer = ApprovalAnswer(step=step, approved=approved, by=who, reason=reason)
            raw = self.objects.patch_namespaced_custom_object(
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

    def _wait(
        self, namespace: str, name: str, timeout: float | None, uid: str | None = None
    ) -> Saga:
        waiter = Waiter(self._read(namespace, name, uid))
        deadline = _deadline(timeout)  # from the first read on, as in AsyncSagaClient
        done = waiter.done()
        if done is not None:
            return done
        for kind, raw in self._follow(namespace, name, waiter.last.resource_version, deadline):
            saga = waiter(kind, raw)
            if saga is not None:
                return saga
        raise waiter.timed_out(timeout, "waiting")

    def _follow(
        self, namespace: str, name: str, version: str, deadline: float | None
    ) -> Iterator[tuple[str, Any]]:
        try:
            yield from follow(
                self.objects.list_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                field_selector=resource.name_selector(name),
                resource_version=version,
                deadline=deadline,
            )
        except ApiException as error:
            raise translate(error, namespace=namespace, name=name) from None


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout
