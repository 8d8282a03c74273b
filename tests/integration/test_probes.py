"""Probes on the real platform: a broker or API outage makes a process unready, never dead.

The broker and the apiserver are reached through a ``TcpProxy``; ``refuse()`` cuts every
connection and refuses new ones (a network fault), ``accept()`` ends it. The probes are read over
HTTP the way the kubelet reads them; waiting for a status is bounded.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection

from kubesaga.broker import action_queue
from kubesaga.settings import Settings
from tests.faults.platform import (
    proxied_amqp_url,
    proxied_kubeconfig,
)
from tests.faults.proxy import TcpProxy
from tests.integration.harness import free_port, operator_env, operator_task, unique

WAIT_S = 30


async def status(url: str) -> int:
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def until_status(url: str, wanted: int, timeout: float = WAIT_S) -> None:
    """Read the probe until it answers ``wanted`` (bounded, like the kubelet's period)."""
    seen = None
    try:
        async with asyncio.timeout(timeout):
            while (seen := await status(url)) != wanted:  # noqa: ASYNC110 - a probe is polled
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{url} answered {seen}, not {wanted}, for {timeout}s") from None


# -------------------------------------------------------------------------------- operator


@pytest.mark.usefixtures("saga_crd")
async def test_operator_is_unready_but_alive_while_the_broker_is_unreachable(
    operator_settings: Settings, broker_proxy: TcpProxy
) -> None:
    port = free_port()
    settings = operator_settings.model_copy(
        update={
            "amqp_url": proxied_amqp_url(operator_settings.amqp_url, broker_proxy.port),
            "metrics_port": port,
            "metrics_host": "127.0.0.1",
        }
    )
    base = f"http://127.0.0.1:{port}"
    async with operator_task(settings):
        await until_status(f"{base}/readyz", 200)
        await broker_proxy.refuse()
        await until_status(f"{base}/readyz", 503)
        assert await status(f"{base}/livez") == 200
        await broker_proxy.accept()
        await until_status(f"{base}/readyz", 200)


@pytest.mark.usefixtures("saga_crd")
async def test_operator_is_unready_but_alive_while_the_kubernetes_api_is_unreachable(
    operator_settings: Settings, api_proxy: TcpProxy, kubeconfig: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = operator_settings.model_copy(
        update={
            "kubeconfig": proxied_kubeconfig(kubeconfig, api_proxy.port, tmp_path / "proxied"),
            "metrics_port": port,
            "metrics_host": "127.0.0.1",
        }
    )
    base = f"http://127.0.0.1:{port}"
    async with operator_task(settings):
        await until_status(f"{base}/readyz", 200)
        await api_proxy.refuse()
        await until_status(f"{base}/readyz", 503)
        assert await status(f"{base}/livez") == 200
        await api_proxy.accept()
        await until_status(f"{base}/readyz", 200)


@pytest.mark.usefixtures("saga_crd")
async def test_operator_starts_when_its_uid_has_no_passwd_entry(
    operator_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash of the first real pod: kopf built its identity from getpass.getuser()."""

    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 10001")

    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    monkeypatch.delenv("KUBESAGA_POD_NAME", raising=False)
    async with operator_task(operator_settings):
        pass  # operator_task returns once the watch runs, and raises if the operator crashed


# ---------------------------------------------------------------------------------- worker

WORKER_MODULE = """
from kubesaga import Worker

worker = Worker("probed")


@worker.step({action!r})
def do(ctx):
    return {{}}
"""


@pytest_asyncio.fixture(loop_scope="session")
async def worker_action(amqp_connection: AbstractRobustConnection) -> AsyncIterator[str]:
    action = unique("probed")
    yield action
    channel = await amqp_connection.channel()
    await channel.queue_delete(action_queue(action))
    await channel.close()


async def test_worker_is_ready_while_connected_and_consuming_and_stays_alive_without_a_broker(
    operator_settings: Settings, broker_proxy: TcpProxy, worker_action: str, tmp_path: Path
) -> None:
    (tmp_path / "handlers.py").write_text(WORKER_MODULE.format(action=worker_action), "utf-8")
    port = free_port()
    settings = operator_settings.model_copy(
        update={"amqp_url": proxied_amqp_url(operator_settings.amqp_url, broker_proxy.port)}
    )
    env = operator_env(settings) | {
        "KUBESAGA_HEALTH_PORT": str(port),
        "KUBESAGA_METRICS_HOST": "127.0.0.1",
    }
    env.pop("KUBESAGA_METRICS_PORT")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubesaga",
        "worker",
        f"--app-dir={tmp_path}",
        "--grace=1",
        "handlers:worker",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await until_status(f"{base}/readyz", 200)
        assert await status(f"{base}/livez") == 200
        await broker_proxy.refuse()
        await until_status(f"{base}/readyz", 503)
        assert await status(f"{base}/livez") == 200
        await broker_proxy.accept()
        await until_status(f"{base}/readyz", 200)
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), WAIT_S) == 0
