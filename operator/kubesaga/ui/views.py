"""What the pages show of a Saga, as JSON-ready dicts: a list row, and the detail page.

Pure functions of the raw object, so the browser receives only what it draws (never the whole
object with its managedFields), and the shapes are tested without a browser. A spec or status
that does not parse (an older CRD, a hand-edited object) still gets a row: a UI must show the
broken saga, not hide it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from kubesaga.models import SagaSpec, SagaStatus, parse_spec, parse_status
from kubesaga.store import SagaObject
from kubesaga.ui.layout import layout

COLLAPSE_CHARS = 240
"""Values longer than this (as JSON) start collapsed on the detail page."""


def row(obj: SagaObject) -> dict[str, Any]:
    """One line of the saga list."""
    status = obj.status or {}
    steps = (obj.spec or {}).get("steps") or []
    return {
        "namespace": obj.namespace,
        "name": obj.name,
        "uid": obj.uid,
        "labels": dict(obj.metadata.get("labels") or {}),
        "created": obj.metadata.get("creationTimestamp"),
        "phase": status.get("phase") or "Pending",
        "progress": status.get("progress") or f"0/{len(steps)}",
        "current": status.get("currentStep") or "",
        "reason": status.get("reason") or "",
        "message": status.get("message") or "",
        "compensate": bool((obj.spec or {}).get("compensate")),
    }


def detail(obj: SagaObject) -> dict[str, Any]:
    """Everything the detail page draws: the row, the graph, the steps and the YAML."""
    out = row(obj)
    out["yaml"] = to_yaml(obj.raw)
    try:
        spec = parse_spec(obj.spec)
        status = parse_status(obj.status)
    except ValidationError as error:
        out["problem"] = f"the saga does not parse: {error.error_count()} error(s)"
        out["graph"], out["steps"] = None, []
        return out
    out["graph"] = dataclasses.asdict(layout(spec, status))
    out["steps"] = steps(spec, status)
    out["times"] = _times(status)
    return out


def steps(spec: SagaSpec, status: SagaStatus | None) -> list[dict[str, Any]]:
    """Each step: its spec, what happened to it (attempts, times, output, error)."""
    states = {s.name: s for s in status.steps} if status else {}
    out = []
    for step in spec.steps:
        state = states.get(step.name)
        wire = state.to_wire() if state is not None else {}
        out.append(
            {
                "name": step.name,
                "action": step.action or "none: an approval step (kubesaga approve|reject)",
                "compensationAction": step.compensation,
                "dependsOn": spec.dependencies()[step.name],
                "phase": wire.get("phase", "Pending"),
                "attempt": wire.get("attempt", 0),
                "maxAttempts": step.retry.max_attempts,
                "startedAt": wire.get("startedAt"),
                "dispatchedAt": wire.get("dispatchedAt"),
                "finishedAt": wire.get("finishedAt"),
                "nextAttemptAt": wire.get("nextAttemptAt"),
                "attemptDeadline": wire.get("attemptDeadline"),
                "compensation": wire.get("compensation"),
                "values": [
                    value("input", step.input),
                    value("output", wire.get("output")),
                    value("error", wire.get("error")),
                ],
            }
        )
    return out


def value(label: str, data: Any) -> dict[str, Any]:
    """A value shown as JSON text; long ones start collapsed."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    return {
        "label": label,
        "text": text,
        "empty": data in (None, {}),
        "collapsed": len(text) > COLLAPSE_CHARS,
    }


def to_yaml(raw: Mapping[str, Any]) -> str:
    """The object as ``kubectl get -o yaml`` shows it, without managedFields (noise)."""
    metadata = {k: v for k, v in (raw.get("metadata") or {}).items() if k != "managedFields"}
    return yaml.safe_dump({**raw, "metadata": metadata}, sort_keys=False, allow_unicode=True)


def event(raw: Any) -> dict[str, Any]:
    """A Kubernetes Event (a V1 or events/v1 object as a dict) for the Events table."""
    return {
        "type": raw.get("type") or "",
        "reason": raw.get("reason") or "",
        "message": raw.get("message") or raw.get("note") or "",
        "count": raw.get("count") or 1,
        "order": _revision(raw),
        "time": raw.get("lastTimestamp")
        or raw.get("eventTime")
        or raw.get("firstTimestamp")
        or (raw.get("metadata") or {}).get("creationTimestamp"),
    }


def _times(status: SagaStatus | None) -> dict[str, Any]:
    if status is None:
        return {}
    wire = status.to_wire()
    return {
        k: wire.get(k) for k in ("startedAt", "finishedAt", "deadlineAt", "compensationRequestedAt")
    }


def _revision(raw: Mapping[str, Any]) -> int:
    """The event's etcd revision: orders events recorded within the same second."""
    version = str((raw.get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isdigit() else 0
