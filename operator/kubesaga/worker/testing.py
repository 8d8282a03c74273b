"""Unit-testing handlers without a broker, in the spirit of ``temporalio.testing``.

``run_handler`` runs the registered handler exactly as ``Worker.run`` would (same error mapping,
output checks and deadline) and returns the ``Result`` the worker would publish::

    result = await run_handler(worker, "orders.create", input={"sku": "A-1"})
    assert result.status is ResultStatus.SUCCEEDED
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from kubesaga.models import Command, CommandKind, JsonObject, Result, SagaRef
from kubesaga.worker.app import Worker
from kubesaga.worker.context import StepContext

__all__ = ["make_command", "make_context", "run_handler"]


def make_command(
    action: str,
    *,
    input: JsonObject | None = None,
    context: JsonObject | None = None,
    outputs: Mapping[str, JsonObject] | None = None,
    output: JsonObject | None = None,
    attempt: int = 1,
    kind: CommandKind = CommandKind.EXECUTE,
    deadline: datetime | None = None,
    step: str = "test-step",
    saga_name: str = "test-saga",
    saga_namespace: str = "default",
    saga_uid: str = "00000000-0000-0000-0000-000000000000",
    dispatch_id: str | None = None,
) -> Command:
    """A valid command with test defaults for everything not given."""
    return Command(
        dispatch_id=dispatch_id
        or f"{saga_uid}/{step}/{kind.value}/{attempt}/{uuid.uuid4().hex[:12]}",
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


def make_context(
    action: str = "test.action",
    *,
    input: JsonObject | None = None,
    context: JsonObject | None = None,
    outputs: Mapping[str, JsonObject] | None = None,
    output: JsonObject | None = None,
    attempt: int = 1,
    kind: CommandKind = CommandKind.EXECUTE,
    deadline: datetime | None = None,
    step: str = "test-step",
    saga_name: str = "test-saga",
    saga_namespace: str = "default",
) -> StepContext:
    """A ``StepContext`` to call a handler function directly."""
    return StepContext.from_command(
        make_command(
            action,
            input=input,
            context=context,
            outputs=outputs,
            output=output,
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
    outputs: Mapping[str, JsonObject] | None = None,
    output: JsonObject | None = None,
    attempt: int = 1,
    kind: CommandKind | None = None,
    deadline: datetime | None = None,
    step: str = "test-step",
    saga_name: str = "test-saga",
    saga_namespace: str = "default",
) -> Result:
    """The ``Result`` the worker would publish for this command.

    ``kind`` defaults to how the action was registered (step: execute, compensation: compensate).
    Raises ``LookupError`` if the worker has no handler for ``action``.
    """
    registration = worker.registration(action)
    if kind is None:
        kind = registration.kind if registration is not None else CommandKind.EXECUTE
    command = make_command(
        action,
        input=input,
        context=context,
        outputs=outputs,
        output=output,
        attempt=attempt,
        kind=kind,
        deadline=deadline,
        step=step,
        saga_name=saga_name,
        saga_namespace=saga_namespace,
    )
    return await worker.execute(command)
