"""Workers against a real RabbitMQ: results published before acks, nothing lost on shutdown.

The test plays the operator: it publishes commands with a ``Broker`` and reads results from a
results queue of its own. Waiting is on futures, events and consumers, bounded by
``asyncio.timeout``; nothing sleeps in place of an event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from kubesaga.broker import Broker, BrokerSettings, action_queue
from kubesaga.errors import RetryableError
from kubesaga.models import Command, CommandKind, Result, ResultStatus, SagaRef
from kubesaga.worker import StepContext, Worker
from tests.faults.platform import amqp_address, proxied_amqp_url
from tests.faults.proxy import TcpProxy
from tests.integration.harness import unique

pytestmark = pytest.mark.integration

WAIT_S = 30
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_command(action: str, kind: CommandKind = CommandKind.EXECUTE, **changes: Any) -> Command:
    fields: dict[str, Any] = {
        "dispatch_id": f"uid-1/create/{kind.value}/1/{uuid.uuid4().hex}",
        "saga": SagaRef(namespace="shop", name="order-1", uid="uid-1"),
        "step": "create",
        "kind": kind,
        "action": action,
        "attempt": 1,
        "input": {"sku": "A-1"},
    }
    return Command.model_validate({**fields, **changes})


class Results:
    """Results arriving on the test's results queue, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Result] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        await self.queue.put(Result.model_validate_json(message.body))

    async def next(self) -> Result:
        async with asyncio.timeout(WAIT_S):
            return await self.queue.get()


@pytest_asyncio.fixture(loop_scope="session")
async def results(
    broker: Broker, settings: BrokerSettings, channel: AbstractChannel
) -> AsyncIterator[Results]:
    collected = Results()
    queue = await channel.declare_queue(settings.results_queue, passive=True)
    tag = await queue.consume(collected.on_message)
    try:
        yield collected
    finally:
        await queue.cancel(tag)


@pytest.fixture
def action() -> str:
    return unique("test.orders")


@pytest_asyncio.fixture(loop_scope="session")
async def action_queues(action: str, channel: AbstractChannel) -> AsyncIterator[None]:
    yield
    for name in (action, action + ".undo"):
        await channel.queue_delete(action_queue(name))


