"""The saga state machine: ``decide(saga, event, now, token) -> Decision``.

Pure: no I/O, no clock, no randomness. Time arrives as ``now``; the random part of dispatch ids
arrives as ``token``. Every saga rule (docs/architecture.md, "The engine") lives here, so it can
be tested without a cluster or a broker, and the operator stays a thin read-decide-write-publish
loop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from kubesaga.engine.commands import build_command, in_flight, make_dispatch_id
from kubesaga.engine.graph import StepGraph, spec_problem, status_problem
from kubesaga.engine.types import (
    Decision,
    Event,
    ResultReceived,
    SagaView,
    Transition,
    Verdict,
)
from kubesaga.models import (
    AttemptStatus,
    CommandKind,
    CompensationStatus,
    Condition,
    ConditionStatus,
    ErrorInfo,
    Result,
    ResultStatus,
    SagaPhase,
    SagaStatus,
    StepPhase,
    StepSpec,
    StepStatus,
    limits,
)

COMPENSATION_PENDING = (StepPhase.SUCCEEDED, StepPhase.FAILED)


def decide(saga: SagaView, event: Event, now: datetime, token: str) -> Decision:
    """Apply ``event`` to ``saga`` at time ``now``; return the new status and what to publish."""
    return decide_all(saga, [event], now, token)


def decide_all(saga: SagaView, events: Sequence[Event], now: datetime, token: str) -> Decision:
    """Apply several events that arrived together, then move the saga on once.

    Recording every result before deciding what to dispatch matters: with [b succeeded,
    c failed] in one batch, the successor of b must not be dispatched, since c's failure starts
    compensation. ``Decision.verdicts`` has one entry per event.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not events:
        raise ValueError("decide_all needs at least one event")
    return _Run(saga, now, token).run(events)


def reject_spec(
    status: SagaStatus | None, generation: int, problem: str, now: datetime
) -> Decision:
    """A saga whose spec cannot even be parsed: Failed with a Valid=False condition."""
    new = status.model_copy(deep=True) if status else SagaStatus()
    if new.phase is SagaPhase.PENDING or new.observed_generation is None:
        _fail_invalid(new, problem, now)
    new.observed_generation = generation
    return Decision(status=new, changed=new != status)


def _fail_invalid(status: SagaStatus, problem: str, now: datetime) -> None:
    status.phase = SagaPhase.FAILED
    status.reason = "InvalidSpec"
    status.message = f"invalid saga: {problem}"
    status.started_at = status.started_at or now
    status.finished_at = now
    _set_condition(status, "Valid", "False", "InvalidSpec", problem, now)
    _set_condition(status, "Finished", "True", "Failed", status.message, now)


def _set_condition(
    status: SagaStatus,
    type_: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> None:
    for cond in status.conditions:
        if cond.type == type_:
            if cond.status != value:
                cond.last_transition_time = now
            cond.status = value
            cond.reason = reason
            cond.message = message
            return
    status.conditions.append(
        Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=now,
        )
    )


