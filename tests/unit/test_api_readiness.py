"""The operator's readiness asks the apiserver's own /readyz, which includes its storage."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio import client

from kubesaga.operator.probes import ApiReachability

pytestmark = pytest.mark.unit


@pytest_asyncio.fixture
async def apiserver() -> AsyncIterator[dict[str, int]]:
    """An apiserver stand-in: /version always 200 (as with etcd down), /readyz as told."""
    answers = {"readyz": 200}

    async def version(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "major": "1",
                "minor": "34",
                "gitVersion": "v1.34.4",
                "gitCommit": "0",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    async def readyz(_: web.Request) -> web.Response:
        status = answers["readyz"]
        return web.Response(status=status, text="ok" if status == 200 else "[-]etcd failed")

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)
    app.router.add_get("/readyz", readyz)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    answers["port"] = server.port or 0
    try:
        yield answers
    finally:
        await server.close()


@pytest.mark.parametrize(("readyz", "ready"), [(200, True), (500, False), (403, True)])
async def test_the_api_counts_as_ready_only_when_its_readyz_says_so(
    apiserver: dict[str, int], readyz: int, ready: bool
) -> None:
    apiserver["readyz"] = readyz
    configuration = client.Configuration(host=f"http://127.0.0.1:{apiserver['port']}")
    async with client.ApiClient(configuration) as api:
        assert await ApiReachability(api, fresh_for=0)() is ready
