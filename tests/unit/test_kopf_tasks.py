"""kopf may stop only its own tasks (operator/kopf_tasks.py)."""

from __future__ import annotations

import asyncio

import pytest
from kopf._cogs.aiokits import aiotime

from kubesaga.operator.kopf_tasks import NotKopf, started_by_kopf

pytestmark = pytest.mark.unit


async def test_tasks_of_kopf_are_kopfs_and_every_other_task_is_left_alone() -> None:
    ours = asyncio.create_task(asyncio.Event().wait())
    kopfs = asyncio.create_task(aiotime.sleep(60))
    try:
        assert started_by_kopf(kopfs)
        assert not started_by_kopf(ours)
        ignored = NotKopf(existing=set())
        assert ours in ignored
        assert kopfs not in ignored
        assert kopfs in NotKopf(existing={kopfs}), "a task from before kopf started stays ignored"
        assert set(ignored) >= {ours} and kopfs not in set(ignored)
        assert len(ignored) == len(list(ignored))
    finally:
        for task in (ours, kopfs):
            task.cancel()
        await asyncio.gather(ours, kopfs, return_exceptions=True)
