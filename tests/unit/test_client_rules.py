"""The clients' shared decisions, without a cluster: error mapping, idempotent start, waiting.

Both ``SagaClient`` and ``AsyncSagaClient`` go through these functions, so a rule checked here
holds for both; the transports themselves are driven on the platform
(``tests/integration/test_clients.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from kubesaga import (
    Saga,
    SagaAlreadyExists,
    SagaApiError,
    SagaInvalid,
    SagaNotFound,
    SagaPhase,
    SagaSpec,
    SagaTimeout,
)
from kubesaga.client.api_errors import translate
from kubesaga.client.progress import Progress, Waiter
from kubesaga.client.resource import adopt_existing, build_spec, compensate_patch
from kubesaga.store.watch_rules import Recovery, reconnect_backoff, recovery, retry_after


@dataclass
class FakeApiException:
    """The shape both packages' ApiException share."""

    status: int
    reason: str
    body: str | bytes | None
    headers: dict[str, str] = field(default_factory=dict)


def status_body(code: int, reason: str, message: str, **details: Any) -> str:
    return json.dumps(
        {"kind": "Status", "code": code, "reason": reason, "message": message, "details": details}
    )


def raw_saga(
    *,
    uid: str = "u-1",
    generation: int = 1,
    phase: str | None = None,
    observed: int | None = None,
    steps: list[dict[str, Any]] | None = None,
    version: str = "10",
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "metadata": {
            "namespace": "shop",
            "name": "order-1",
            "uid": uid,
            "generation": generation,
            "resourceVersion": version,
        },
        "spec": {"steps": [{"name": "a", "action": "x.a"}, {"name": "b", "action": "x.b"}]},
    }
    if phase is not None:
        raw["status"] = {"phase": phase, "observedGeneration": observed, "steps": steps or []}
    return raw


# ------------------------------------------------------------------------ API errors


def test_a_missing_saga_is_saga_not_found_and_a_lookup_error() -> None:
    error = FakeApiException(
        404,
        "Not Found",
        status_body(404, "NotFound", 'sagas.kubesaga.io "order-1" not found', kind="sagas"),
    )
    mapped = translate(error, namespace="shop", name="order-1")
    assert isinstance(mapped, SagaNotFound) and isinstance(mapped, LookupError)
    assert str(mapped).startswith("saga shop/order-1 not found")
    assert (mapped.namespace, mapped.name) == ("shop", "order-1")


def test_a_missing_crd_is_not_reported_as_a_missing_saga() -> None:
    body = status_body(404, "NotFound", "the server could not find the requested resource")
    mapped = translate(
        FakeApiException(404, "Not Found", body.encode()), namespace="shop", name="x"
    )
    assert isinstance(mapped, SagaApiError) and not isinstance(mapped, SagaNotFound)
    assert "kubesaga crd" in str(mapped) and mapped.status == 404


def test_a_refused_spec_carries_the_apiservers_message_and_causes() -> None:
    message = (
        'Saga.kubesaga.io "order-1" is invalid: spec.steps: Invalid value: "array": '
        'step "b" depends on "c", which is not a step of this saga'
    )
    cause = {"reason": "FieldValueInvalid", "field": "spec.steps", "message": "Invalid value"}
    body = status_body(422, "Invalid", message, causes=[cause])
    mapped = translate(FakeApiException(422, "Unprocessable Entity", body), name="order-1")
    assert isinstance(mapped, SagaInvalid) and isinstance(mapped, ValueError)
    assert str(mapped) == message
    assert mapped.causes == [("spec.steps", "Invalid value")]


def test_a_handles_patch_refused_for_its_uid_means_the_saga_was_replaced() -> None:
    cause = {"field": "metadata.uid", "message": 'Invalid value: "u-1": field is immutable'}
    body = status_body(422, "Invalid", 'Saga.kubesaga.io "o" is invalid', causes=[cause])
    mapped = translate(FakeApiException(422, "Unprocessable Entity", body), namespace="s", name="o")
    assert isinstance(mapped, SagaNotFound)
    assert "saga s/o was deleted and created again" in str(mapped)


def test_other_refusals_quote_status_reason_and_message() -> None:
    body = status_body(403, "Forbidden", 'sagas.kubesaga.io is forbidden: User "x" cannot create')
    mapped = translate(FakeApiException(403, "Forbidden", body), namespace="shop", name="o")
    assert isinstance(mapped, SagaApiError)
    assert (mapped.status, mapped.reason) == (403, "Forbidden")
    assert "saga shop/o: 403 Forbidden" in str(mapped) and 'User "x"' in str(mapped)


def test_a_refusal_without_a_status_body_still_says_what_happened() -> None:
    mapped = translate(FakeApiException(500, "Internal Server Error", None), namespace="shop")
    assert str(mapped).endswith("500 Internal Server Error: Internal Server Error")


# --------------------------------------------------------------- idempotent start


def spec(**changes: Any) -> SagaSpec:
    base: dict[str, Any] = {
        "steps": [{"name": "a", "action": "x.a"}, {"name": "b", "action": "x.b"}]
    }
    return SagaSpec.model_validate({**base, **changes})


