"""The chaos suite: its size options and its fixtures.

``--chaos-sagas N`` (or ``KUBESAGA_CHAOS_SAGAS``) sets how many sagas run through the process
faults and through everything at once; ``--fault-sagas N`` (``KUBESAGA_FAULT_SAGAS``) how many
run through each control-plane and network scenario. The defaults are the bounded sizes CI runs.
The options are known when pytest is pointed at this folder (``pytest tests/chaos
--chaos-sagas=300``); a run of the whole suite uses the environment variables.
The fault schedule is random; the run prints its seed, and ``KUBESAGA_CHAOS_SEED`` replays it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.integration.conftest import saga_crd_fixture

__all__ = ["saga_crd_fixture"]


@dataclass(frozen=True)
class Platform:
    """What a chaos run needs of the platform and the test's namespace."""

    api_client: client.ApiClient
    kubeconfig: str
    amqp_url: str
    namespace: str


DEFAULT_SAGAS = 60
DEFAULT_FAULT_SAGAS = 30
FIGURES = pytest.StashKey[list[str]]()
"""Lines of figures the chaos test leaves for the terminal summary (shown in CI logs)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-sagas",
        type=int,
        default=int(os.environ.get("KUBESAGA_CHAOS_SAGAS", DEFAULT_SAGAS)),
        help=f"sagas in the chaos run (default {DEFAULT_SAGAS}; env KUBESAGA_CHAOS_SAGAS)",
    )
    parser.addoption(
        "--fault-sagas",
        type=int,
        default=int(os.environ.get("KUBESAGA_FAULT_SAGAS", DEFAULT_FAULT_SAGAS)),
        help=f"sagas per control-plane/network chaos scenario (default {DEFAULT_FAULT_SAGAS}; "
        "env KUBESAGA_FAULT_SAGAS)",
    )


def chaos_time_budget(sagas: int) -> float:
    """Seconds the chaos test may take in all: creation at a fixed rate, then the drain."""
    return 120.0 + 1.0 * sagas


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The chaos tests' pytest-timeout grows with their size (and the faults' own time)."""
    sagas = max(int(config.getoption("chaos_sagas")), int(config.getoption("fault_sagas")))
    for item in items:
        if item.get_closest_marker("chaos") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(chaos_time_budget(sagas) + 240))


@pytest.fixture
def chaos_sagas(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("chaos_sagas"))


@pytest.fixture
def fault_sagas(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("fault_sagas"))


@pytest.fixture
def chaos_platform(
    api_client: client.ApiClient, kubeconfig: str, amqp_url: str, namespace: str
) -> Platform:
    return Platform(api_client, kubeconfig, amqp_url, namespace)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("chaos figures")
        for line in lines:
            terminalreporter.write_line(line)
