"""Unit-testing handlers without a broker, in the spirit of ``temporalio.testing``.

``run_handler`` runs the registered handler exactly as ``Worker.run`` would (same error mapping,
output checks and deadline) and returns the ``Result`` the worker would publish::

    from kubesaga.worker import ResultStatus
    from kubesaga.worker.testing import run_handler

    result = await run_handler(worker, "orders.create", input={"sku": "A-1"})
    assert result.status is ResultStatus.SUCCEEDED
    assert result.output == {"order_id": "o-1"}

``make_context`` builds the ``StepContext`` to call a handler function directly. The types these
return and take (``Result``, ``ResultStatus``, ``ErrorInfo``, ``CommandKind``) are exported by
``kubesaga.worker``.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from kubesaga.models import Command, CommandKind, JsonObject, Result, SagaRef
from kubesaga.worker.app import Worker
from kubesaga.worker.context import StepContext

__all__ = ["make_context", "run_handler"]

T = TypeVar("T")


def make_context(
    action: str = "test.action",
    *,
    input: JsonObject | None = None,
    context: JsonObject | None = None,
    dependency_outputs: Mapping[str, JsonObject] | None = None,
    step_output: JsonObject | None = None,
    attempt: int = 1,
    kind: CommandKind = CommandKind.EXECUTE,
    deadline: datetime | None = None,
    step: str = "test-step",
    saga_name: str = "test-saga",
    saga_namespace: str = "default",
    outputs: Mapping[str, JsonObject] | None = None,
    output: JsonObject | None = None,
) -> StepContext:
    """A ``StepContext`` to call a handler function directly.

    ``outputs`` and ``output`` are deprecated spellings of ``dependency_outputs`` and
    ``step_output`` (as on ``StepContext``).
    """
    return StepContext.from_command(
        _make_command(
            action,
            input=input,
            context=context,
            outputs=_renamed(dependency_outputs, outputs, "dependency_outputs", "outputs"),
            output=_renamed(step_output, output, "step_output", "output"),
            attempt=attempt,
            kind=kind,
            deadline=deadline,
            step=step,
            saga_name=saga_name,
            saga_namespace=saga_namespace,
        )
    )


async def run_handler(
    worker: Worker,
    action: str,
    *,
    input: JsonObject | None = None,
    context: JsonObject | None = None,
    dependency_outputs: Mapping[str, JsonObject] | None = None,
    step_output: JsonObject | None = None,
    attempt: int = 1,
    kind: CommandKind | None = None,
    deadline: datetime | None = None,
    step: str = "test-step",
    saga_name: str = "test-saga",
    saga_namespace: str = "default",
    outputs: Mapping[str, JsonObject] | None = None,
    output: JsonObject | None = None,
) -> Result:
    """The ``Result`` the worker would publish for this command.

    ``kind`` defaults to how the action was registered (step: execute, compensation: compensate).
    Raises ``LookupError`` if the worker has no handler for ``action``. ``outputs`` and
    ``output`` are deprecated spellings of ``dependency_outputs`` and ``step_output``.
    """
    registration = worker._registration(action)
    if kind is None:
        kind = registration.kind if registration is not None else CommandKind.EXECUTE
    command = _make_command(
        action,
        input=input,
        context=context,
        outputs=_renamed(dependency_outputs, outputs, "dependency_outputs", "outputs"),
        output=_renamed(step_output, output, "step_output", "output"),
        attempt=attempt,
        kind=kind,
        deadline=deadline,
        step=step,
        saga_name=saga_name,
        saga_namespace=saga_namespace,
    )
    return await worker._execute(command)


def _make_command(
    action: str,
    *,
    input: JsonObject | None,
    context: JsonObject | None,
    outputs: Mapping[str, JsonObject] | None,
    output: JsonObject | None,
    attempt: int,
    kind: CommandKind,
    deadline: datetime | None,
    step: str,
    saga_name: str,
    saga_namespace: str,
    saga_uid: str = "00000000-0000-0000-0000-000000000000",
) -> Command:
    """A valid command (wire names) with test defaults for everything not given."""
    return Command(
        dispatch_id=f"{saga_uid}/{step}/{kind.value}/{attempt}/{uuid.uuid4().hex[:12]}",
        saga=SagaRef(namespace=saga_namespace, name=saga_name, uid=saga_uid),
        step=step,
        kind=kind,
        action=action,
        attempt=attempt,
        input=dict(input or {}),
        context=dict(context or {}),
        outputs=dict(outputs or {}),
        output=output,
        deadline=deadline,
    )


def _renamed(new: T | None, old: T | None, new_name: str, old_name: str) -> T | None:
    """The value given under the new keyword, or (with a DeprecationWarning) the old one."""
    if old is None:
        return new
    if new is not None:
        raise TypeError(f"give {new_name} only (not also {old_name}, its deprecated spelling)")
    warnings.warn(
        f"the keyword {old_name}= is deprecated; use {new_name}=", DeprecationWarning, stacklevel=3
    )
    return old
