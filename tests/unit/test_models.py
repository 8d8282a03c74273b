"""Model rules that hold before anything reaches the apiserver (the client validates locally)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubesaga.models import Result, RetryPolicy, SagaSpec


def test_absent_depends_on_means_the_previous_step_and_empty_means_none() -> None:
    spec = SagaSpec.model_validate(
        {
            "steps": [
                {"name": "a", "action": "x"},
                {"name": "b", "action": "x"},
                {"name": "c", "action": "x", "dependsOn": []},
            ]
        }
    )
    assert spec.dependencies() == {"a": [], "b": ["a"], "c": []}


def test_seed_style_step_names_are_valid() -> None:
    SagaSpec.model_validate({"steps": [{"name": "create_order", "action": "orders.create"}]})


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"name": "a", "action": "x"}, {"name": "a", "action": "y"}], "unique"),
        ([{"name": "a", "action": "x", "dependsOn": ["b", "b"]}], "twice"),
        ([{"name": "Bad", "action": "x"}], "pattern"),
        ([{"name": "a", "action": ""}], "at least 1"),
        ([{"name": "a", "action": "x", "surprise": 1}], "Extra inputs"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(
    steps: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SagaSpec.model_validate({"steps": steps})


def test_retry_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(backoff_seconds=2, backoff_factor=3, max_backoff_seconds=10)
    assert [policy.delay_before(n) for n in (1, 2, 3, 4)] == [0, 2, 6, 10]


def test_failed_result_must_carry_an_error() -> None:
    with pytest.raises(ValidationError, match="must carry an error"):
        Result.model_validate(
            {
                "dispatchId": "d",
                "saga": {"namespace": "n", "name": "s", "uid": "u"},
                "step": "a",
                "kind": "execute",
                "attempt": 1,
                "status": "failed",
            }
        )


def test_broker_settings_come_from_the_one_settings_object() -> None:
    from kubesaga.broker import BrokerSettings
    from kubesaga.settings import Settings

    settings = Settings(
        amqp_url="amqps://u:p@broker:5671/v",
        amqp_ca_file="/etc/ca.pem",
        quorum_queues=True,
        operator_prefetch=7,
        results_queue="r",
        dead_letter_queue="d",
    )
    broker = BrokerSettings.from_settings(settings)
    assert (broker.url, broker.ca_file, broker.quorum_queues, broker.prefetch) == (
        "amqps://u:p@broker:5671/v",
        "/etc/ca.pem",
        True,
        7,
    )
    assert (broker.results_queue, broker.dead_letter_queue) == ("r", "d")


def test_a_service_link_variable_in_a_setting_is_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the kubelet sets for a Service named kubesaga-metrics must not pass as a setting."""
    from kubesaga.settings import Settings

    monkeypatch.setenv("KUBESAGA_METRICS_PORT", "tcp://10.96.80.193:8080")
    with pytest.raises(ValueError, match="enableServiceLinks: false"):
        Settings()
