"""The fault tools themselves (tests/faults): each fault does what it says, so a chaos scenario
that passes under it has really met it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from tests.faults.platform import restart
from tests.faults.proxy import Direction, TcpProxy, running_proxy

WAIT_S = 5.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest_asyncio.fixture(loop_scope="session")
async def echo_proxy() -> AsyncIterator[TcpProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    async with running_proxy("127.0.0.1", port) as proxy:
        yield proxy
    server.close()
    await server.wait_closed()


async def _connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"ping")
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(4), WAIT_S)


async def test_delay_adds_latency_each_way_and_keeps_order(echo_proxy: TcpProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    echo_proxy.delay(0.3, Direction.DOWN)
    t0 = time.monotonic()
    writer.write(b"a")
    writer.write(b"b")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(2), WAIT_S) == b"ab"
    assert time.monotonic() - t0 >= 0.3
    echo_proxy.delay(0.3)  # both ways
    t0 = time.monotonic()
    assert await _round_trip(reader, writer) == b"ping"
    assert time.monotonic() - t0 >= 0.6
    echo_proxy.heal()
    writer.close()


async def test_stall_forwards_nothing_until_healed_then_everything(echo_proxy: TcpProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    echo_proxy.stall(Direction.UP)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_round_trip(reader, writer), 0.5)
    echo_proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(4), WAIT_S) == b"ping"
    writer.close()


async def test_a_new_connection_during_a_stall_connects_but_gets_no_answer(
    echo_proxy: TcpProxy,
) -> None:
    echo_proxy.stall()
    reader, writer = await _connect(echo_proxy)  # the TCP handshake is the proxy's own
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_round_trip(reader, writer), 0.5)
    echo_proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(4), WAIT_S) == b"ping"
    writer.close()


async def test_blackhole_throws_one_direction_away(echo_proxy: TcpProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    echo_proxy.blackhole(Direction.DOWN)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_round_trip(reader, writer), 0.5)
    assert echo_proxy.figures.bytes_up >= 4  # the request went through; the answer did not
    echo_proxy.heal()
    reader2, writer2 = await _connect(echo_proxy)
    assert await _round_trip(reader2, writer2) == b"ping"
    with pytest.raises(TimeoutError):  # the old answer is gone for good
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    writer.close()
    writer2.close()


async def test_reset_aborts_open_connections(echo_proxy: TcpProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    assert await _round_trip(reader, writer) == b"ping"
    echo_proxy.reset()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _round_trip(reader, writer)


async def test_control_plane_restart_keeps_the_data(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="fault-tools-kept"), data={"kept": "yes"}
    )
    try:
        created = await core.create_namespaced_config_map("default", body)
    except client.ApiException as error:
        assert error.status == 409
        created = await core.read_namespaced_config_map("fault-tools-kept", "default")
    away = await restart("control-plane")
    read = await core.read_namespaced_config_map("fault-tools-kept", "default")
    assert read.metadata.uid == created.metadata.uid
    assert read.metadata.resource_version == created.metadata.resource_version
    assert away < 60
    await core.delete_namespaced_config_map("fault-tools-kept", "default")
