"""Which asyncio tasks kopf may stop when it stops: only its own.

``kopf.run_tasks`` treats every task created after the operator started as one of its
sub-tasks: on stop it waits 5 s for them, cancels the rest, and re-raises the first error any of
them ended with. Our tasks (mailboxes, publishes, consumers) and aio-pika's internal ones are
not kopf's: cancelling them before ``run_operator`` closes the orchestrator and the broker in
order cuts writes short, and an aio-pika task that ended with ``ChannelClosed`` while its
channel closed made a clean stop look like a crash. ``run_tasks(…, ignored=NotKopf(existing))``
leaves kopf only the tasks whose coroutine kopf defined.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection, Iterator
from typing import Any

import kopf

KOPF_DIR = os.path.dirname(kopf.__file__) + os.sep


def started_by_kopf(task: asyncio.Task[Any]) -> bool:
    """True if the task runs a coroutine defined in the kopf package."""
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return code is not None and code.co_filename.startswith(KOPF_DIR)


class NotKopf(Collection["asyncio.Task[Any]"]):
    """The tasks kopf must leave alone: those that existed before it started, and any not its own.

    Only ``in`` matters to kopf; iterating lists the matching tasks of the running loop.
    """

    def __init__(self, existing: Collection[asyncio.Task[Any]]) -> None:
        self._existing = frozenset(existing)

    def __contains__(self, task: object) -> bool:
        if not isinstance(task, asyncio.Task):
            return False
        return task in self._existing or not started_by_kopf(task)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter([t for t in asyncio.all_tasks() if t in self])

    def __len__(self) -> int:
        return sum(1 for _ in self)
