"""The demo's pure parts: finding and reading the examples, choosing them, reading testenv."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubesaga.demo import DemoError, find_repo, load_examples
from kubesaga.demo.examples import select_examples
from kubesaga.demo.platform import parse_exports
from kubesaga.models import SagaPhase

REPO = Path(__file__).resolve().parents[2]


def test_the_examples_and_their_expected_phases_come_from_the_manifests() -> None:
    examples = load_examples(find_repo() / "examples")
    assert [(e.key, e.expected) for e in examples] == [
        ("01-order-saga", SagaPhase.COMPLETED),
        ("02-compensation", SagaPhase.COMPENSATED),
        ("03-parallel", SagaPhase.COMPLETED),
        ("04-retry-timeout", SagaPhase.COMPLETED),
        ("05-approval", SagaPhase.COMPENSATED),
        ("06-suspend-redrive", SagaPhase.FAILED),
    ]
    assert [e.name for e in examples] == [
        "order-saga",
        "declined-order",
        "parallel-order",
        "flaky-order",
        "refund-7",
        "refund-order",
    ]


def test_examples_are_chosen_by_folder_or_number() -> None:
    examples = load_examples(REPO / "examples")
    assert [e.key for e in select_examples(examples, ("02", "04-retry-timeout"))] == [
        "02-compensation",
        "04-retry-timeout",
    ]
    assert select_examples(examples, ()) == examples
    with pytest.raises(DemoError, match="no example matches 9"):
        select_examples(examples, ("9",))


def test_a_manifest_with_an_invalid_spec_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "01-bad"
    bad.mkdir()
    (bad / "handlers.py").write_text("")
    (bad / "saga.yaml").write_text(
        "apiVersion: kubesaga.io/v1alpha1\nkind: Saga\nmetadata: {name: bad}\n"
        "spec: {steps: [{name: Not_Valid, action: a}]}\n"
    )
    with pytest.raises(DemoError, match="invalid spec"):
        load_examples(tmp_path)


def test_an_expected_phase_must_be_a_phase(tmp_path: Path) -> None:
    folder = tmp_path / "01-x"
    folder.mkdir()
    (folder / "handlers.py").write_text("")
    (folder / "saga.yaml").write_text(
        "apiVersion: kubesaga.io/v1alpha1\nkind: Saga\nmetadata:\n  name: x\n  annotations:\n"
        "    examples.kubesaga.io/expected-phase: Done\nspec: {steps: []}\n"
    )
    with pytest.raises(DemoError, match="must be a final phase"):
        load_examples(tmp_path)


def test_testenv_exports_are_parsed_with_shell_quoting() -> None:
    text = "export KUBECONFIG=/tmp/a\\ b/kubeconfig\nexport KUBESAGA_AMQP_URL=amqp://u:p@h:1/v\n"
    assert parse_exports(text) == {
        "KUBECONFIG": "/tmp/a b/kubeconfig",
        "KUBESAGA_AMQP_URL": "amqp://u:p@h:1/v",
    }
