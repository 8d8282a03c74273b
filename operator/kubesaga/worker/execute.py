"""Running one handler on one command and turning whatever happens into a ``Result``.

Shared by ``Worker.run`` and the testing kit, so a unit test sees exactly the result the worker
would publish.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubesaga.errors import SagaError, error_info
from kubesaga.models import Command, CommandKind, ErrorInfo, JsonObject, Result
from kubesaga.worker.context import StepContext

log = logging.getLogger("kubesaga.worker")

Handler = Callable[[StepContext], Any]
"""``async def`` or plain ``def`` taking a ``StepContext`` and returning a dict or None."""


@dataclass(frozen=True)
class Registration:
    action: str
    kind: CommandKind
    """Whether it was registered with ``@worker.step`` or ``@worker.compensation``."""
    handler: Handler


class InvalidOutput(SagaError):
    """A step handler returned something that is not a JSON object."""


def log_extra(command: Command, worker: str) -> dict[str, object]:
    return {
        "worker": worker,
        "saga": f"{command.saga.namespace}/{command.saga.name}",
        "step": command.step,
        "action": command.action,
        "kind": command.kind.value,
        "attempt": command.attempt,
        "dispatch_id": command.dispatch_id,
    }


async def execute(
    registration: Registration,
    command: Command,
    *,
    worker: str,
    executor: Executor | None = None,
) -> Result:
    """Run the handler within the command's deadline; never raises except when cancelled."""
    extra = log_extra(command, worker)
    if command.kind is not registration.kind:
        log.warning(
            "%s is registered as a %s but was sent a %s command; running it anyway",
            command.action,
            "step" if registration.kind is CommandKind.EXECUTE else "compensation",
            command.kind.value,
            extra=extra,
        )
    remaining = _seconds_left(command.deadline)
    if remaining is not None and remaining <= 0:
        log.warning("deadline passed before the handler started", extra=extra)
        return _failed(command, worker, _timeout(command))
    ctx = StepContext.from_command(command)
    try:
        async with asyncio.timeout(remaining) as scope:
            value = await _call(registration.handler, ctx, executor)
        output = _output(value) if command.kind is CommandKind.EXECUTE else None
    except TimeoutError as exc:
        if not scope.expired():
            return _handler_failed(command, worker, exc, extra)
        log.warning("deadline passed; handler cancelled", extra=extra)
        return _failed(command, worker, _timeout(command))
    except Exception as exc:
        return _handler_failed(command, worker, exc, extra)
    log.info("handler succeeded", extra=extra)
    return Result.answering(command, output=output, worker=worker)


async def _call(handler: Handler, ctx: StepContext, executor: Executor | None) -> object:
    if inspect.iscoroutinefunction(handler):
        return await handler(ctx)
    loop = asyncio.get_running_loop()
    # A thread cannot be cancelled: past the deadline it runs on, but its result is ignored.
    value = await loop.run_in_executor(executor, contextvars.copy_context().run, handler, ctx)
    if inspect.isawaitable(value):  # e.g. a functools.partial of an async function
        value = await value
    return value


def _output(value: object) -> JsonObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidOutput(
            f"a step handler must return a dict (a JSON object) or None, not {type(value).__name__}"
        )
    try:
        copied: JsonObject = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidOutput(f"the step's output is not JSON-serialisable: {exc}") from exc
    return copied


def _seconds_left(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    if deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=UTC)
    return (deadline - datetime.now(UTC)).total_seconds()


def _timeout(command: Command) -> ErrorInfo:
    assert command.deadline is not None
    return ErrorInfo(
        message=f"the handler did not finish by the deadline {command.deadline.isoformat()}",
        type="Timeout",
        retryable=True,
    )


def _handler_failed(
    command: Command, worker: str, exc: Exception, extra: dict[str, object]
) -> Result:
    info = error_info(exc)
    if isinstance(exc, SagaError):
        log.warning("handler failed: %s: %s", info.type, info.message, extra=extra)
    else:
        log.exception("handler raised %s", type(exc).__name__, extra=extra)
    return _failed(command, worker, info)


def _failed(command: Command, worker: str, error: ErrorInfo) -> Result:
    return Result.answering(command, error=error, worker=worker)
