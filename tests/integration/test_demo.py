"""``kubesaga demo`` as a user runs it: a real process against the session's platform.

``KUBESAGA_USE_EXISTING=1`` points it at the platform the session uses; each test gets a
namespace of its own (the demo accepts an existing one) and checks that every process the demo
started has gone when it says so (by the KUBESAGA_NAMESPACES its children carry).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, Platform

DEMO_TIMEOUT_S = 240
EXPECTED = {
    "01-order-saga": "Completed",
    "02-compensation": "Compensated",
    "03-parallel": "Completed",
    "04-retry-timeout": "Completed",
    "05-approval": "Compensated",  # nobody approves: the approval times out
    "06-suspend-redrive": "Failed",
}


def demo_env(platform: Platform) -> dict[str, str]:
    return dict(
        os.environ,
        KUBESAGA_USE_EXISTING="1",
        KUBECONFIG=platform.kubeconfig,
        KUBESAGA_AMQP_URL=platform.amqp_url,
        COLUMNS="220",
    )


async def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "kubesaga", "demo", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


def processes_of(namespace: str) -> list[int]:
    """PIDs of this user's processes configured for ``namespace`` (the demo's children)."""
    needle = f"KUBESAGA_NAMESPACES={namespace}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


async def test_demo_runs_every_example_to_its_expected_phase_and_stops_what_it_started(
    platform: Platform, namespace: str
) -> None:
    proc = await run_demo(demo_env(platform), "--namespace", namespace)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "kubesaga demo: summary" in proc.stdout
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    for example, phase in EXPECTED.items():
        # EXAMPLE SAGA PHASE RESULT STEPS RETRIES TIME
        assert rows[example][2:4] == [phase, "ok"], rows[example]
    assert rows["04-retry-timeout"][5] == "2"  # one retryable error, one timeout
    assert "02-compensation: step charge_payment failed: PaymentDeclined" in proc.stdout
    assert "every saga ended as expected" in proc.stdout
    assert "Traceback" not in output
    assert processes_of(namespace) == []


async def test_demo_keep_leaves_the_operator_and_workers_running_for_kubectl(
    platform: Platform, namespace: str
) -> None:
    env = demo_env(platform)
    proc = await run_demo(env, "--namespace", namespace, "--keep", "--example", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kill = re.search(r"^\s*kill ([\d ]+?)\s+#", proc.stdout, flags=re.MULTILINE)
    assert kill is not None, proc.stdout
    pids = [int(pid) for pid in kill.group(1).split()]
    try:
        assert sorted(pids) == sorted(processes_of(namespace))
        assert len(pids) == 2  # the operator and example 01's worker
        assert f"export KUBECONFIG={platform.kubeconfig}" in proc.stdout
        assert f"kubectl get sagas -n {namespace}" in proc.stdout
        table = await asyncio.to_thread(
            subprocess.run,
            ["kubectl", "get", "sagas", "-n", namespace, "--no-headers"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        name, phase, progress = table.stdout.split()[:3]
        assert name.startswith("order-saga-") and (phase, progress) == ("Completed", "3/3")
    finally:
        await asyncio.gather(*(terminate(pid) for pid in pids))
        logs = re.search(r"logs in (\S+)", proc.stdout)
        if logs is not None:
            shutil.rmtree(logs.group(1), ignore_errors=True)
    assert processes_of(namespace) == []


async def terminate(pid: int) -> None:
    """SIGTERM a process that is not our child and wait for it to exit (a pidfd, no polling)."""
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(pid)
    gone = loop.create_future()
    loop.add_reader(fd, gone.set_result, None)
    try:
        os.kill(pid, signal.SIGTERM)
        await asyncio.wait_for(gone, 30)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def test_without_go_or_binaries_the_demo_says_what_to_install(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBESAGA_USE_EXISTING", "KUBEBUILDER_ASSETS", "KUBECONFIG")
    }
    env.update(
        GO=str(tmp_path / "no-go"),
        KUBESAGA_BIN_DIR=str(tmp_path / "bin"),
        KUBESAGA_TESTENV_DIR=str(tmp_path / "state"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "kubesaga", "demo"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Go is not installed" in proc.stderr and "KUBEBUILDER_ASSETS" in proc.stderr
    assert "the local platform did not start" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


if sys.platform != "linux":  # the demo's children are found through /proc
    pytestmark = pytest.mark.skip(reason="needs Linux /proc")
