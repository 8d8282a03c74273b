"""Both clients behind one async interface, so one suite drives ``SagaClient`` and
``AsyncSagaClient`` through the same scenarios.

The blocking client runs in a worker thread (``asyncio.to_thread``), as it would under a web
framework's thread pool; its ``watch`` generator is pumped from that thread into a queue, so the
test sees each snapshot when the client yields it. Nothing here decides anything: every
assertion is about what the real client returned or raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from kubesaga import (
    AsyncSagaClient,
    AsyncSagaHandle,
    Saga,
    SagaClient,
    SagaHandle,
)
from kubesaga.models import SagaSpec, SagaStatus, StepStatus


class Handle(Protocol):
    """What the suite uses of a handle, async whichever client made it."""

    @property
    def name(self) -> str: ...
    @property
    def uid(self) -> str: ...
    @property
    def created(self) -> bool: ...
    @property
    def spec(self) -> SagaSpec: ...
    @property
    def status(self) -> SagaStatus: ...
    @property
    def steps(self) -> list[StepStatus]: ...
    async def wait(self, timeout: float | None = None) -> Saga: ...
    async def compensate(self) -> Saga: ...
    async def refresh(self) -> Saga: ...
    async def suspend(self) -> Saga: ...
    async def resume(self) -> Saga: ...
    async def redrive(self) -> Saga: ...


class Client(Protocol):
    """What the suite uses of a client, async whichever flavour is under test."""

    flavour: str
    client: Any
    """The real client underneath (for the tests that reach into its transport)."""

    async def start(self, name: str, steps: list[dict[str, Any]], **kw: Any) -> Handle: ...
    async def get(self, name: str) -> Handle: ...
    async def list_active(self) -> list[Handle]: ...
    async def compensate(self, name: str) -> Saga: ...
    async def suspend(self, name: str) -> Saga: ...
    async def resume(self, name: str) -> Saga: ...
    async def redrive(self, name: str) -> Saga: ...
    async def list_sagas(self, label_selector: str = "") -> list[Handle]: ...
    async def wait(self, name: str, timeout: float | None = None) -> Saga: ...
    async def delete(self, name: str) -> None: ...
    def watch(self, name: str, timeout: float | None = None) -> AsyncIterator[Saga]: ...


class AsyncAdapter:
    """``AsyncSagaClient`` as it is (its handles already fit ``Handle``)."""

    flavour = "async"

    def __init__(self, client: AsyncSagaClient) -> None:
        self.client = client

    async def start(self, name: str, steps: list[dict[str, Any]], **kw: Any) -> Handle:
        handle: AsyncSagaHandle = await self.client.start(name, steps, **kw)
        return handle

    async def get(self, name: str) -> Handle:
        return await self.client.get(name)

    async def list_active(self) -> list[Handle]:
        return list(await self.client.list_active())

    async def compensate(self, name: str) -> Saga:
        return await self.client.compensate(name)

    async def suspend(self, name: str) -> Saga:
        return await self.client.suspend(name)

    async def resume(self, name: str) -> Saga:
        return await self.client.resume(name)

    async def redrive(self, name: str) -> Saga:
        return await self.client.redrive(name)

    async def list_sagas(self, label_selector: str = "") -> list[Handle]:
        return list(await self.client.list_sagas(label_selector=label_selector))

    async def wait(self, name: str, timeout: float | None = None) -> Saga:
        return await self.client.wait(name, timeout)

    async def delete(self, name: str) -> None:
        await self.client.delete(name)

    async def watch(self, name: str, timeout: float | None = None) -> AsyncIterator[Saga]:
        async with contextlib.aclosing(self.client.watch(name, timeout)) as updates:
            async for saga in updates:
                yield saga


class ThreadedHandle:
    """A ``SagaHandle`` whose blocking calls run in a thread."""

    def __init__(self, handle: SagaHandle) -> None:
        self.handle = handle

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def uid(self) -> str:
        return self.handle.uid

    @property
    def created(self) -> bool:
        return self.handle.created

    @property
    def spec(self) -> SagaSpec:
        return self.handle.spec

    @property
    def status(self) -> SagaStatus:
        return self.handle.status

    @property
    def steps(self) -> list[StepStatus]:
        return self.handle.steps

    async def wait(self, timeout: float | None = None) -> Saga:
        return await asyncio.to_thread(self.handle.wait, timeout)

    async def compensate(self) -> Saga:
        return await asyncio.to_thread(self.handle.compensate)

    async def refresh(self) -> Saga:
        return await asyncio.to_thread(self.handle.refresh)

    async def suspend(self) -> Saga:
        return await asyncio.to_thread(self.handle.suspend)

    async def resume(self) -> Saga:
        return await asyncio.to_thread(self.handle.resume)

    async def redrive(self) -> Saga:
        return await asyncio.to_thread(self.handle.redrive)


class SyncAdapter:
    """``SagaClient`` (blocking) run in threads."""

    flavour = "sync"

    def __init__(self, client: SagaClient) -> None:
        self.client = client

    async def start(self, name: str, steps: list[dict[str, Any]], **kw: Any) -> Handle:
        return ThreadedHandle(await asyncio.to_thread(self.client.start, name, steps, **kw))

    async def get(self, name: str) -> Handle:
        return ThreadedHandle(await asyncio.to_thread(self.client.get, name))

    async def list_active(self) -> list[Handle]:
        handles = await asyncio.to_thread(self.client.list_active)
        return [ThreadedHandle(h) for h in handles]

    async def compensate(self, name: str) -> Saga:
        return await asyncio.to_thread(self.client.compensate, name)

    async def suspend(self, name: str) -> Saga:
        return await asyncio.to_thread(self.client.suspend, name)

    async def resume(self, name: str) -> Saga:
        return await asyncio.to_thread(self.client.resume, name)

    async def redrive(self, name: str) -> Saga:
        return await asyncio.to_thread(self.client.redrive, name)

    async def list_sagas(self, label_selector: str = "") -> list[Handle]:
        handles = await asyncio.to_thread(self.client.list_sagas, label_selector=label_selector)
        return [ThreadedHandle(h) for h in handles]

    async def wait(self, name: str, timeout: float | None = None) -> Saga:
        return await asyncio.to_thread(self.client.wait, name, timeout)

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self.client.delete, name)

    async def watch(self, name: str, timeout: float | None = None) -> AsyncIterator[Saga]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Saga | BaseException | None] = asyncio.Queue()
        put: Callable[[Saga | BaseException | None], None] = queue.put_nowait

        def pump() -> None:
            try:
                for saga in self.client.watch(name, timeout):
                    loop.call_soon_threadsafe(put, saga)
                loop.call_soon_threadsafe(put, None)
            except BaseException as error:  # handed to the test's task, raised there
                loop.call_soon_threadsafe(put, error)

        thread = asyncio.create_task(asyncio.to_thread(pump))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            await thread  # the watch ends by itself: settled, deleted or timed out
