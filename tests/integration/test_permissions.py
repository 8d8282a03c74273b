"""The RabbitMQ permissions docs/protocol.md gives each role are enough, and no more.

An operator and a worker run as RabbitMQ users holding exactly the documented permissions and
drive a saga through a step and a compensation; the worker's user cannot consume another
action's queue or the results queue.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused

from kubesaga import AsyncSagaClient, SagaPhase
from kubesaga.broker import action_queue
from kubesaga.settings import Settings
from tests.integration.harness import operator_task, worker_task
from tests.integration.scripted import scripted_worker, step
from tests.integration.test_faults import platform_broker_is_ours

pytestmark = pytest.mark.usefixtures("saga_crd")

TESTENV = Path(__file__).resolve().parents[2] / "hack" / "testenv.sh"
VHOST = "kubesaga"
WAIT_S = 60

OPERATOR = (r"^kubesaga(\..*)?$",) * 3
"""configure, write, read: the exchange and every kubesaga.* queue (docs/protocol.md)."""


def worker_permissions(action_prefix: str, results: str, dead_letter: str) -> tuple[str, str, str]:
    """The documented worker rule: configure and write the exchange, the results and dead-letter
    queues and its own action queues; read the exchange (to bind) and its own action queues."""
    own = re.escape(action_queue(action_prefix)[len("kubesaga") :]) + r"\..*"
    shared = "|".join(re.escape(name[len("kubesaga") :]) for name in (results, dead_letter))
    return (f"^kubesaga({shared}|{own})?$", f"^kubesaga({shared}|{own})?$", f"^kubesaga({own})?$")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(
        [str(TESTENV), "rabbitmqctl", "-q", *args],
        check=True,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


class Users:
    """RabbitMQ users created for one test, deleted afterwards."""

    def __init__(self, amqp_url: str) -> None:
        self.url = urlsplit(amqp_url)
        self.names: list[str] = []

    def add(self, role: str, permissions: tuple[str, str, str]) -> str:
        """Create a user with ``permissions`` on the vhost; returns its AMQP URL."""
        name, password = f"{role}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        rabbitmqctl("add_user", name, password)
        self.names.append(name)
        rabbitmqctl("set_permissions", "-p", VHOST, name, *permissions)
        host = self.url.netloc.rsplit("@", 1)[-1]
        return urlunsplit(self.url._replace(netloc=f"{quote(name)}:{quote(password)}@{host}"))

    def delete(self) -> None:
        for name in self.names:
            rabbitmqctl("delete_user", name)


async def ignore(message: AbstractIncomingMessage) -> None:
    """A consumer that is never called: consuming is refused."""


@pytest.fixture
def users(amqp_url: str) -> Iterator[Users]:
    if not platform_broker_is_ours(amqp_url):
        pytest.skip("the broker was not started by hack/testenv.sh: no rabbitmqctl for it")
    made = Users(amqp_url)
    try:
        yield made
    finally:
        made.delete()


async def test_operator_and_worker_run_with_exactly_the_documented_permissions(
    users: Users,
    operator_settings: Settings,
    saga_client: AsyncSagaClient,
    prefix: str,
    amqp_connection: AbstractRobustConnection,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    base = operator_settings.model_copy(
        update={
            "results_queue": f"kubesaga.results.{suffix}",
            "dead_letter_queue": f"kubesaga.dead-letter.{suffix}",
        }
    )
    as_operator = base.model_copy(
        update={"amqp_url": await asyncio.to_thread(users.add, "operator", OPERATOR)}
    )
    worker_url = await asyncio.to_thread(
        users.add, "worker", worker_permissions(prefix, base.results_queue, base.dead_letter_queue)
    )
    as_worker = base.model_copy(update={"amqp_url": worker_url})
    worker, ledger = scripted_worker(prefix)
    async with operator_task(as_operator), worker_task(worker, as_worker):
        await saga_client.start(
            "least-privilege", [step(prefix, "a"), step(prefix, "b", fail="permanent")]
        )
        saga = await saga_client.wait("least-privilege", WAIT_S)
    assert saga.phase is SagaPhase.COMPENSATED
    assert ledger.steps("undo", "least-privilege") == ["a"]

    other = action_queue(f"other-{suffix}")
    admin = await amqp_connection.channel()
    await admin.declare_queue(other, durable=True)
    try:
        for queue in (other, base.results_queue):
            connection = await aio_pika.connect(worker_url)
            async with connection:
                channel = await connection.channel()
                refused = await channel.get_queue(queue, ensure=False)
                with pytest.raises(ChannelAccessRefused):
                    await refused.consume(ignore, no_ack=True)
    finally:
        for queue in (other, base.results_queue, base.dead_letter_queue):
            await admin.queue_delete(queue)
        await admin.close()
