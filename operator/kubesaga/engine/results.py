"""Judging a worker's result: applied only when it answers the attempt now in flight."""

from __future__ import annotations

from kubesaga.engine import compensation, forward
from kubesaga.engine.commands import attempt_of, awaiting_result
from kubesaga.engine.draft import Draft
from kubesaga.engine.types import APPLIED, Judgement, LatencySample, Verdict
from kubesaga.models import CommandKind, Result


def judge(draft: Draft, result: Result) -> Judgement:
    """Record ``result`` if it is the awaited answer; else say why it is dropped or refused."""
    ref = draft.saga.ref
    if result.saga.uid != ref.uid:
        return Judgement(
            Verdict.REJECTED, f"result is for saga uid {result.saga.uid}, not {ref.uid}"
        )
    try:
        step = draft.status.step(result.step)
    except KeyError:
        return Judgement(Verdict.REJECTED, f"saga has no step {result.step!r}")
    attempt = attempt_of(step, result.kind)
    if attempt is None or attempt.dispatch_id is None:
        return Judgement(
            Verdict.REJECTED, f"no {result.kind.value} of step {step.name!r} was dispatched"
        )
    if result.dispatch_id != attempt.dispatch_id or result.attempt != attempt.attempt:
        # Never name the current id: whoever reads dead letters or logs could answer with it.
        return Judgement(
            Verdict.REJECTED,
            f"stale or unknown dispatch id {result.dispatch_id!r} for step {step.name!r} "
            f"(current attempt {attempt.attempt})",
        )
    if not awaiting_result(attempt):
        return Judgement(
            Verdict.DUPLICATE, f"result of {result.dispatch_id!r} was already recorded"
        )
    if attempt.dispatched_at is not None:
        spec = draft.spec.step(step.name)
        action = spec.action if result.kind is CommandKind.EXECUTE else spec.compensation
        seconds = (draft.now - attempt.dispatched_at).total_seconds()
        draft.samples.append(LatencySample(action or "", max(seconds, 0.0)))
    if result.kind is CommandKind.EXECUTE:
        forward.record_execute(draft, step, result)
    else:
        compensation.record(draft, step, result)
    return APPLIED
