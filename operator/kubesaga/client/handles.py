"""Handles: what ``start`` and ``get`` return, so callers stop passing name and namespace again.

A handle refers to one saga (one uid: if the saga is deleted and a new one is created under the
same name, the handle's ``wait`` raises ``SagaNotFound`` rather than follow the stranger) and
keeps the latest snapshot it read. ``status`` and ``steps`` read that snapshot; ``refresh``,
``wait``, ``compensate``, ``suspend``, ``resume`` and ``redrive`` update it. ``SagaHandle``
blocks, ``AsyncSagaHandle`` awaits; both read the same snapshot the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubesaga.client import resource
from kubesaga.client.saga import Saga
from kubesaga.models import SagaPhase, SagaSpec, SagaStatus, StepStatus

if TYPE_CHECKING:
    from kubesaga.client.async_client import AsyncSagaClient
    from kubesaga.client.sync_client import SagaClient


class _SagaRef:
    """The snapshot side of a handle, shared by the sync and async flavours."""

    saga: Saga
    """The latest snapshot this handle read."""

    @property
    def name(self) -> str:
        return self.saga.name

    @property
    def namespace(self) -> str:
        return self.saga.namespace

    @property
    def uid(self) -> str:
        return self.saga.uid

    @property
    def spec(self) -> SagaSpec:
        return self.saga.spec

    @property
    def phase(self) -> SagaPhase:
        return self.saga.phase

    @property
    def status(self) -> SagaStatus:
        """The saga's status; a blank ``Pending`` one until the operator first writes it."""
        return self.saga.status or SagaStatus()

    @property
    def steps(self) -> list[StepStatus]:
        """One entry per spec step, in spec order (``Pending`` until the operator saw them)."""
        if self.saga.status is not None and self.saga.status.steps:
            return list(self.saga.status.steps)
        return [StepStatus(name=step.name) for step in self.saga.spec.steps]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace}/{self.name} {self.phase}>"


class SagaHandle(_SagaRef):
    """One saga, through a blocking ``SagaClient``."""

    def __init__(self, client: SagaClient, saga: Saga, *, created: bool = False) -> None:
        self.client = client
        self.saga = saga
        self.created = created
        """True when ``start``/``create`` created the saga; False when it already existed with
        the same spec (the idempotent retry) or the handle came from ``get``/``list_sagas``."""

    def refresh(self) -> Saga:
        """Read the saga again; return (and keep) the new snapshot."""
        self.saga = self.client._read(self.namespace, self.name, uid=self.uid)
        return self.saga

    def wait(self, timeout: float | None = None) -> Saga:
        """Block until the saga settles (see ``SagaClient.wait``); return the final snapshot."""
        self.saga = self.client._wait(self.namespace, self.name, timeout, uid=self.uid)
        return self.saga

    def compensate(self) -> Saga:
        """Ask the operator to undo the saga (see ``SagaClient.compensate``)."""
        self.saga = self.client._compensate(self.namespace, self.name, uid=self.uid)
        return self.saga

    def suspend(self) -> Saga:
        """Stop dispatching for the saga (see ``SagaClient.suspend``)."""
        patch = resource.suspend_patch(True, self.uid)
        self.saga = self.client._patch(self.namespace, self.name, patch)
        return self.saga

    def resume(self) -> Saga:
        """Let the suspended saga go on (see ``SagaClient.resume``)."""
        patch = resource.suspend_patch(False, self.uid)
        self.saga = self.client._patch(self.namespace, self.name, patch)
        return self.saga

    def redrive(self) -> Saga:
        """Redrive the failed compensations (see ``SagaClient.redrive``)."""
        self.saga = self.client._redrive(self.namespace, self.name, uid=self.uid)
        return self.saga


class AsyncSagaHandle(_SagaRef):
    """One saga, through an ``AsyncSagaClient``."""

    def __init__(self, client: AsyncSagaClient, saga: Saga, *, created: bool = False) -> None:
        self.client = client
        self.saga = saga
        self.created = created
        """True when ``start``/``create`` created the saga; False when it already existed with
        the same spec (the idempotent retry) or the handle came from ``get``/``list_sagas``."""

    async def refresh(self) -> Saga:
        """Read the saga again; return (and keep) the new snapshot."""
        self.saga = await self.client._read(self.namespace, self.name, uid=self.uid)
        return self.saga

    async def wait(self, timeout: float | None = None) -> Saga:
        """Wait until the saga settles (see ``AsyncSagaClient.wait``); return the final one."""
        self.saga = await self.client._wait(self.namespace, self.name, timeout, uid=self.uid)
        return self.saga

    async def compensate(self) -> Saga:
        """Ask the operator to undo the saga (see ``AsyncSagaClient.compensate``)."""
        self.saga = await self.client._compensate(self.namespace, self.name, uid=self.uid)
        return self.saga

    async def suspend(self) -> Saga:
        """Stop dispatching for the saga (see ``AsyncSagaClient.suspend``)."""
        patch = resource.suspend_patch(True, self.uid)
        self.saga = await self.client._patch(self.namespace, self.name, patch)
        return self.saga

    async def resume(self) -> Saga:
        """Let the suspended saga go on (see ``AsyncSagaClient.resume``)."""
        patch = resource.suspend_patch(False, self.uid)
        self.saga = await self.client._patch(self.namespace, self.name, patch)
        return self.saga

    async def redrive(self) -> Saga:
        """Redrive the failed compensations (see ``AsyncSagaClient.redrive``)."""
        self.saga = await self.client._redrive(self.namespace, self.name, uid=self.uid)
        return self.saga
