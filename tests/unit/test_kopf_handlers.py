"""The kopf wiring stays the cheap kind: watch events only, and no per-event diff-base."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from kubesaga.operator import Orchestrator
from kubesaga.operator.handlers import NoDiffBase, build_registry
from tests.unit.orchestrator_kit import FakeClock, MemoryStore, RecordingBroker

pytestmark = pytest.mark.unit


def _registry() -> kopf.OperatorRegistry:
    orchestrator = Orchestrator(MemoryStore(), RecordingBroker(), clock=FakeClock())
    return build_registry(orchestrator)


def test_sagas_have_watch_event_handlers_only() -> None:
    """NoDiffBase is safe only while nothing reads kopf's diffs: no change-detection handlers
    (on.create/update/resume/delete) and no daemons or timers."""
    registry = _registry()
    # kopf has no public listing of handlers; its per-kind registries are the only way to see.
    assert len(registry._watching.get_all_handlers()) == 1
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []


def test_startup_turns_kopf_diff_base_off() -> None:
    registry = _registry()
    settings = kopf.OperatorSettings()
    configure = [h for h in registry._activities.get_all_handlers() if "configure" in h.id]
    assert len(configure) == 1
    fn: Any = configure[0].fn
    fn(settings=settings)
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)


def test_no_diff_base_copies_nothing() -> None:
    body = kopf.Body(
        {
            "metadata": {
                "name": "s",
                "annotations": {"kopf.zalando.org/last-handled-configuration": "{}"},
            },
            "spec": {"steps": [{"name": "a", "action": "x"}]},
            "status": {"phase": "Running"},
        }
    )
    storage = NoDiffBase()
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
