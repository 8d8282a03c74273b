"""The client and CLI side of suspend/resume and redrive, without a cluster: the patches they
send, what they refuse before sending anything, and the commands ``kubesaga --help`` lists."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from kubesaga import SagaNotRedrivable
from kubesaga.cli import app
from kubesaga.cli.operate_cmd import outcome, pick
from kubesaga.client import Saga
from kubesaga.client.resource import redrive_patch, spec_differences, suspend_patch
from kubesaga.models import SagaSpec


def saga(phase: str | None, reason: str = "", redrive: int = 0, observed: int = 0) -> Saga:
    raw: dict[str, Any] = {
        "metadata": {"namespace": "shop", "name": "order-1", "uid": "u-1", "generation": 2},
        "spec": {"steps": [{"name": "a", "action": "x.a"}], "redrive": redrive},
    }
    if phase is not None:
        raw["status"] = {"phase": phase, "reason": reason, "observedRedrive": observed}
    return Saga.from_raw(raw)


def test_suspend_and_resume_are_one_field_of_the_spec() -> None:
    assert suspend_patch(True, None) == {"spec": {"suspend": True}}
    assert suspend_patch(False, "u-1") == {"spec": {"suspend": False}, "metadata": {"uid": "u-1"}}


def test_redrive_bumps_the_counter_of_that_incarnation() -> None:
    patch = redrive_patch(saga("Failed", "CompensationFailed", redrive=1, observed=1))
    assert patch == {"spec": {"redrive": 2}, "metadata": {"uid": "u-1"}}


@pytest.mark.parametrize(
    ("phase", "reason", "words"),
    [
        ("Completed", "Completed", "every step succeeded"),
        ("Compensated", "StepFailed", "rolled back cleanly"),
        ("Failed", "InvalidSpec", "create a new Saga"),
        ("Running", "Started", "the saga is Running"),
        (None, "", "has not started"),
    ],
)
def test_redrive_of_a_saga_that_cannot_be_redriven_is_refused_before_any_patch(
    phase: str | None, reason: str, words: str
) -> None:
    with pytest.raises(SagaNotRedrivable, match=words) as caught:
        redrive_patch(saga(phase, reason))
    assert str(caught.value).startswith("saga shop/order-1 cannot be redriven: ")
    assert caught.value.saga.name == "order-1"


def test_a_redrive_already_pending_or_past_the_limit_is_refused() -> None:
    with pytest.raises(SagaNotRedrivable, match="has not acted on it yet"):
        redrive_patch(saga("Failed", "CompensationFailed", redrive=2, observed=1))
    with pytest.raises(SagaNotRedrivable, match="redriven 5 times"):
        redrive_patch(saga("Failed", "CompensationFailed", redrive=5, observed=5))


def test_a_repeated_start_of_a_suspended_or_redriven_saga_is_the_same_saga() -> None:
    spec = SagaSpec.model_validate({"steps": [{"name": "a", "action": "x.a"}]})
    touched = spec.model_copy(update={"suspend": True, "redrive": 1, "compensate": True})
    assert spec_differences(touched, spec) == []


def test_help_lists_suspend_resume_and_redrive() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("suspend", "resume", "redrive"):
        assert command in result.output


@pytest.mark.parametrize(
    "args",
    [["suspend"], ["resume", "a", "--all"], ["suspend", "-l", "app=shop", "--all"]],
)
def test_suspend_and_resume_need_exactly_one_way_to_pick_sagas(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "name the sagas, or pick them with -l SELECTOR, or use --all" in result.output


def named(name: str, phase: str, suspend: bool = False) -> Saga:
    raw: dict[str, Any] = {
        "metadata": {"namespace": "shop", "name": name, "uid": f"u-{name}", "generation": 1},
        "spec": {"steps": [{"name": "a", "action": "x.a"}], "suspend": suspend},
        "status": {"phase": phase},
    }
    return Saga.from_raw(raw)


def test_a_selection_suspends_only_unfinished_sagas_and_resumes_only_suspended_ones() -> None:
    sagas = [
        named("running", "Running"),
        named("done", "Completed"),
        named("held", "Suspended", suspend=True),
        named("asked", "Running", suspend=True),  # suspend written, operator not there yet
    ]
    chosen, skipped = pick(sagas, suspend=True)
    assert [s.name for s in chosen] == ["running"]
    assert skipped == [
        "done: already ended Completed",
        "held: already suspended",
        "asked: already suspended",
    ]
    chosen, skipped = pick(sagas, suspend=False)
    assert [s.name for s in chosen] == ["held", "asked"]
    assert skipped == ["running: not suspended", "done: not suspended"]


def test_a_named_saga_that_already_ended_is_told_apart_from_one_suspended() -> None:
    assert outcome(named("done", "Completed", suspend=True), True) == (
        "saga.kubesaga.io/done suspend recorded, but it already ended Completed: nothing to stop"
    )
    assert outcome(named("run", "Running", suspend=True), True) == "saga.kubesaga.io/run suspended"
    assert outcome(named("run", "Running"), False) == "saga.kubesaga.io/run resumed"
