"""Probes of a process: liveness follows the event loop only, readiness every registered check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from kubesaga.health import Health, serve
from kubesaga.operator.main import operator_identity
from kubesaga.settings import Settings

pytestmark = pytest.mark.unit


@pytest_asyncio.fixture(loop_scope="session")
async def health() -> AsyncIterator[Health]:
    health = Health(stall_after=0.5, beat_every=0.01)
    health.start()
    yield health
    await health.close()


async def test_alive_while_the_event_loop_runs_its_heartbeat(health: Health) -> None:
    await asyncio.sleep(0.03)
    assert health.liveness().ok


async def test_not_alive_when_the_event_loop_was_blocked_longer_than_the_stall_limit(
    health: Health,
) -> None:
    time.sleep(0.6)  # noqa: ASYNC251 - blocking the loop on purpose, as a wedged handler would
    assert not health.liveness().ok
    await asyncio.sleep(0.02)  # the loop runs again: so does the heartbeat
    assert health.liveness().ok


async def test_not_alive_without_a_running_heartbeat() -> None:
    health = Health()
    assert not health.liveness().ok
    health.start()
    assert health.liveness().ok
    await health.close()
    assert not health.liveness().ok


async def test_liveness_ignores_failing_readiness_checks(health: Health) -> None:
    health.add_check("broker", lambda: False)
    assert health.liveness().ok
    assert not (await health.readiness()).ok


async def test_ready_only_when_every_check_passes_sync_or_async(health: Health) -> None:
    broker = [True]

    async def api() -> bool:
        return True

    health.add_check("broker", lambda: broker[0])
    health.add_check("kubernetes-api", api)
    assert (await health.readiness()).ok
    broker[0] = False
    report = await health.readiness()
    assert not report.ok
    assert report.render() == "[-]broker failed\n[+]kubernetes-api ok\nreadyz check failed\n"


async def test_a_raising_check_counts_as_not_ready(health: Health) -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    health.add_check("broken", broken)
    assert not (await health.readiness()).ok


async def test_nothing_registered_is_not_ready(health: Health) -> None:
    """A worker serves its probes before it connects: it must not look ready yet."""
    assert not (await health.readiness()).ok
    health.add_check("broker", lambda: True)
    health.remove_check("broker")
    assert not (await health.readiness()).ok


async def test_a_check_name_is_registered_once(health: Health) -> None:
    health.add_check("broker", lambda: True)
    with pytest.raises(ValueError, match="broker"):
        health.add_check("broker", lambda: True)


async def test_http_answers_200_or_503_with_one_line_per_check(
    health: Health, unused_tcp_port: int
) -> None:
    ready = [False]
    health.add_check("consumers", lambda: ready[0])
    runner = await serve(health, "127.0.0.1", unused_tcp_port)
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/livez") as response:
                assert (response.status, await response.text()) == (
                    200,
                    "[+]event-loop ok\nlivez check passed\n",
                )
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503
                assert "[-]consumers failed" in await response.text()
            ready[0] = True
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200
    finally:
        await runner.cleanup()


def test_operator_identity_is_the_pod_name_else_the_host_name_never_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 10001")

    monkeypatch.setattr("getpass.getuser", no_passwd_entry)
    monkeypatch.setattr("socket.gethostname", lambda: "node-1")
    monkeypatch.delenv("KUBESAGA_POD_NAME", raising=False)
    assert operator_identity(Settings()) == "node-1"
    monkeypatch.setenv("KUBESAGA_POD_NAME", "kubesaga-7d9f-abcde")
    assert operator_identity(Settings()) == "kubesaga-7d9f-abcde"
