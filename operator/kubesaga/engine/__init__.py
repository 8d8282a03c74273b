"""The pure saga engine: every saga rule, no I/O, no clock, no randomness."""

from kubesaga.engine.commands import inflight_commands, make_dispatch_id
from kubesaga.engine.decide import decide, decide_all, reject_spec
from kubesaga.engine.graph import StepGraph, find_cycle, spec_problem, status_problem
from kubesaga.engine.types import (
    Decision,
    Event,
    Reconcile,
    ResultReceived,
    SagaView,
    Transition,
    Verdict,
)

__all__ = [
    "Decision",
    "Event",
    "Reconcile",
    "ResultReceived",
    "SagaView",
    "StepGraph",
    "Transition",
    "Verdict",
    "decide",
    "decide_all",
    "find_cycle",
    "inflight_commands",
    "make_dispatch_id",
    "reject_spec",
    "spec_problem",
    "status_problem",
]
