"""``kubesaga start -f`` as a user runs it: idempotent like the clients, and saying which."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubesaga.settings import Settings
from tests.integration.harness import cli


async def test_start_twice_creates_once_and_says_unchanged_the_second_time(
    operator_settings: Settings,
    saga_crd: dict[str, Any],
    kubeconfig: str,
    namespace: str,
    prefix: str,
    tmp_path: Path,
) -> None:
    """Like ``kubectl apply`` (created, then unchanged), not a second "created" for a saga
    that was already there; no operator is needed to create one."""
    manifest = tmp_path / "saga.yaml"
    saga = {
        "apiVersion": "kubesaga.io/v1alpha1",
        "kind": "Saga",
        "metadata": {"name": "cli-start"},
        "spec": {"steps": [{"name": "a", "action": f"{prefix}.a"}]},
    }
    manifest.write_text(yaml.safe_dump(saga), encoding="utf-8")
    start = ("start", "-f", str(manifest), "-n", namespace)
    first = await cli(operator_settings, kubeconfig, *start)
    again = await cli(operator_settings, kubeconfig, *start)
    assert first == ["saga.kubesaga.io/cli-start created"]
    assert again == ["saga.kubesaga.io/cli-start unchanged (it exists with the same spec)"]
