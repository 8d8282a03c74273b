"""One Kubernetes connection: kopf's watch and the operator's writes use the same configuration
(issue 10, defect 5).

kopf's stock login read only ``$KUBECONFIG`` (after trying the in-cluster account) while the store
took ``Settings.kubeconfig`` (``KUBESAGA_KUBECONFIG`` too): with the two pointing at different
clusters, the operator watched one and wrote the other. Here ``$KUBECONFIG`` names an apiserver
that does not exist and the settings name the platform's: the saga must run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubesaga import AsyncSagaClient, SagaPhase
from kubesaga.settings import Settings
from tests.integration.harness import operator_task, worker_task
from tests.integration.scripted import scripted_worker, step

pytestmark = pytest.mark.usefixtures("saga_crd")

WAIT_S = 60


def nowhere_kubeconfig(path: Path) -> Path:
    """A kubeconfig for an apiserver on a port nobody listens on."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "nobody", "user": {"token": "nothing"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
        "current-context": "nowhere",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_kubesaga_kubeconfig_wins_over_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "general"))
    monkeypatch.setenv("KUBESAGA_KUBECONFIG", str(tmp_path / "ours"))
    assert Settings().kubeconfig == str(tmp_path / "ours")


async def test_watch_and_writes_both_use_the_configured_kubeconfig(
    operator_settings: Settings,
    saga_client: AsyncSagaClient,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(nowhere_kubeconfig(tmp_path / "nowhere")))
    worker, _ = scripted_worker(prefix)
    async with operator_task(operator_settings), worker_task(worker, operator_settings):
        await saga_client.start("one-cluster", [step(prefix, "create_order")])
        saga = await saga_client.wait("one-cluster", WAIT_S)
    assert saga.phase is SagaPhase.COMPLETED
