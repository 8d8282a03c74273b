"""Background tasks the orchestrator starts, kept so that ``close()`` can wait for every one.

An untracked ``create_task`` can outlive the broker it publishes to, and its errors go nowhere.
Each task starts in an empty context: a task inherits a copy of its creator's context
variables otherwise, and the creator is often kopf's event handler, whose context holds the
whole watch event (body, patch, loggers), which every saga's timer then kept alive (~5 KB per
saga in flight, measured with tracemalloc).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("kubesaga.operator")


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait until every task, including ones spawned while waiting, has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
