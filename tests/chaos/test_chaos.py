"""Process faults: a mix of sagas runs while everything around them keeps failing.

While sagas are created at a steady rate and run to their end:
- two operator replicas run at once; one of them is SIGKILLed every few seconds and restarted;
- RabbitMQ is restarted in place (``hack/testenv.sh restart-broker``) once or twice;
- worker processes are SIGKILLed (mostly mid-step) and restarted;
- copies of the results workers send are re-published (exact duplicates, and stale copies with a
  wrong dispatch id or attempt), early or late;
- another client keeps patching the Sagas' labels, so status writes meet 409 Conflicts.

A second run does the same with three replicas sharing the shards, killed, added and removed
throughout (the shards keep moving).

The run and its checks are ``tests/chaos/run.py``; the network and control-plane faults are in
``test_platform_chaos.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import Platform
from tests.chaos.run import Scenario, run_scenario

pytestmark = [pytest.mark.chaos, pytest.mark.usefixtures("saga_crd")]


async def test_sagas_survive_chaos(
    chaos_platform: Platform, chaos_sagas: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scenario = Scenario("processes", chaos_sagas, kills=True, broker_restarts=True)
    figures = await run_scenario(chaos_platform, scenario, tmp_path, request)
    assert figures.operator_kills >= 1 and figures.worker_kills >= 1
    assert figures.broker_restarts >= 1 and figures.label_patches >= 1


async def test_sagas_survive_replicas_killed_added_and_removed(
    chaos_platform: Platform, chaos_sagas: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Three operator replicas share the shards; one is SIGKILLed every few seconds (and
    started again: a new member), and replicas are added and removed gracefully meanwhile, so
    the shards keep moving while results, duplicates and stale copies arrive."""
    scenario = Scenario("replicas", chaos_sagas, kills=True, replicas=3, scaling=True)
    figures = await run_scenario(chaos_platform, scenario, tmp_path, request)
    assert figures.operator_kills >= 1 and figures.replicas_added >= 1
