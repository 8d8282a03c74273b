"""The error taxonomy maps onto the protocol's ErrorInfo."""

from __future__ import annotations

import pytest

from kubesaga.errors import PermanentError, RetryableError, SagaError, error_info
from kubesaga.models import ErrorInfo


def test_retryable_error_is_retryable_and_named_after_its_class() -> None:
    assert RetryableError("broker busy").to_error_info() == ErrorInfo(
        message="broker busy", type="RetryableError", retryable=True
    )


def test_permanent_error_is_not_retryable() -> None:
    assert PermanentError("bad input").to_error_info() == ErrorInfo(
        message="bad input", type="PermanentError", retryable=False
    )


def test_type_can_be_overridden() -> None:
    info = PermanentError("card declined", type="PaymentDeclined").to_error_info()
    assert (info.type, info.message, info.retryable) == ("PaymentDeclined", "card declined", False)


def test_subclass_type_defaults_to_the_subclass_name() -> None:
    class InventoryLocked(RetryableError):
        pass

    info = InventoryLocked("sku 42 locked").to_error_info()
    assert (info.type, info.retryable) == ("InventoryLocked", True)


def test_base_saga_error_is_permanent() -> None:
    assert SagaError("nope").to_error_info().retryable is False


def test_errors_keep_message_and_str() -> None:
    exc = RetryableError("try later", type="Busy")
    assert (exc.message, exc.type, str(exc)) == ("try later", "Busy", "try later")
    assert isinstance(exc, SagaError)


def test_error_info_maps_saga_errors_through_their_own_info() -> None:
    assert error_info(RetryableError("x", type="Busy")) == ErrorInfo(
        message="x", type="Busy", retryable=True
    )


def test_error_info_maps_any_other_exception_to_permanent_with_its_class_name() -> None:
    assert error_info(KeyError("sku")) == ErrorInfo(
        message="'sku'", type="KeyError", retryable=False
    )


def test_error_info_of_an_exception_without_message_uses_the_class_name() -> None:
    assert error_info(ValueError()).message == "ValueError"


def test_a_retryable_error_can_ask_for_a_later_retry() -> None:
    exc = RetryableError("rate limited", type="TooManyRequests", retry_after=12.5)
    assert exc.to_error_info() == ErrorInfo(
        message="rate limited", type="TooManyRequests", retryable=True, retry_after_seconds=12.5
    )
    assert "retry_after=12.5" in repr(exc)
    assert RetryableError("busy").to_error_info().retry_after_seconds is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 86401.0])
def test_a_retry_after_out_of_bounds_is_refused_where_it_is_raised(bad: float) -> None:
    with pytest.raises(ValueError, match="retry_after must be between 0 and 86400 seconds"):
        RetryableError("busy", retry_after=bad)
