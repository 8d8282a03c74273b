"""Faults beyond process kills (issue 17): the control plane restarts, the network misbehaves.

Each scenario runs the chaos mix (``tests/chaos/run.py``: the same invariants and figures as
the process faults) while ``tests/chaos/faults.py`` does one kind of fault to the operators:
- ``control-plane``: kube-apiserver, etcd, then both restarted in place with their data;
- ``api-network``: operator <-> apiserver latency spikes, a stall, a blackhole;
- ``broker-partition``: operator <-> broker stalled, then cut, while workers keep their
  connection: results pile up on the results queue, then drain;
- ``broker-slow``: broker -> operator delayed by seconds (publisher confirms arrive late);
- ``everything``: all of these and the process kills and broker restarts at once.

Sizes: ``--fault-sagas`` (``KUBESAGA_FAULT_SAGAS``) per scenario, ``--chaos-sagas`` for
``everything``; the defaults are the bounded CI sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import faults
from tests.chaos.conftest import Platform
from tests.chaos.run import Scenario, run_scenario

pytestmark = [pytest.mark.chaos, pytest.mark.usefixtures("saga_crd")]

WINDOW_S = 30.0
"""The schedules' faults last up to ~25 s each: sagas keep arriving over at least this long."""


@pytest.mark.parametrize(
    ("name", "schedule"),
    [
        ("control-plane", faults.control_plane_restarts),
        ("api-network", faults.api_latency_and_stalls),
        ("broker-partition", faults.broker_partition),
        ("broker-slow", faults.broker_slow),
    ],
)
async def test_sagas_survive_platform_faults(
    chaos_platform: Platform,
    fault_sagas: int,
    name: str,
    schedule: faults.Schedule,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    scenario = Scenario(
        name, fault_sagas, schedule=schedule, proxies=True, min_window_s=WINDOW_S * 2
    )
    figures = await run_scenario(chaos_platform, scenario, tmp_path, request)
    assert figures.control_plane_restarts + figures.network_faults >= 2


async def test_sagas_survive_everything_at_once(
    chaos_platform: Platform, chaos_sagas: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scenario = Scenario(
        "everything",
        chaos_sagas,
        kills=True,
        broker_restarts=False,  # the schedule restarts the broker once, after the rest
        schedule=faults.everything,
        proxies=True,
        min_window_s=WINDOW_S * 3,
    )
    figures = await run_scenario(chaos_platform, scenario, tmp_path, request)
    assert figures.operator_kills >= 1 and figures.worker_kills >= 1
    assert figures.broker_restarts == 1 and figures.control_plane_restarts == 1
    assert figures.network_faults >= 4
