"""The pure saga engine: every saga rule, no I/O, no clock, no randomness."""

from kubesaga.engine.commands import make_dispatch_id
from kubesaga.engine.decide import decide, decide_all
from kubesaga.engine.graph import StepGraph, find_cycle, spec_problem, status_problem
from kubesaga.engine.types import (
    Decision,
    Dispatched,
    Event,
    InFlight,
    InvalidSpec,
    Judgement,
    LatencySample,
    Reconcile,
    ResultReceived,
    SagaView,
    Transition,
    Verdict,
)

__all__ = [
    "Decision",
    "Dispatched",
    "Event",
    "InFlight",
    "InvalidSpec",
    "Judgement",
    "LatencySample",
    "Reconcile",
    "ResultReceived",
    "SagaView",
    "StepGraph",
    "Transition",
    "Verdict",
    "decide",
    "decide_all",
    "find_cycle",
    "make_dispatch_id",
    "spec_problem",
    "status_problem",
]
