"""The errors both clients raise: one family, whichever transport (sync or async) is in use.

The two Kubernetes packages raise different ``ApiException`` classes; a caller catches these
instead. Each also derives from the builtin a caller would reach for first (``LookupError``,
``ValueError``, ``TimeoutError``), so generic handlers keep working. Imports nothing heavy: a
web app can import the errors without loading a Kubernetes client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubesaga.client.saga import Saga

__all__ = [
    "ApprovalRefused",
    "SagaAlreadyExists",
    "SagaApiError",
    "SagaClientError",
    "SagaInvalid",
    "SagaNotFound",
    "SagaNotRedrivable",
    "SagaTimeout",
]


class SagaClientError(Exception):
    """Base of every error ``SagaClient`` and ``AsyncSagaClient`` raise on purpose.

    ``namespace`` and ``name`` say which saga (empty when the call named none, e.g. a list).
    """

    def __init__(self, message: str, *, namespace: str = "", name: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.namespace = namespace
        self.name = name


class SagaNotFound(SagaClientError, LookupError):
    """The saga does not exist, or was deleted (or replaced by a new one) while waiting on it."""


class SagaAlreadyExists(SagaClientError):
    """``start`` found a saga of that name whose spec differs, or that is being deleted.

    Starting the same name with the same spec is not an error (it returns the existing saga);
    this is. ``existing`` is the saga that is in the way.
    """

    def __init__(self, message: str, *, existing: Saga) -> None:
        super().__init__(message, namespace=existing.namespace, name=existing.name)
        self.existing = existing


class SagaInvalid(SagaClientError, ValueError):
    """The spec was refused: by local validation, or by the apiserver (CRD schema and CEL rules).

    The message is the validator's own, e.g. the apiserver's ``Saga.kubesaga.io "x" is invalid:
    spec.steps: Invalid value: "array": step "b" depends on "c", which is not a step of this
    saga``. ``causes`` lists ``(field, message)`` pairs when the validator gave them.
    """

    def __init__(
        self,
        message: str,
        *,
        namespace: str = "",
        name: str = "",
        causes: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message, namespace=namespace, name=name)
        self.causes = causes or []


class ApprovalRefused(SagaClientError, ValueError):
    """``approve`` or ``reject`` of a step that cannot take an answer now: not an approval step,
    not reached yet, answered or timed out already, or the saga compensates or ended. The
    message says which (and who answered, when it was answered)."""


class SagaTimeout(SagaClientError, TimeoutError):
    """``wait`` or ``watch`` ran out of time before the saga settled; ``last`` is what was seen."""

    def __init__(self, message: str, *, last: Saga | None, namespace: str, name: str) -> None:
        super().__init__(message, namespace=namespace, name=name)
        self.last = last


class SagaNotRedrivable(SagaClientError):
    """``redrive`` refused: only a saga Failed because a compensation failed can be redriven.

    Nothing was changed. The message says why (e.g. the saga Completed); ``saga`` is what was
    read.
    """

    def __init__(self, message: str, *, saga: Saga) -> None:
        super().__init__(message, namespace=saga.namespace, name=saga.name)
        self.saga = saga


class SagaApiError(SagaClientError):
    """Any other refusal by the Kubernetes API (403 Forbidden, 409 Conflict, 5xx, ...).

    ``status`` is the HTTP status and ``reason`` the apiserver's reason (e.g. ``Forbidden``);
    the message quotes the apiserver's own explanation.
    """

    def __init__(
        self, message: str, *, status: int, reason: str, namespace: str = "", name: str = ""
    ) -> None:
        super().__init__(message, namespace=namespace, name=name)
        self.status = status
        self.reason = reason
