"""What a decision means to the outside: broker outcomes, metrics and log lines.

Kept apart from the loop so ``orchestrator.py`` reads as read, decide, write, publish.
"""

from __future__ import annotations

import logging

from kubesaga.broker import Outcome
from kubesaga.engine import Decision, Event, Judgement, ResultReceived, Transition, Verdict
from kubesaga.operator.cache import Key
from kubesaga.operator.metrics import Metrics
from kubesaga.store import SagaObject

log = logging.getLogger("kubesaga.operator")


def outcome(metrics: Metrics, event: Event, judgement: Judgement | None, key: Key) -> Outcome:
    """How the broker should settle ``event``'s message; ``judgement`` None: the saga is gone."""
    if not isinstance(event, ResultReceived):
        return Outcome.ack()
    if judgement is None:
        metrics.results.labels(verdict=Verdict.REJECTED.value).inc()
        return Outcome.dead_letter(f"saga {key[0]}/{key[1]} not found")
    metrics.results.labels(verdict=judgement.verdict.value).inc()
    if judgement.verdict is Verdict.REJECTED:
        return Outcome.dead_letter(judgement.reason)
    return Outcome.ack()


def record(metrics: Metrics, decision: Decision) -> None:
    for sample in decision.samples:
        metrics.step_seconds.labels(action=sample.action).observe(sample.seconds)


def log_transitions(obj: SagaObject, transitions: tuple[Transition, ...]) -> None:
    """Saga phases and problems at INFO; routine step progress at DEBUG (a log line per step
    was 8% of the operator's CPU in profiles, and Events record it)."""
    for t in transitions:
        level = logging.INFO if t.step is None or t.warning else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s/%s %s: %s",
                obj.namespace,
                obj.name,
                t.reason,
                t.message,
                extra={"saga": f"{obj.namespace}/{obj.name}", "step": t.step},
            )
