"""The one error taxonomy: retryable versus permanent.

Handlers raise these, the worker SDK turns them into the ``ErrorInfo`` of a failed ``Result``,
and the engine's retry policy reads only the ``retryable`` flag. Anything that is not a
``SagaError`` is treated as permanent: an unexpected exception is a bug that retrying will not fix.
"""

from __future__ import annotations

from typing import ClassVar

from kubesaga.models import ErrorInfo, limits

__all__ = ["PermanentError", "RetryableError", "SagaError", "error_info"]


class SagaError(Exception):
    """Base of the errors a step handler raises on purpose.

    ``type`` names the failure for people and dashboards (defaults to the class name), e.g.
    ``PermanentError("card declined", type="PaymentDeclined")``.
    """

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.type = type or self.__class__.__name__

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.message!r}, type={self.type!r})"

    def to_error_info(self) -> ErrorInfo:
        """The error as the protocol carries it."""
        return ErrorInfo(message=self.message, type=self.type, retryable=self.retryable)


class RetryableError(SagaError):
    """A transient failure: the saga's retry policy may run the step again.

    ``retry_after`` (seconds) asks for the next attempt no sooner than that, e.g. a rate
    limit's ``Retry-After``: the engine waits the longer of it and the policy's backoff, capped
    by the policy's ``maxBackoffSeconds``; the policy's ``maxAttempts`` still applies.
    """

    retryable = True

    def __init__(
        self, message: str, *, type: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, type=type)
        if retry_after is not None and not (
            0 <= retry_after <= limits.MAX_RETRY_AFTER_SECONDS
        ):  # NaN fails both comparisons
            raise ValueError(
                f"retry_after must be between 0 and {limits.MAX_RETRY_AFTER_SECONDS:g} seconds, "
                f"not {retry_after!r}"
            )
        self.retry_after = None if retry_after is None else float(retry_after)

    def __repr__(self) -> str:
        after = "" if self.retry_after is None else f", retry_after={self.retry_after:g}"
        return f"{self.__class__.__name__}({self.message!r}, type={self.type!r}{after})"

    def to_error_info(self) -> ErrorInfo:
        return ErrorInfo(
            message=self.message,
            type=self.type,
            retryable=True,
            retry_after_seconds=self.retry_after,
        )


class PermanentError(SagaError):
    """A failure that retrying cannot fix: the saga starts compensating."""

    retryable = False


def error_info(exc: BaseException) -> ErrorInfo:
    """Map any exception to ``ErrorInfo``: ``SagaError`` keeps its own, the rest are permanent."""
    if isinstance(exc, SagaError):
        return exc.to_error_info()
    return ErrorInfo(
        message=str(exc) or exc.__class__.__name__, type=exc.__class__.__name__, retryable=False
    )
