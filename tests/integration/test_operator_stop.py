"""Stopping the operator is ours to order, not kopf's (operator/kopf_tasks.py).

kopf's ``run_tasks`` treated every task created after it started as its own: at stop it cancelled
them and re-raised the first error one of them ended with. An aio-pika task that ended with
``ChannelClosed`` while its channel closed turned a clean stop into "the operator crashed"
(seen once in a full integration run).
"""

from __future__ import annotations

import asyncio

import pytest

from kubesaga.settings import Settings
from tests.integration.harness import operator_task

pytestmark = pytest.mark.integration


async def test_a_task_that_is_not_kopfs_and_fails_when_cancelled_does_not_crash_the_stop(
    operator_settings: Settings,
) -> None:
    async def like_an_aio_pika_task() -> None:
        """Runs until cancelled, then ends with an error, as aiormq's channel tasks do."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("channel closed while cancelling") from None

    async with operator_task(operator_settings) as operator:
        started = asyncio.run_coroutine_threadsafe(_spawn(like_an_aio_pika_task), operator.loop)
        await asyncio.wrap_future(started)
    # On exit operator_task raises "the operator crashed" if the stop re-raised that error.
    assert not operator.is_alive()


async def _spawn(coro: object) -> None:
    """Start ``coro()`` as a task of the running loop (the operator's)."""
    assert callable(coro)
    task = asyncio.ensure_future(coro())
    _keep.add(task)
    task.add_done_callback(_keep.discard)


_keep: set[asyncio.Future[None]] = set()
