"""A Saga as the client sees it at one moment, with the seed Manager's helper methods.

A ``Saga`` is an immutable snapshot (what one read or watch event returned); a ``SagaHandle``
refers to the live object and holds the latest snapshot. Imports no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubesaga.models import SagaPhase, SagaSpec, SagaStatus, StepPhase, parse_spec, parse_status

if TYPE_CHECKING:
    from kubesaga.store import SagaObject


@dataclass(frozen=True)
class Saga:
    """Spec and status of one Saga object."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: SagaSpec
    status: SagaStatus | None

    resource_version: str = ""
    """The object's version when this snapshot was taken (where a watch can start from)."""
    deleting: bool = False
    """Deletion was requested (metadata.deletionTimestamp is set)."""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Saga:
        """Parse a Saga object as the apiserver returns it (a dict, from either client)."""
        metadata: Mapping[str, Any] = raw.get("metadata") or {}
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation") or 1),
            spec=parse_spec(raw.get("spec")),
            status=parse_status(raw.get("status")),
            resource_version=str(metadata.get("resourceVersion", "")),
            deleting=bool(metadata.get("deletionTimestamp")),
        )

    @classmethod
    def of(cls, obj: SagaObject) -> Saga:
        """Parse the store's ``SagaObject`` (the operator side's wrapper of the same dict)."""
        return cls.from_raw(obj.raw)

    @property
    def phase(self) -> SagaPhase:
        return self.status.phase if self.status else SagaPhase.PENDING

    def is_final(self) -> bool:
        return self.phase.is_final

    def is_settled(self) -> bool:
        """Final, and the operator has acted on the latest spec (e.g. a compensate request)."""
        observed = self.status.observed_generation if self.status else None
        return self.is_final() and observed is not None and observed >= self.generation

    def is_completed(self) -> bool:
        return self.phase is SagaPhase.COMPLETED

    def is_compensated(self) -> bool:
        return self.phase is SagaPhase.COMPENSATED

    def is_failed(self) -> bool:
        return self.phase is SagaPhase.FAILED

    def completed_steps(self) -> list[str]:
        """Steps that succeeded (and are not undone), in spec order."""
        if self.status is None:
            return []
        return [s.name for s in self.status.steps if s.phase is StepPhase.SUCCEEDED]

    def next_step(self) -> str | None:
        """The first step not finished yet (running or waiting), or None."""
        if self.status is None:
            return self.spec.steps[0].name if self.spec.steps else None
        for step in self.status.steps:
            if step.phase in (StepPhase.PENDING, StepPhase.RUNNING):
                return step.name
        return None
