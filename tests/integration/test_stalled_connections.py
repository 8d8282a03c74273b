"""A connection that stalls (bytes accepted, none answered) must not hang anything for ever.

Each test reaches the apiserver or the broker through a ``TcpProxy`` and blackholes it: the
connection stays open and silent, the way a lost peer, a dropped NAT entry or a partition looks
to a client. Each call must end by itself within its bound (its own timeout, not the test's);
``_ends_by_itself`` tells the two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes_asyncio import client

from kubesaga.broker import Broker, BrokerSettings
from kubesaga.store import make_api_client, watching
from tests.faults.platform import (
    proxied_amqp_url,
    proxied_kubeconfig,
    restart,
)
from tests.faults.proxy import TcpProxy

T = TypeVar("T")
REQUEST_TIMEOUT_S = 2.0
BOUND_S = 20.0
"""How long a test waits before it calls the operation hung."""


async def _ends_by_itself(operation: Awaitable[T], bound: float = BOUND_S) -> asyncio.Task[T]:
    """Run ``operation``; fail if it has not ended (returned or raised) after ``bound`` seconds."""
    task = asyncio.ensure_future(operation)
    done, _ = await asyncio.wait({task}, timeout=bound)
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise AssertionError(f"still waiting after {bound}s on a stalled connection: hung")
    return task


# ------------------------------------------------------------------------ Kubernetes API


async def test_an_api_call_on_a_stalled_connection_times_out(
    kubeconfig: str, api_proxy: TcpProxy, tmp_path: Path
) -> None:
    """kubernetes_asyncio sends a request without ``_request_timeout`` with no timeout at all:
    a status write on a stalled connection waited for ever."""
    proxied = proxied_kubeconfig(kubeconfig, api_proxy.port, tmp_path / "kubeconfig")
    api = await make_api_client(proxied, request_timeout=REQUEST_TIMEOUT_S)
    try:
        core = client.CoreV1Api(api)
        await core.list_namespace(limit=1)  # a pooled connection, then it goes silent
        api_proxy.blackhole()
        call = await _ends_by_itself(core.list_namespace(limit=1))
        with pytest.raises(TimeoutError):
            call.result()
        api_proxy.heal()
        await core.list_namespace(limit=1)  # a new connection works again
    finally:
        api_proxy.heal()
        await api.close()


class Seen:
    """Names a watch delivered, collected by a task so the watch runs while the test acts."""

    def __init__(self, events: Any) -> None:
        self.names: set[str] = set()
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._collect(events))

    async def _collect(self, events: Any) -> None:
        async for kind, obj in events:
            if kind != "DELETED":
                self.names.add(obj.metadata.name)
                self.changed.set()

    async def wait_for(self, name: str) -> None:
        """Until ``name`` was delivered; raises what ended the watch, if it ended."""
        while name not in self.names:
            self.changed.clear()
            changed = asyncio.create_task(self.changed.wait())
            await asyncio.wait({changed, self.task}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if self.task.done():
                self.task.result()
                raise AssertionError("the watch ended")

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _create(api: client.ApiClient, namespace: str, name: str) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
    await client.CoreV1Api(api).create_namespaced_config_map(namespace, body)


async def test_a_watch_on_a_stalled_connection_resumes(
    kubeconfig: str,
    api_proxy: TcpProxy,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A watch that delivers nothing (no event, no bookmark) for ``idle_timeout`` is opened
    again from its last resourceVersion; before, a silent connection kept it waiting for ever."""
    proxied = proxied_kubeconfig(kubeconfig, api_proxy.port, tmp_path / "kubeconfig")
    api = await make_api_client(proxied, request_timeout=REQUEST_TIMEOUT_S)
    await _create(api_client, namespace, "listed")
    seen = Seen(
        watching.follow(client.CoreV1Api(api).list_namespaced_config_map, namespace, idle_timeout=3)
    )
    try:
        await asyncio.wait_for(seen.wait_for("listed"), BOUND_S)  # listed; now it watches
        await _create(api_client, namespace, "watched")
        await asyncio.wait_for(seen.wait_for("watched"), BOUND_S)
        api_proxy.blackhole()
        await _create(api_client, namespace, "lost")
        await asyncio.sleep(1)  # the fault's length: the watch's connection stays dead
        api_proxy.heal()
        await _ends_by_itself(seen.wait_for("lost"))
        assert api_proxy.figures.dropped > 0  # the event really went into the blackhole
    finally:
        api_proxy.heal()
        await seen.close()
        await api.close()


async def test_a_watch_follows_through_an_apiserver_restart(
    api_client: client.ApiClient, namespace: str
) -> None:
    """The watch's connection is reset and the apiserver refuses connections for a while: the
    watch carries on from its resourceVersion (it raised ClientPayloadError or
    ClientConnectorError before)."""
    await _create(api_client, namespace, "listed")
    seen = Seen(watching.follow(client.CoreV1Api(api_client).list_namespaced_config_map, namespace))
    try:
        await asyncio.wait_for(seen.wait_for("listed"), BOUND_S)
        await restart("apiserver")
        await _create(api_client, namespace, "after")
        await asyncio.wait_for(seen.wait_for("after"), BOUND_S)
        assert seen.task.done() is False  # it did not end with an error
    finally:
        await seen.close()


# -------------------------------------------------------------------------------- broker


async def test_connecting_to_a_silent_broker_times_out(
    settings: BrokerSettings, broker_proxy: TcpProxy
) -> None:
    """aio-pika connects without a timeout unless given one: an operator starting while its
    broker is partitioned away hung in ``Broker.connect`` instead of failing (and restarting)."""
    broker_proxy.blackhole()
    proxied = replace(
        settings,
        url=proxied_amqp_url(settings.url, broker_proxy.port),
        operation_timeout=REQUEST_TIMEOUT_S,
    )
    connecting = await _ends_by_itself(Broker.connect(proxied))
    with pytest.raises(TimeoutError):
        connecting.result()


async def test_the_broker_notices_a_silent_connection_and_reconnects_once_healed(
    settings: BrokerSettings, broker_proxy: TcpProxy
) -> None:
    """With AMQP heartbeats of 60 s (the default) a silent connection counted as connected for
    three minutes: readiness said ready and publishes timed out against it. And a reconnect
    attempt made during the partition waited on its own silent connection for ever, so the
    broker was never reconnected after the network healed."""
    proxied = replace(
        settings,
        url=proxied_amqp_url(settings.url, broker_proxy.port),
        operation_timeout=REQUEST_TIMEOUT_S,
        heartbeat=2,
    )
    broker = await Broker.connect(proxied)
    try:
        lost = asyncio.Event()
        restored = asyncio.Event()
        broker.connection.close_callbacks.add(lambda *_: lost.set())
        broker.connection.reconnect_callbacks.add(lambda *_: restored.set())
        broker_proxy.blackhole()
        await _ends_by_itself(lost.wait())
        assert not broker.connected
        # A reconnect attempt meets the partition too, then the network heals.
        await _ends_by_itself(broker_proxy.wait_connections(broker_proxy.figures.connections + 1))
        broker_proxy.heal()
        await _ends_by_itself(restored.wait(), bound=4 * REQUEST_TIMEOUT_S + 10)
        assert broker.connected
    finally:
        broker_proxy.heal()
        await broker.close()
