"""A web service that starts a saga per order: the FastAPI example of docs/python.md.

``POST /orders`` starts the order saga of ``examples/01-order-saga`` (whose worker runs the
steps) and answers 202 with the saga's name at once; ``GET /orders/{order_id}`` shows where it
stands. The views are plain ``def`` functions: FastAPI runs them in its thread pool, which is
where the blocking ``SagaClient`` belongs (in an ``async def`` view, use ``AsyncSagaClient``).

Run it against the local platform (``eval "$(hack/testenv.sh up)"``) with
``uvicorn --factory --app-dir examples fastapi_app:app_from_environment``.
Tested by ``tests/integration/test_python_docs.py``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, Field

from kubesaga import SagaAlreadyExists, SagaClient, SagaInvalid, SagaNotFound

OrderId = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")]


class Order(BaseModel):
    """What a shop front sends to place an order."""

    order_id: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
    customer: str
    sku: str
    quantity: int = Field(ge=1)
    unit_price: float = Field(ge=0)
    card: str


class Started(BaseModel):
    """The answer to ``POST /orders``: which saga runs the order."""

    saga: str
    namespace: str
    phase: str


def order_steps(order: Order) -> list[dict[str, Any]]:
    """The order saga of examples/01-order-saga, with this order's details."""
    return [
        {
            "name": "create_order",
            "action": "orders.create",
            "compensation": "orders.delete",
            "input": {"sku": order.sku, "quantity": order.quantity, "unit_price": order.unit_price},
        },
        {
            "name": "reserve_inventory",
            "action": "inventory.reserve",
            "compensation": "inventory.release",
            "input": {"warehouse": "eu-west"},
            "retry": {"maxAttempts": 5, "backoffSeconds": 1},
        },
        {
            "name": "charge_payment",
            "action": "payment.charge",
            "compensation": "payment.refund",
            "input": {"card": order.card},
            "timeoutSeconds": 30,
        },
    ]


def create_app(sagas: SagaClient) -> FastAPI:
    """The app, on a client the caller made (and closes): tests hand in their own."""
    app = FastAPI(title="orders")

    @app.post("/orders", status_code=202)
    def place_order(order: Order) -> Started:
        """Start the order's saga; the same order posted again (a client retry) is no error."""
        try:
            handle = sagas.start(
                f"order-{order.order_id}",
                order_steps(order),
                {"customer": order.customer, "currency": "EUR"},
            )
        except SagaAlreadyExists as error:  # same order id, different order: a client bug
            raise HTTPException(status_code=409, detail=str(error)) from error
        except SagaInvalid as error:  # e.g. a rule the apiserver enforces
            raise HTTPException(status_code=422, detail=str(error)) from error
        return Started(saga=handle.name, namespace=handle.namespace, phase=handle.phase)

    @app.get("/orders/{order_id}")
    def order_status(order_id: OrderId) -> dict[str, Any]:
        """Where the order's saga stands: its phase and each step's."""
        try:
            handle = sagas.get(f"order-{order_id}")
        except SagaNotFound as error:
            raise HTTPException(status_code=404, detail=f"no order {order_id}") from error
        return {
            "saga": handle.name,
            "phase": handle.phase,
            "message": handle.status.message,
            "steps": {step.name: step.phase for step in handle.steps},
        }

    return app


def app_from_environment() -> FastAPI:
    """The app on a client from $KUBECONFIG (or the pod's service account) and $ORDERS_NAMESPACE."""
    return create_app(SagaClient.connect(namespace=os.environ.get("ORDERS_NAMESPACE", "default")))