def test_starting_the_same_spec_again_returns_the_existing_saga() -> None:
    existing = Saga.from_raw(raw_saga())
    assert adopt_existing(existing, spec()) is existing


def test_a_compensation_request_does_not_make_it_another_saga() -> None:
    existing = replace(Saga.from_raw(raw_saga()), spec=spec(compensate=True))
    assert adopt_existing(existing, spec()) is existing


def test_a_different_spec_raises_already_exists_naming_what_differs() -> None:
    existing = Saga.from_raw(raw_saga())
    with pytest.raises(SagaAlreadyExists) as caught:
        adopt_existing(existing, spec(context={"customer": "c-2"}))
    assert "saga shop/order-1 already exists with a different spec" in str(caught.value)
    assert "(differs in: context)" in str(caught.value)
    assert caught.value.existing is existing


def test_a_saga_being_deleted_is_not_adopted() -> None:
    existing = replace(Saga.from_raw(raw_saga()), deleting=True)
    with pytest.raises(SagaAlreadyExists, match="is being deleted"):
        adopt_existing(existing, spec())


def test_a_locally_invalid_spec_is_saga_invalid_with_the_field() -> None:
    with pytest.raises(SagaInvalid) as caught:
        build_spec(
            [{"name": "Bad Name", "action": "x.a"}],
            None,
            deadline_seconds=None,
            ttl_seconds_after_finished=None,
            namespace="shop",
            name="order-1",
        )
    assert str(caught.value).startswith("saga shop/order-1 is invalid: steps.0.name:")
    assert caught.value.causes[0][0] == "steps.0.name"


def test_a_handle_compensates_only_its_own_incarnation() -> None:
    assert compensate_patch("u-1") == {"spec": {"compensate": True}, "metadata": {"uid": "u-1"}}
    assert compensate_patch(None) == {"spec": {"compensate": True}}


# ------------------------------------------------------------------- wait and watch


def test_wait_is_not_over_until_the_operator_acted_on_the_latest_spec() -> None:
    waiter = Waiter(Saga.from_raw(raw_saga(generation=2, phase="Completed", observed=1)))
    assert waiter.done() is None  # Completed, but before the compensate request (generation 2)
    assert waiter("MODIFIED", raw_saga(generation=2, phase="Compensating", observed=2)) is None
    final = waiter("MODIFIED", raw_saga(generation=2, phase="Compensated", observed=2))
    assert final is not None and final.phase is SagaPhase.COMPENSATED
    assert waiter("BOOKMARK", {"metadata": {"resourceVersion": "99"}}) is None


def test_wait_ends_with_not_found_when_the_saga_is_deleted_or_replaced() -> None:
    waiter = Waiter(Saga.from_raw(raw_saga(phase="Running", observed=1)))
    with pytest.raises(SagaNotFound, match="was deleted while waiting"):
        waiter("DELETED", raw_saga(phase="Running", observed=1))
    with pytest.raises(SagaNotFound, match="deleted and created again"):
        waiter("ADDED", raw_saga(uid="u-2"))


def test_a_timeout_says_where_the_saga_stood() -> None:
    waiter = Waiter(Saga.from_raw(raw_saga(phase="Running", observed=1)))
    error = waiter.timed_out(5, "waiting")
    assert isinstance(error, SagaTimeout) and isinstance(error, TimeoutError)
    assert str(error) == "saga shop/order-1 did not settle within 5 s while waiting; it is Running"
    assert error.last is not None and error.last.phase is SagaPhase.RUNNING


def test_watch_yields_phase_changes_only_and_finishes_when_settled() -> None:
    running_a = [{"name": "a", "phase": "Running"}, {"name": "b"}]
    progress = Progress(Saga.from_raw(raw_saga()))
    first = progress.first()
    assert first is not None and first.phase is SagaPhase.PENDING
    seen = [
        progress(kind, raw)
        for kind, raw in [
            ("MODIFIED", raw_saga(phase="Running", observed=1, steps=running_a, version="11")),
            ("MODIFIED", raw_saga(phase="Running", observed=1, steps=running_a, version="12")),
            ("MODIFIED", raw_saga(phase="Completed", observed=1, version="13")),
        ]
    ]
    assert [s.phase if s else None for s in seen] == [SagaPhase.RUNNING, None, SagaPhase.COMPLETED]
    assert progress.finished


# ------------------------------------------------------------------ watch recovery


def test_watch_recovery_rules() -> None:
    assert recovery(410) is Recovery.RELIST
    assert recovery(429) is Recovery.BACK_OFF
    assert recovery(500) is Recovery.RETRY and recovery(503) is Recovery.RETRY
    assert recovery(403) is Recovery.RAISE and recovery(None) is Recovery.RAISE
    assert [reconnect_backoff(n) for n in range(7)] == [0.2, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0]
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"Retry-After": "3600"}) == 10.0
    assert retry_after({"Retry-After": "soon"}) == 1.0
    assert retry_after(None) == 1.0