async def ready_count(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


class Running:
    """A ``Worker.run`` in a task, stopped through its ``stop`` event."""

    def __init__(
        self,
        worker: Worker,
        settings: BrokerSettings,
        grace: float = 30.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.stop = stop or asyncio.Event()
        self.task = asyncio.create_task(
            worker._serve(settings, concurrency=4, grace=grace, stop=self.stop)
        )

    async def shutdown(self) -> None:
        self.stop.set()
        async with asyncio.timeout(WAIT_S):
            await self.task


@pytest_asyncio.fixture(loop_scope="session")
async def running(
    request: pytest.FixtureRequest,
) -> AsyncIterator[list[Running]]:
    """Workers started by a test; any still running at the end are cancelled."""
    started: list[Running] = []
    yield started
    for run in started:
        if not run.task.done():
            run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)


def start(
    running: list[Running],
    worker: Worker,
    settings: BrokerSettings,
    grace: float = 30.0,
    stop: asyncio.Event | None = None,
) -> Running:
    run = Running(worker, settings, grace, stop)
    running.append(run)
    return run


def orders_worker(action: str) -> Worker:
    worker = Worker("orders")

    @worker.step(action)
    async def create(ctx: StepContext) -> dict[str, Any]:
        return {"order_id": f"o-{ctx.input['sku']}"}

    @worker.compensation(action + ".undo")
    def delete(ctx: StepContext) -> None:
        assert ctx.step_output == {"order_id": "o-A-1"}

    return worker


# ----------------------------------------------------------------------------------- results


@pytest.mark.usefixtures("action_queues")
async def test_command_gets_its_result_published_and_is_acked(
    broker: Broker,
    results: Results,
    channel: AbstractChannel,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
) -> None:
    command = make_command(action)
    await broker.publish_command(command)
    run = start(running, orders_worker(action), settings)

    result = await results.next()
    await run.shutdown()  # an unacked command would go back to its queue here

    assert (result.dispatch_id, result.status, result.output, result.worker) == (
        command.dispatch_id,
        ResultStatus.SUCCEEDED,
        {"order_id": "o-A-1"},
        "orders",
    )
    assert await ready_count(channel, action_queue(action)) == 0


@pytest.mark.usefixtures("action_queues")
async def test_compensation_command_runs_the_compensation(
    broker: Broker,
    results: Results,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
) -> None:
    command = make_command(action + ".undo", CommandKind.COMPENSATE, output={"order_id": "o-A-1"})
    await broker.publish_command(command)
    start(running, orders_worker(action), settings)

    result = await results.next()
    assert (result.kind, result.status, result.error) == (
        CommandKind.COMPENSATE,
        ResultStatus.SUCCEEDED,
        None,
    )


@pytest.mark.usefixtures("action_queues")
async def test_retryable_error_is_published_as_a_retryable_failure(
    broker: Broker,
    results: Results,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
) -> None:
    worker = Worker("flaky")

    @worker.step(action)
    async def flaky(ctx: StepContext) -> dict[str, Any]:
        raise RetryableError("inventory service unavailable")

    await broker.publish_command(make_command(action))
    start(running, worker, settings)

    result = await results.next()
    assert result.status is ResultStatus.FAILED
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("RetryableError", True)


@pytest.mark.usefixtures("action_queues")
@pytest.mark.parametrize("seconds", [-5.0, 0.2], ids=["already-passed", "passes-while-running"])
async def test_deadline_gives_a_retryable_timeout_failure(
    broker: Broker,
    results: Results,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
    seconds: float,
) -> None:
    worker = Worker("slow")

    @worker.step(action)
    async def never_done(ctx: StepContext) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    deadline = datetime.now(UTC) + timedelta(seconds=seconds)
    await broker.publish_command(make_command(action, deadline=deadline))
    start(running, worker, settings)

    result = await results.next()
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("Timeout", True)


@pytest.mark.usefixtures("action_queues")
async def test_redelivered_dispatch_id_runs_the_handler_once(
    broker: Broker,
    results: Results,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
) -> None:
    calls: list[str] = []
    release = asyncio.Event()
    worker = Worker("once")

    @worker.step(action)
    async def create(ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.dispatch_id)
        await release.wait()
        return {"n": len(calls)}

    command = make_command(action)
    await broker.publish_command(command)
    await broker.publish_command(command)  # e.g. re-published after a lost result
    start(running, worker, settings)
    release.set()

    first, second = await results.next(), await results.next()
    assert first == second
    assert calls == [command.dispatch_id]


@pytest.mark.usefixtures("action_queues")
@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b'{"truncated": ', "malformed message"),
        (b"unknown", "command for action 'test.unknown' arrived on queue"),
        (b"other-action", ".undo' arrived on queue"),
    ],
    ids=["malformed", "unknown-action", "other-action-it-serves"],
)
async def test_command_the_worker_cannot_run_is_dead_lettered_and_acked(
    broker: Broker,
    settings: BrokerSettings,
    channel: AbstractChannel,
    running: list[Running],
    action: str,
    body: bytes,
    reason_part: str,
) -> None:
    await broker.declare_action(action)
    if body in (b"unknown", b"other-action"):
        name = "test.unknown" if body == b"unknown" else action + ".undo"
        body = make_command(name).model_dump_json(by_alias=True).encode()
    await channel.default_exchange.publish(aio_pika.Message(body), routing_key=action_queue(action))
    dead: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

    async def on_dead(message: AbstractIncomingMessage) -> None:
        await message.ack()
        dead.set_result(message)

    dlq = await channel.declare_queue(settings.dead_letter_queue, passive=True)
    await dlq.consume(on_dead)
    run = start(running, orders_worker(action), settings)

    async with asyncio.timeout(WAIT_S):
        message = await dead
    await run.shutdown()
    assert message.body == body
    assert reason_part in str((message.headers or {})["x-kubesaga-reason"])
    assert await ready_count(channel, action_queue(action)) == 0


# ---------------------------------------------------------------------------------- shutdown


def blocking_worker(action: str, started: asyncio.Event, until: asyncio.Event) -> Worker:
    worker = Worker("blocking")

    @worker.step(action)
    async def create(ctx: StepContext) -> dict[str, Any]:
        started.set()
        await until.wait()
        return {"finished": True}

    return worker


@pytest.mark.usefixtures("action_queues")
async def test_graceful_stop_lets_a_running_handler_publish_its_result(
    broker: Broker,
    results: Results,
    channel: AbstractChannel,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
) -> None:
    started = asyncio.Event()
    stop = asyncio.Event()  # the handler finishes only once the worker was told to stop
    run = start(running, blocking_worker(action, started, stop), settings, stop=stop)
    command = make_command(action)
    await broker.publish_command(command)
    async with asyncio.timeout(WAIT_S):
        await started.wait()

    await run.shutdown()

    result = await results.next()  # the worker is gone: it published this before exiting
    assert (result.dispatch_id, result.output) == (command.dispatch_id, {"finished": True})
    assert await ready_count(channel, action_queue(action)) == 0


