"""A Saga as the client sees it, with the seed Manager's helper methods."""

from __future__ import annotations

from dataclasses import dataclass

from kubesaga.models import SagaPhase, SagaSpec, SagaStatus, StepPhase, parse_spec, parse_status
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

    @classmethod
    def of(cls, obj: SagaObject) -> Saga:
        return cls(
            namespace=obj.namespace,
            name=obj.name,
            uid=obj.uid,
            generation=obj.generation,
            spec=parse_spec(obj.spec),
            status=parse_status(obj.status),
        )

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
