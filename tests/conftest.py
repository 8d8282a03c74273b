"""Test platform wiring for kubesaga.

Markers: tests under ``tests/unit/`` are marked ``unit``, tests under ``tests/cluster/`` ``cluster``
(they start their own one-node cluster, see ``tests/cluster/conftest.py``); every other collected
test is marked ``integration``. ``pytest -m unit`` therefore needs nothing started.

The platform (a real kube-apiserver + etcd and a real RabbitMQ, see ``hack/testenv.sh``) is a
lazy session fixture: it is started only when a test requests ``platform`` or a fixture built on
it, and stopped at session end only if this session started it.

Fixtures:
    platform         -> Platform(kubeconfig, amqp_url, started_here)          (session)
    kubeconfig       -> str, path of the kubeconfig                          (session)
    amqp_url         -> str, ``amqp://user:pass@host:port/vhost``            (session)
    api_client       -> kubernetes_asyncio.client.ApiClient                  (session, async)
    namespace        -> str, a fresh namespace, deleted afterwards           (function, async)
    amqp_connection  -> aio_pika robust connection, closed afterwards        (function, async)

This module must not import ``kubesaga``: the platform is tested independently of the package.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
UNIT_DIR = TESTS_DIR / "unit"
CLUSTER_DIR = TESTS_DIR / "cluster"
TESTENV = REPO_ROOT / "hack" / "testenv.sh"

# Generous: covers a first-time build of the binaries when nobody ran `hack/testenv.sh build`.
TESTENV_UP_TIMEOUT_S = 1800.0
TESTENV_DOWN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Platform:
    """Where the integration tests find the apiserver and the broker."""

    kubeconfig: str
    amqp_url: str
    started_here: bool


# ------------------------------------------------------------------------------------ markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark by folder: ``unit/`` -> ``unit``, ``cluster/`` -> ``cluster``, else ``integration``."""
    for item in items:
        if any(item.get_closest_marker(m) for m in ("unit", "integration", "cluster")):
            continue
        path = Path(str(item.path)).resolve()
        if path.is_relative_to(UNIT_DIR):
            item.add_marker(pytest.mark.unit)
        elif path.is_relative_to(CLUSTER_DIR):
            item.add_marker(pytest.mark.cluster)
        else:
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build/cache the platform binaries before any test runs when an integration test is selected.

    A first build takes minutes; done here it is not charged to the first integration test's
    timeout (pytest-timeout counts fixture setup). A no-op once cached, or with
    KUBESAGA_USE_EXISTING=1. A failure is left to the ``platform`` fixture to report.
    """
    if session.config.option.collectonly or os.environ.get("KUBESAGA_USE_EXISTING") == "1":
        return
    if not any(item.get_closest_marker("integration") for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            _testenv("prepare", timeout=TESTENV_UP_TIMEOUT_S, capture=False)
    else:
        _testenv("prepare", timeout=TESTENV_UP_TIMEOUT_S, capture=False)


# ----------------------------------------------------------------------------------- platform


def _parse_exports(text: str) -> dict[str, str]:
    """Parse the ``export NAME=VALUE`` lines printed by ``hack/testenv.sh up``."""
    exports: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            exports[name] = value
    return exports


def _testenv(
    *args: str, timeout: float, capture: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # stderr is inherited: progress shows up live with `-s`, or as captured output on failure.
    return subprocess.run(
        [str(TESTENV), *args],
        env=env,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        check=False,
    )


def _testenv_status() -> tuple[int, dict[str, str]]:
    """Exit code of ``hack/testenv.sh status`` and, when it runs, the KEY=VALUE lines it prints."""
    proc = _testenv("status", timeout=30)
    values: dict[str, str] = {}
    for match in re.finditer(r"^([A-Z_]+)=(.*)$", proc.stdout, flags=re.MULTILINE):
        values[match.group(1)] = match.group(2)
    return proc.returncode, values


def _existing_platform() -> Platform | None:
    """Use KUBECONFIG + KUBESAGA_AMQP_URL from the environment when they are known to be usable."""
    kubeconfig = os.environ.get("KUBECONFIG", "")
    amqp_url = os.environ.get("KUBESAGA_AMQP_URL", "")
    if not kubeconfig or not amqp_url:
        return None
    if os.environ.get("KUBESAGA_USE_EXISTING") == "1":
        return Platform(kubeconfig=kubeconfig, amqp_url=amqp_url, started_here=False)
    rc, values = _testenv_status()
    if (
        rc == 0
        and values.get("KUBECONFIG") == kubeconfig
        and values.get("KUBESAGA_AMQP_URL") == amqp_url
    ):
        return Platform(kubeconfig=kubeconfig, amqp_url=amqp_url, started_here=False)
    return None


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    """The running platform; started by ``hack/testenv.sh up`` unless one is already usable."""
    found = _existing_platform()
    if found is None:
        # `up` reuses what runs; it says whether it started anything (then this session owns the
        # platform and stops it at the end), and on failure it stops what it started itself.
        with tempfile.TemporaryDirectory(prefix="kubesaga-testenv-") as tmp:
            started_file = Path(tmp) / "started"
            env = dict(os.environ, KUBESAGA_TESTENV_STARTED_FILE=str(started_file))
            proc = _testenv("up", timeout=TESTENV_UP_TIMEOUT_S, env=env)
            started = started_file.exists() and started_file.read_text().strip() == "1"
        exports = _parse_exports(proc.stdout)
        if proc.returncode != 0 or not {"KUBECONFIG", "KUBESAGA_AMQP_URL"} <= exports.keys():
            pytest.fail(
                f"`hack/testenv.sh up` failed (exit {proc.returncode}); its stderr is above. "
                "To use a cluster and broker you already have, set KUBESAGA_USE_EXISTING=1, "
                "KUBECONFIG and KUBESAGA_AMQP_URL.",
                pytrace=False,
            )
        found = Platform(
            kubeconfig=exports["KUBECONFIG"],
            amqp_url=exports["KUBESAGA_AMQP_URL"],
            started_here=started,
        )

    # Processes spawned by tests (operator, workers) find the platform the same way users do.
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "KUBESAGA_AMQP_URL")}
    os.environ["KUBECONFIG"] = found.kubeconfig
    os.environ["KUBESAGA_AMQP_URL"] = found.amqp_url
    try:
        yield found
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if found.started_here:
            _testenv("down", timeout=TESTENV_DOWN_TIMEOUT_S, capture=False)


@pytest.fixture(scope="session")
def kubeconfig(platform: Platform) -> str:
    """Path of the kubeconfig (cluster-admin: the client certificate is in system:masters)."""
    return platform.kubeconfig


@pytest.fixture(scope="session")
def amqp_url(platform: Platform) -> str:
    """``amqp://user:pass@host:port/vhost`` of the test broker."""
    return platform.amqp_url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_client(kubeconfig: str) -> AsyncIterator[client.ApiClient]:
    """An async Kubernetes API client for the platform's apiserver, shared by the session."""
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=kubeconfig, client_configuration=configuration, persist_config=False
    )
    api = client.ApiClient(configuration=configuration)
    try:
        yield api
    finally:
        await api.close()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:8]}" if slug else f"t-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(loop_scope="session")
async def namespace(
    api_client: client.ApiClient, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A fresh, uniquely named namespace; deleted after the test.

    There is no kube-controller-manager on the platform, so a deleted namespace stays Terminating
    and the objects in it are not garbage-collected; unique names keep tests apart regardless.
    """
    core = client.CoreV1Api(api_client)
    name = _namespace_name(request.node.name)
    await core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"kubesaga.io/test": "true"})
        )
    )
    try:
        yield name
    finally:
        try:
            await core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest_asyncio.fixture(loop_scope="session")
async def amqp_connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    """A robust AMQP connection to the test broker, closed after the test."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        yield connection
    finally:
        await connection.close()