@pytest.mark.usefixtures("action_queues")
async def test_handler_still_running_after_the_grace_period_goes_back_to_the_queue(
    broker: Broker,
    results: Results,
    channel: AbstractChannel,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
) -> None:
    started = asyncio.Event()
    run = start(running, blocking_worker(action, started, asyncio.Event()), settings, grace=0.1)
    await broker.publish_command(make_command(action))
    async with asyncio.timeout(WAIT_S):
        await started.wait()

    await run.shutdown()

    assert results.queue.empty()
    assert await ready_count(channel, action_queue(action)) == 1


@pytest.mark.usefixtures("action_queues")
async def test_command_of_a_worker_stopped_hard_is_finished_by_another_worker(
    broker: Broker,
    results: Results,
    settings: BrokerSettings,
    running: list[Running],
    action: str,
) -> None:
    started = asyncio.Event()
    first = start(running, blocking_worker(action, started, asyncio.Event()), settings)
    command = make_command(action)
    await broker.publish_command(command)
    async with asyncio.timeout(WAIT_S):
        await started.wait()

    first.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first.task
    assert results.queue.empty()
    start(running, orders_worker(action), settings)

    result = await results.next()
    assert (result.dispatch_id, result.status, result.worker) == (
        command.dispatch_id,
        ResultStatus.SUCCEEDED,
        "orders",
    )


@pytest_asyncio.fixture(loop_scope="session")
async def proxied_settings(
    settings: BrokerSettings,
) -> AsyncIterator[tuple[BrokerSettings, TcpProxy]]:
    """``settings`` with the broker reached through a ``TcpProxy`` and quick reconnects."""
    proxy = TcpProxy(*amqp_address(settings.url))
    port = await proxy.start()
    proxied = proxied_amqp_url(settings.url, port, reconnect_interval=0.1)
    try:
        yield replace(settings, url=proxied), proxy
    finally:
        await proxy.close()


@pytest.mark.usefixtures("action_queues")
async def test_worker_survives_a_dropped_connection_and_runs_the_handler_once(
    broker: Broker,
    results: Results,
    channel: AbstractChannel,
    proxied_settings: tuple[BrokerSettings, TcpProxy],
    running: list[Running],
    action: str,
) -> None:
    worker_settings, proxy = proxied_settings
    calls: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()
    worker = Worker("resilient")

    @worker.step(action)
    async def create(ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.dispatch_id)
        started.set()
        await release.wait()
        return {"ok": True}

    command = make_command(action)
    await broker.publish_command(command)
    run = start(running, worker, worker_settings)
    async with asyncio.timeout(WAIT_S):
        await started.wait()

    proxy.drop()  # the result's publish is cut (and retried); the ack can no longer arrive
    release.set()

    first, second = await results.next(), await results.next()
    await run.shutdown()
    assert first == second and first.dispatch_id == command.dispatch_id
    assert calls == [command.dispatch_id]
    assert await ready_count(channel, action_queue(action)) == 0


# -------------------------------------------------------------------------- `kubesaga worker`

CLI_ACTION = os.environ.get("KUBESAGA_TEST_CLI_ACTION", "test.cli")
cli_worker = Worker("cli")


@cli_worker.step(CLI_ACTION)
def wait_for_stdin(ctx: StepContext) -> dict[str, Any]:
    """Says it started, then blocks until the test writes a line (after sending SIGTERM)."""
    print("started", flush=True)
    return {"line": sys.stdin.readline().strip()}


CLI_MAIN = (
    "import typer; from kubesaga.cli.worker_cmd import worker; "
    "app = typer.Typer(); app.command()(worker); app()"
)


@pytest.mark.usefixtures("action_queues")
async def test_kubesaga_worker_finishes_the_running_handler_on_sigterm(
    broker: Broker,
    results: Results,
    channel: AbstractChannel,
    settings: BrokerSettings,
    action: str,
) -> None:
    env = {
        **os.environ,
        "KUBESAGA_AMQP_URL": settings.url,
        "KUBESAGA_RESULTS_QUEUE": settings.results_queue,
        "KUBESAGA_DEAD_LETTER_QUEUE": settings.dead_letter_queue,
        "KUBESAGA_TEST_CLI_ACTION": action,
    }
    command = make_command(action)
    await broker.publish_command(command)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI_MAIN,
        "tests.integration.test_worker:cli_worker",
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(WAIT_S):
            assert (await proc.stdout.readline()).strip() == b"started"
            proc.send_signal(signal.SIGTERM)
            proc.stdin.write(b"after sigterm\n")
            await proc.stdin.drain()
            assert await proc.wait() == 0
            result = await results.next()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (result.dispatch_id, result.output) == (command.dispatch_id, {"line": "after sigterm"})
    assert await ready_count(channel, action_queue(action)) == 0
