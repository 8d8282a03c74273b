"""The step graph's layout (kubesaga.ui.layout) and what the pages receive (kubesaga.ui.views)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubesaga.models import SagaSpec, SagaStatus
from kubesaga.store import SagaObject
from kubesaga.ui import layout as ui_layout
from kubesaga.ui import views
from kubesaga.ui.layout import NODE_HEIGHT, NODE_WIDTH, Edge, layout

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_spec(example: str) -> SagaSpec:
    doc = yaml.safe_load((EXAMPLES / example / "saga.yaml").read_text())
    return SagaSpec.model_validate(doc["spec"])


def forward(edges: tuple[Edge, ...]) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in edges if e.kind == "forward"}


def compensation(edges: tuple[Edge, ...]) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in edges if e.kind == "compensation"}


def test_a_chain_is_one_row_of_columns() -> None:
    drawn = layout(example_spec("01-order-saga"), None)
    assert [(n.name, n.layer) for n in drawn.nodes] == [
        ("create_order", 0),
        ("reserve_inventory", 1),
        ("charge_payment", 2),
    ]
    assert len({n.y for n in drawn.nodes}) == 1
    assert forward(drawn.edges) == {
        ("create_order", "reserve_inventory"),
        ("reserve_inventory", "charge_payment"),
    }
    assert all(n.phase == "Pending" for n in drawn.nodes)


def test_the_parallel_example_is_layered_by_longest_path() -> None:
    drawn = layout(example_spec("03-parallel"), None)
    layers = {n.name: n.layer for n in drawn.nodes}
    assert layers == {
        "create_order": 0,
        "reserve_inventory": 1,
        "check_fraud": 1,
        "quote_shipping": 1,
        "charge_payment": 2,
        "book_shipment": 3,
    }
    assert forward(drawn.edges) == {
        ("create_order", "reserve_inventory"),
        ("create_order", "check_fraud"),
        ("create_order", "quote_shipping"),
        ("reserve_inventory", "charge_payment"),
        ("check_fraud", "charge_payment"),
        ("charge_payment", "book_shipment"),
        ("quote_shipping", "book_shipment"),
    }
    at = {n.name: n for n in drawn.nodes}
    for source, target in forward(drawn.edges):  # every arrow points right
        assert at[source].x + NODE_WIDTH < at[target].x
    boxes = [(n.x, n.y) for n in drawn.nodes]
    assert len(set(boxes)) == len(boxes)  # no two steps on one spot
    assert all(
        n.x + NODE_WIDTH <= drawn.width and n.y + NODE_HEIGHT <= drawn.height for n in drawn.nodes
    )


def test_a_long_edge_passes_a_free_slot_not_a_step() -> None:
    drawn = layout(example_spec("03-parallel"), None)
    (long,) = [e for e in drawn.edges if e.via]
    assert (long.source, long.target) == ("quote_shipping", "book_shipment")
    (slot,) = long.via
    left, right, centre = slot
    column = [n for n in drawn.nodes if n.layer == 2]
    assert [n.name for n in column] == ["charge_payment"]
    for node in column:  # the slot is in that column, beside its step, not across it
        assert (left, right) == (node.x, node.x + NODE_WIDTH)
        assert not node.y <= centre <= node.y + NODE_HEIGHT
    assert centre <= drawn.height


def compensated_status() -> SagaStatus:
    """Example 02's end: the charge failed, the reservation then the order were undone."""
    done = {"attempt": 1, "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z"}
    return SagaStatus.model_validate(
        {
            "phase": "Compensated",
            "steps": [
                {
                    "name": "create_order",
                    "phase": "Compensated",
                    "compensation": {**done, "startedAt": "2026-01-01T00:00:05Z"},
                },
                {
                    "name": "reserve_inventory",
                    "phase": "Compensated",
                    "compensation": {**done, "startedAt": "2026-01-01T00:00:04Z"},
                },
                {
                    "name": "charge_payment",
                    "phase": "Failed",
                    "error": {"message": "card declined", "type": "PaymentDeclined"},
                },
            ],
        }
    )


def test_the_compensation_path_runs_against_the_arrows_in_undo_order() -> None:
    drawn = layout(example_spec("02-compensation"), compensated_status())
    assert compensation(drawn.edges) == {
        ("charge_payment", "reserve_inventory"),
        ("reserve_inventory", "create_order"),
    }
    nodes = {n.name: n for n in drawn.nodes}
    assert nodes["reserve_inventory"].undo_order == 1
    assert nodes["create_order"].undo_order == 2
    assert nodes["charge_payment"].undo_order is None
    assert {n.name: n.phase for n in drawn.nodes} == {
        "create_order": "Compensated",
        "reserve_inventory": "Compensated",
        "charge_payment": "Failed",
    }


def test_a_completed_saga_has_no_compensation_path() -> None:
    status = SagaStatus.model_validate(
        {
            "phase": "Completed",
            "steps": [
                {"name": n, "phase": "Succeeded"}
                for n in ("create_order", "reserve_inventory", "charge_payment")
            ],
        }
    )
    assert compensation(layout(example_spec("02-compensation"), status).edges) == set()


def test_a_cycle_is_drawn_not_looped_forever() -> None:
    layers = ui_layout.layers({"a": ["b"], "b": ["a"]}, ["a", "b"])
    assert set(layers) == {"a", "b"}


def saga_object(spec: Any, status: Any = None, labels: Any = None) -> SagaObject:
    return SagaObject(
        {
            "metadata": {
                "namespace": "ns",
                "name": "s",
                "uid": "u",
                "labels": labels or {},
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": spec,
            "status": status,
        }
    )


def test_a_row_of_a_new_saga_counts_its_steps() -> None:
    obj = saga_object({"steps": [{"name": "a", "action": "x"}, {"name": "b", "action": "y"}]})
    row = views.row(obj)
    assert (row["phase"], row["progress"], row["reason"]) == ("Pending", "0/2", "")


def test_a_saga_that_does_not_parse_still_gets_a_page() -> None:
    detail = views.detail(saga_object({"steps": [{"name": "BAD NAME"}]}))
    assert detail["graph"] is None and "does not parse" in detail["problem"]
    assert "managedFields" not in detail["yaml"] and "BAD NAME" in detail["yaml"]


def test_large_values_start_collapsed_and_small_ones_open() -> None:
    assert views.value("output", {"k": "v"})["collapsed"] is False
    big = views.value("output", {"k": "v" * (views.COLLAPSE_CHARS + 1)})
    assert big["collapsed"] is True and big["text"].count("v") > views.COLLAPSE_CHARS
    assert views.value("error", None)["empty"] is True