def _truncate(error: ErrorInfo) -> ErrorInfo:
    message = error.message
    if len(message) > limits.MAX_ERROR_MESSAGE_CHARS:
        message = message[: limits.MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return ErrorInfo(
        message=message, type=error.type[: limits.MAX_ERROR_TYPE_CHARS], retryable=error.retryable
    )


class _Run:
    """One call of the engine: a private working copy of the status and what to emit."""

    def __init__(self, saga: SagaView, now: datetime, token: str) -> None:
        self.saga = saga
        self.spec = saga.spec
        self.now = now
        self.token = token
        self.graph = StepGraph.of(saga.spec)
        self.status = saga.status.model_copy(deep=True) if saga.status else SagaStatus()
        self.commands: list[tuple[StepSpec, CommandKind]] = []
        self.transitions: list[Transition] = []
        self.samples: list[tuple[str, float]] = []

    # -- entry ---------------------------------------------------------------------------

    def run(self, events: Sequence[Event]) -> Decision:
        def refuse_results(reason: str) -> list[tuple[Verdict, str]]:
            return [
                (Verdict.REJECTED, reason)
                if isinstance(e, ResultReceived)
                else (Verdict.APPLIED, "")
                for e in events
            ]

        if self.saga.status is None or self.status.observed_generation is None:
            problem = spec_problem(self.spec)
            if problem:
                _fail_invalid(self.status, problem, self.now)
                self.status.observed_generation = self.saga.generation
                self._note("InvalidSpec", self.status.message, warning=True)
                return self._decision(refuse_results("saga spec is invalid"))
            self._start()
        elif self.status.reason in ("InvalidSpec", "InvalidStatus"):
            return self._decision(refuse_results("saga was rejected as invalid"))
        else:
            problem = status_problem(self.spec, self.status)
            if problem:
                self._fail_status(problem)
                return self._decision(refuse_results("saga status is invalid"))
        spec_changed = self.status.observed_generation != self.saga.generation
        self.status.observed_generation = self.saga.generation
        verdicts: list[tuple[Verdict, str]] = []
        for event in events:
            if isinstance(event, ResultReceived):
                verdicts.append(self._apply_result(event.result))
            else:
                verdicts.append((Verdict.APPLIED, ""))
        if any(verdict is Verdict.APPLIED for verdict, _ in verdicts):
            self._advance(spec_changed)
        return self._decision(verdicts)

    def _fail_status(self, problem: str) -> None:
        """A status that cannot belong to this spec (edited by hand?): stop, a human must look."""
        st = self.status
        st.phase = SagaPhase.FAILED
        st.reason = "InvalidStatus"
        st.message = f"invalid status: {problem}; nothing more is dispatched"
        st.finished_at = self.now
        _set_condition(st, "Finished", "True", "Failed", st.message, self.now)
        self._note("InvalidStatus", st.message, warning=True)

    def _decision(self, verdicts: list[tuple[Verdict, str]]) -> Decision:
        self._derive()
        commands = tuple(
            build_command(self.saga.ref, self.spec, self.graph, self.status, step, kind)
            for step, kind in self.commands
        )
        return Decision(
            status=self.status,
            changed=self.status != self.saga.status,
            commands=commands,
            transitions=tuple(self.transitions),
            wake_at=self._wake_at(),
            verdicts=tuple(verdicts),
            samples=tuple(self.samples),
        )

    def _note(self, reason: str, message: str, warning: bool = False, step: str = "") -> None:
        self.transitions.append(Transition(reason, message, warning, step or None))

    # -- start ---------------------------------------------------------------------------

    def _start(self) -> None:
        st = self.status
        st.steps = [StepStatus(name=name) for name in self.graph.order]
        st.phase = SagaPhase.RUNNING
        st.reason = "Started"
        st.message = f"started with {len(st.steps)} steps"
        st.started_at = self.now
        st.observed_generation = self.saga.generation
        if self.spec.deadline_seconds is not None:
            st.deadline_at = self.now + timedelta(seconds=self.spec.deadline_seconds)
        _set_condition(st, "Valid", "True", "Accepted", "", self.now)
        _set_condition(st, "Finished", "False", "Running", "", self.now)
        self._note("Started", st.message)

    # -- results -------------------------------------------------------------------------

    def _apply_result(self, result: Result) -> tuple[Verdict, str]:
        ref = self.saga.ref
        if result.saga.uid != ref.uid:
            return Verdict.REJECTED, f"result is for saga uid {result.saga.uid}, not {ref.uid}"
        try:
            step = self.status.step(result.step)
        except KeyError:
            return Verdict.REJECTED, f"saga has no step {result.step!r}"
        attempt: AttemptStatus | None = (
            step if result.kind is CommandKind.EXECUTE else step.compensation
        )
        if attempt is None or attempt.dispatch_id is None:
            return Verdict.REJECTED, f"no {result.kind.value} of step {step.name!r} was dispatched"
        if result.dispatch_id != attempt.dispatch_id or result.attempt != attempt.attempt:
            # Never name the current id: whoever reads dead letters or logs could answer with it.
            return (
                Verdict.REJECTED,
                f"stale or unknown dispatch id {result.dispatch_id!r} for step {step.name!r} "
                f"(current attempt {attempt.attempt})",
            )
        if not in_flight(attempt):
            return Verdict.DUPLICATE, f"result of {result.dispatch_id!r} was already recorded"
        if attempt.dispatched_at is not None:
            spec = self.spec.step(step.name)
            action = spec.action if result.kind is CommandKind.EXECUTE else spec.compensation
            seconds = (self.now - attempt.dispatched_at).total_seconds()
            self.samples.append((action or "", max(seconds, 0.0)))
        if result.kind is CommandKind.EXECUTE:
            self._record_execute(step, result)
        else:
            self._record_compensation(step, result)
        return Verdict.APPLIED, ""

    def _record_execute(self, step: StepStatus, result: Result) -> None:
        if result.status is ResultStatus.SUCCEEDED:
            output = result.output or {}
            size = len(json.dumps(output, separators=(",", ":")).encode())
            if size <= limits.MAX_OUTPUT_BYTES:
                self._succeed(step, output)
                return
            error = ErrorInfo(
                type="OutputTooLarge",
                message=(
                    f"step output is {size} bytes, over the limit of {limits.MAX_OUTPUT_BYTES}; "
                    "return a reference (an id, a URL) instead of the data"
                ),
                retryable=False,
            )
        else:
            assert result.error is not None
            error = result.error
        self._fail_attempt(step, error)

    def _succeed(self, step: StepStatus, output: dict[str, object]) -> None:
        step.phase = StepPhase.SUCCEEDED
        step.output = output
        step.error = None
        step.finished_at = self.now
        step.attempt_deadline = None
        self._note("StepSucceeded", f"step {step.name} succeeded", step=step.name)

    def _fail_attempt(self, step: StepStatus, error: ErrorInfo) -> None:
        """An attempt failed (or timed out): retry under the policy, or fail the step."""
        error = _truncate(error)
        step.error = error
        step.attempt_deadline = None
        policy = self.spec.step(step.name).retry
        if (
            error.retryable
            and step.attempt < policy.max_attempts
            and self.status.phase is SagaPhase.RUNNING
        ):
            delay = policy.delay_before(step.attempt + 1)
            step.next_attempt_at = self.now + timedelta(seconds=delay)
            self._note(
                "StepRetrying",
                f"step {step.name} attempt {step.attempt} failed ({error.type}: {error.message}); "
                f"retrying in {delay:g}s",
                warning=True,
                step=step.name,
            )
            return
        step.phase = StepPhase.FAILED
        step.finished_at = self.now
        if error.retryable and step.attempt >= policy.max_attempts:
            why = f"after {step.attempt} attempts"
        elif error.retryable:
            why = "(no retry while compensating)"
        else:
            why = "permanently"
        self._note(
            "StepFailed",
            f"step {step.name} failed {why}: {error.type}: {error.message}",
            warning=True,
            step=step.name,
        )

    def _record_compensation(self, step: StepStatus, result: Result) -> None:
        comp = step.compensation
        assert comp is not None
        comp.attempt_deadline = None
        if result.status is ResultStatus.SUCCEEDED:
            step.phase = StepPhase.COMPENSATED
            comp.finished_at = self.now
            comp.error = None
            self._note("StepCompensated", f"step {step.name} compensated", step=step.name)
            return
        assert result.error is not None
        self._fail_compensation(step, result.error)

    def _fail_compensation(self, step: StepStatus, error: ErrorInfo) -> None:
        comp = step.compensation
        assert comp is not None
        error = _truncate(error)
        comp.error = error
        comp.attempt_deadline = None
        policy = self.spec.step(step.name).compensation_policy
        if error.retryable and comp.attempt < policy.max_attempts:
            delay = policy.delay_before(comp.attempt + 1)
            comp.next_attempt_at = self.now + timedelta(seconds=delay)
            self._note(
                "CompensationRetrying",
                f"compensation of {step.name} attempt {comp.attempt} failed "
                f"({error.type}: {error.message}); retrying in {delay:g}s",
                warning=True,
                step=step.name,
            )
            return
        step.phase = StepPhase.COMPENSATION_FAILED
        comp.finished_at = self.now
        self._note(
            "CompensationFailed",
            f"compensation of step {step.name} failed after {comp.attempt} attempts: "
            f"{error.type}: {error.message}",
            warning=True,
            step=step.name,
        )

    # -- progress ------------------------------------------------------------------------

    def _advance(self, spec_changed: bool) -> None:
        self._expire_attempts()
        st = self.status
        if st.phase is SagaPhase.RUNNING:
            cause = self._compensation_cause()
            if cause:
                self._begin_compensation(*cause)
            else:
                self._dispatch_ready()
                if all(s.phase is StepPhase.SUCCEEDED for s in st.steps):
                    self._finish(SagaPhase.COMPLETED, "Completed", "all steps succeeded")
                    return
        elif st.phase is SagaPhase.COMPLETED and self.spec.compensate:
            self._begin_compensation(
                "CompensationRequested", "compensation requested on a completed saga"
            )
        elif st.phase.is_final and self.spec.compensate and spec_changed:
            self._note(
                "CompensationIgnored",
                f"compensation requested, but the saga already ended {st.phase.value}; "
                "nothing to do",
                warning=st.phase is SagaPhase.FAILED,
            )
        if st.phase is SagaPhase.COMPENSATING:
            self._compensate_ready()

    def _expire_attempts(self) -> None:
        """Timeouts: an attempt past its deadline counts as a retryable failure."""
        for step in self.status.steps:
            spec = self.spec.step(step.name)
            if in_flight(step) and step.phase is StepPhase.RUNNING and self._expired(step):
                self._fail_attempt(step, self._timeout_error(spec, step))
            comp = step.compensation
            if in_flight(comp) and step.phase is StepPhase.COMPENSATING and self._expired(comp):
                self._fail_compensation(step, self._timeout_error(spec, comp))

    def _expired(self, attempt: AttemptStatus) -> bool:
        return attempt.attempt_deadline is not None and attempt.attempt_deadline <= self.now

    @staticmethod
    def _timeout_error(spec: StepSpec, attempt: AttemptStatus) -> ErrorInfo:
        return ErrorInfo(
            type="Timeout",
            message=f"attempt {attempt.attempt} timed out after {spec.timeout_seconds:g}s",
            retryable=True,
        )

    def _compensation_cause(self) -> tuple[str, str] | None:
        if self.spec.compensate:
            return "CompensationRequested", "compensation requested"
        for step in self.status.steps:
            if step.phase is StepPhase.FAILED:
                err = step.error
                detail = f": {err.type}: {err.message}" if err else ""
                return "StepFailed", f"step {step.name} failed{detail}"
        deadline = self.status.deadline_at
        if deadline is not None and deadline <= self.now:
            return "DeadlineExceeded", f"saga deadline of {self.spec.deadline_seconds:g}s passed"
        return None

    def _dispatch_ready(self) -> None:
        by_name = {s.name: s for s in self.status.steps}
        for step in self.status.steps:
            if step.phase is StepPhase.PENDING:
                deps = self.graph.deps[step.name]
                if all(by_name[d].phase is StepPhase.SUCCEEDED for d in deps):
                    step.phase = StepPhase.RUNNING
                    step.started_at = self.now
                    self._dispatch(step, step, CommandKind.EXECUTE)
            elif (
                step.phase is StepPhase.RUNNING
                and step.next_attempt_at is not None
                and step.next_attempt_at <= self.now
            ):
                self._dispatch(step, step, CommandKind.EXECUTE)

    def _dispatch(self, step: StepStatus, attempt: AttemptStatus, kind: CommandKind) -> None:
        spec = self.spec.step(step.name)
        attempt.attempt += 1
        attempt.dispatch_id = make_dispatch_id(
            self.saga.ref.uid, step.name, kind, attempt.attempt, self.token
        )
        attempt.dispatched_at = self.now
        attempt.next_attempt_at = None
        attempt.finished_at = None
        attempt.started_at = attempt.started_at or self.now
        attempt.attempt_deadline = (
            self.now + timedelta(seconds=spec.timeout_seconds)
            if spec.timeout_seconds is not None
            else None
        )
        self.commands.append((spec, kind))

    def _begin_compensation(self, reason: str, message: str) -> None:
        st = self.status
        st.phase = SagaPhase.COMPENSATING
        st.reason = reason
        st.message = message
        st.finished_at = None
        st.compensation_requested_at = self.now
        _set_condition(st, "Finished", "False", "Compensating", message, self.now)
        self._note("Compensating", message, warning=True)
        for step in st.steps:
            if step.phase is StepPhase.PENDING:
                step.phase = StepPhase.SKIPPED
            elif step.phase is StepPhase.RUNNING and not in_flight(step):
                step.phase = StepPhase.FAILED
                step.finished_at = self.now
                step.next_attempt_at = None
                last = step.error.message if step.error else "no error recorded"
                step.error = ErrorInfo(
                    type=step.error.type if step.error else "Cancelled",
                    message=f"retry cancelled because the saga is compensating; last error: {last}",
                    retryable=False,
                )

    def _needs_compensation(self, name: str) -> bool:
        step = self.status.step(name)
        spec = self.spec.step(name)
        if spec.compensation is None or step.attempt == 0:
            return False
        if step.phase is StepPhase.SUCCEEDED:
            return True
        return step.phase is StepPhase.FAILED and spec.compensate_on_failure

    def _undone(self) -> dict[str, bool]:
        """Per step: it and everything depending on it need no more compensation work."""
        settled: dict[str, bool] = {}
        for step in self.status.steps:
            if step.phase in (StepPhase.SKIPPED, StepPhase.COMPENSATED, StepPhase.PENDING):
                settled[step.name] = True
            elif step.phase in COMPENSATION_PENDING:
                settled[step.name] = not self._needs_compensation(step.name)
            else:
                settled[step.name] = False
        undone: dict[str, bool] = {}

        def visit(name: str) -> bool:
            if name not in undone:
                undone[name] = settled[name] and all(visit(d) for d in self.graph.dependents[name])
            return undone[name]

        for name in self.graph.order:
            visit(name)
        return undone

    def _compensate_ready(self) -> None:
        undone = self._undone()
        for step in self.status.steps:
            comp = step.compensation
            if step.phase in COMPENSATION_PENDING and self._needs_compensation(step.name):
                if all(undone[d] for d in self.graph.dependents[step.name]):
                    step.phase = StepPhase.COMPENSATING
                    step.compensation = CompensationStatus()
                    self._dispatch(step, step.compensation, CommandKind.COMPENSATE)
            elif (
                step.phase is StepPhase.COMPENSATING
                and comp is not None
                and comp.next_attempt_at is not None
                and comp.next_attempt_at <= self.now
            ):
                self._dispatch(step, comp, CommandKind.COMPENSATE)
        busy = any(
            s.phase in (StepPhase.RUNNING, StepPhase.COMPENSATING) for s in self.status.steps
        )
        if busy:
            return
        failed = [s for s in self.status.steps if s.phase is StepPhase.COMPENSATION_FAILED]
        if failed:
            left = [
                s.name
                for s in self.status.steps
                if s.phase in COMPENSATION_PENDING and self._needs_compensation(s.name)
            ]
            detail = "; ".join(
                f"compensation of {s.name} failed: "
                f"{s.compensation.error.message if s.compensation and s.compensation.error else ''}"
                for s in failed
            )
            if left:
                detail += "; left uncompensated: " + ", ".join(left)
            self._finish(SagaPhase.FAILED, "CompensationFailed", detail)
            return
        undone_steps = sorted(
            (
                ((s.compensation and s.compensation.finished_at) or self.now, -index, s.name)
                for index, s in enumerate(self.status.steps)
                if s.phase is StepPhase.COMPENSATED
            ),
        )
        what = ", ".join(name for _, _, name in undone_steps) or "nothing needed undoing"
        self._finish(
            SagaPhase.COMPENSATED,
            self.status.reason or "Compensated",
            f"{self.status.message}; compensated: {what}",
        )

    def _finish(self, phase: SagaPhase, reason: str, message: str) -> None:
        st = self.status
        st.phase = phase
        st.reason = reason
        st.message = message
        st.finished_at = self.now
        _set_condition(st, "Finished", "True", phase.value, message, self.now)
        self._note(phase.value, message, warning=phase is SagaPhase.FAILED)

    # -- derived fields ------------------------------------------------------------------

    def _derive(self) -> None:
        st = self.status
        if len(st.message) > limits.MAX_STATUS_MESSAGE_CHARS:
            st.message = st.message[: limits.MAX_STATUS_MESSAGE_CHARS - 1] + "…"
        done = sum(1 for s in st.steps if s.phase is StepPhase.SUCCEEDED)
        st.progress = f"{done}/{len(st.steps)}"
        busy = [s.name for s in st.steps if s.phase in (StepPhase.RUNNING, StepPhase.COMPENSATING)]
        st.current_step = ",".join(busy) if busy else None

    def _wake_at(self) -> datetime | None:
        times: list[datetime] = []
        for step in self.status.steps:
            for attempt in (step, step.compensation):
                if attempt is None:
                    continue
                if attempt.next_attempt_at is not None:
                    times.append(attempt.next_attempt_at)
                if in_flight(attempt) and attempt.attempt_deadline is not None:
                    times.append(attempt.attempt_deadline)
        if self.status.phase is SagaPhase.RUNNING and self.status.deadline_at is not None:
            times.append(self.status.deadline_at)
        return min(times) if times else None
