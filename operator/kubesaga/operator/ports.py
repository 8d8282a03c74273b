"""What the orchestrator needs of the store and the broker, so tests can pass in-memory ones.

``kubesaga.store.SagaStore`` and ``kubesaga.broker.Broker`` satisfy these as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kubesaga.models import Command
from kubesaga.store import SagaObject


class Sagas(Protocol):
    async def get(self, namespace: str, name: str) -> SagaObject: ...

    async def replace_status(self, saga: SagaObject, status: Mapping[str, Any]) -> SagaObject:
        """Raise ``kubesaga.store.Conflict`` if ``saga`` is not the current version."""
        ...

    async def delete(self, namespace: str, name: str, uid: str | None = None) -> None: ...


class Publisher(Protocol):
    async def publish_command(self, command: Command) -> None: ...
