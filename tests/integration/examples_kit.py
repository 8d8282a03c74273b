"""Running the examples of examples/ on the platform: shared by test_examples and the UI tests.

Each run loads the example's ``handlers.py`` afresh (its in-memory services start empty), runs
its ``worker`` beside an operator scoped to the test's namespace and results queue, creates the
saga from ``saga.yaml`` and waits (by watching) for the final phase. The ``run_example`` fixture
(conftest.py) provides an ``ExampleRun``.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from kubesaga import AsyncSagaClient, Saga, Worker
from kubesaga.models import SagaPhase as Phase
from kubesaga.models import SagaSpec
from kubesaga.settings import Settings
from tests.integration.harness import worker_task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT_S = 60


def load_handlers(example: str) -> ModuleType:
    """Import examples/<example>/handlers.py under a unique module name (fresh state)."""
    path = EXAMPLES / example / "handlers.py"
    name = f"example_{example.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_manifest(example: str) -> tuple[str, SagaSpec, Phase]:
    """Name, spec and expected final phase (the annotation the demo reads too)."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / example / "saga.yaml").read_text())
    assert doc["apiVersion"] == "kubesaga.io/v1alpha1" and doc["kind"] == "Saga"
    expected = doc["metadata"]["annotations"]["examples.kubesaga.io/expected-phase"]
    return doc["metadata"]["name"], SagaSpec.model_validate(doc["spec"]), Phase(expected)


class ExampleRun:
    def __init__(self, client: AsyncSagaClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def __call__(self, example: str) -> tuple[Saga, ModuleType]:
        handlers = load_handlers(example)
        worker = handlers.worker
        assert isinstance(worker, Worker)
        name, spec, expected = load_manifest(example)
        async with worker_task(worker, self.settings):
            await self.client.create(name, spec)
            saga = await self.client.wait(name, WAIT_S)
        assert saga.phase is expected, saga.status
        return saga, handlers
