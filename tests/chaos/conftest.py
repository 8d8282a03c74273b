"""The chaos suite: its size option and the Saga CRD fixture.

``--chaos-sagas N`` (or ``KUBESAGA_CHAOS_SAGAS``) sets how many sagas run through the faults; the
default is the bounded size CI runs. The option is known when pytest is pointed at this folder
(``pytest tests/chaos --chaos-sagas=300``); a run of the whole suite uses the environment variable.
The fault schedule is random; the run prints its seed, and ``KUBESAGA_CHAOS_SEED`` replays it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.integration.conftest import saga_crd_fixture

__all__ = ["saga_crd_fixture"]

DEFAULT_SAGAS = 60
FIGURES = pytest.StashKey[list[str]]()
"""Lines of figures the chaos test leaves for the terminal summary (shown in CI logs)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-sagas",
        type=int,
        default=int(os.environ.get("KUBESAGA_CHAOS_SAGAS", DEFAULT_SAGAS)),
        help=f"sagas in the chaos run (default {DEFAULT_SAGAS}; env KUBESAGA_CHAOS_SAGAS)",
    )


def chaos_time_budget(sagas: int) -> float:
    """Seconds the chaos test may take in all: creation at a fixed rate, then the drain."""
    return 120.0 + 1.0 * sagas


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The chaos test's pytest-timeout grows with its size."""
    sagas = int(config.getoption("chaos_sagas"))
    for item in items:
        if item.get_closest_marker("chaos") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(chaos_time_budget(sagas) + 60))


@pytest.fixture
def chaos_sagas(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("chaos_sagas"))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("chaos figures")
        for line in lines:
            terminalreporter.write_line(line)
