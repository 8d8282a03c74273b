"""The FastAPI view of docs/python.md (``examples/fastapi_app.py``), served by FastAPI's
TestClient, against the platform: the blocking SagaClient, the operator and the worker of
examples/01-order-saga, so the order posted to the view runs to its end.

Like ``test_examples.py`` it keeps the default dead-letter queue: the example's action queues
have fixed names and are declared with that queue's name as an argument.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from kubesaga import SagaClient, SagaPhase, Worker
from kubesaga.broker.topology import DEAD_LETTER_QUEUE
from kubesaga.settings import Settings
from tests.integration.examples_kit import load_handlers
from tests.integration.harness import operator_task, worker_task

APP = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"
WAIT_S = 60


def load_app_module() -> ModuleType:
    """Import examples/fastapi_app.py (examples/ is not a package)."""
    name = f"fastapi_app_{uuid.uuid4().hex[:6]}"
    spec = importlib.util.spec_from_file_location(name, APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ORDER: dict[str, Any] = {
    "order_id": "o-1001",
    "customer": "c-17",
    "sku": "A-1",
    "quantity": 2,
    "unit_price": 19.99,
    "card": "tok_visa_4242",
}


async def test_the_fastapi_view_starts_a_saga_and_returns_its_name(
    operator_settings: Settings, saga_crd: dict[str, Any], kubeconfig: str, namespace: str
) -> None:
    """Catches a docs example that does not work: the view must start the saga (which then
    completes), answer a retried post with the same saga, refuse a different order under the
    same id with 409 and the client's message, and report the saga's phase and a missing one."""
    # Imported here, not at collection: Starlette warns that its TestClient prefers httpx2.
    from fastapi.testclient import TestClient

    settings = operator_settings.model_copy(update={"dead_letter_queue": DEAD_LETTER_QUEUE})
    worker = load_handlers("01-order-saga").worker
    assert isinstance(worker, Worker)
    sagas = await asyncio.to_thread(SagaClient.connect, kubeconfig, namespace)
    web = TestClient(load_app_module().create_app(sagas))
    try:
        async with operator_task(settings), worker_task(worker, settings):
            posted = await asyncio.to_thread(web.post, "/orders", json=ORDER)
            assert posted.status_code == 202, posted.text
            started = posted.json()
            assert started["saga"] == "order-o-1001" and started["namespace"] == namespace

            retried = await asyncio.to_thread(web.post, "/orders", json=ORDER)
            assert retried.status_code == 202 and retried.json()["saga"] == started["saga"]

            changed = await asyncio.to_thread(web.post, "/orders", json={**ORDER, "quantity": 3})
            assert changed.status_code == 409
            assert "already exists with a different spec" in changed.json()["detail"]

            final = await asyncio.to_thread(sagas.wait, started["saga"], WAIT_S)
        assert final.phase is SagaPhase.COMPLETED, final.status

        shown = await asyncio.to_thread(web.get, "/orders/o-1001")
        assert shown.status_code == 200
        assert shown.json()["phase"] == "Completed"
        assert shown.json()["steps"] == {
            "create_order": "Succeeded",
            "reserve_inventory": "Succeeded",
            "charge_payment": "Succeeded",
        }
        missing = await asyncio.to_thread(web.get, "/orders/o-404")
        assert missing.status_code == 404 and missing.json()["detail"] == "no order o-404"
    finally:
        web.close()
        sagas.close()
