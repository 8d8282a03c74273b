"""What both clients send and decide, written once: only the transport differs.

Building and validating a spec, the object to create, the selectors, and whether an existing saga
of the same name is the one being started (idempotent ``start``) or a different one in the way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from kubesaga.client.errors import (
    SagaAlreadyExists,
    SagaInvalid,
    SagaNotFound,
    SagaNotRedrivable,
)
from kubesaga.client.saga import Saga
from kubesaga.engine.redrive import refusal as redrive_refusal
from kubesaga.models import (
    API_GROUP,
    API_VERSION,
    JsonObject,
    SagaPhase,
    SagaSpec,
    StepSpec,
    limits,
)
from kubesaga.models.shard_key import saga_manifest

APIVERSION = f"{API_GROUP}/{API_VERSION}"
FINAL_PHASES = tuple(phase for phase in SagaPhase if phase.is_final)
ACTIVE_SELECTOR = ",".join(f"status.phase!={phase}" for phase in FINAL_PHASES)
"""Sagas not in a final phase, filtered by the apiserver (a CRD selectableField: 1.31+)."""

IGNORED_ON_START = {"compensate", "suspend", "redrive"}
"""Spec fields that may differ between a running saga and a repeated ``start`` of it: a saga
someone asked to compensate, suspended or redrove is still the saga that was started."""


def build_spec(
    steps: Iterable[StepSpec | Mapping[str, Any]],
    context: JsonObject | None,
    *,
    deadline_seconds: float | None,
    ttl_seconds_after_finished: int | None,
    namespace: str,
    name: str,
) -> SagaSpec:
    """The spec ``start`` creates, validated here first so most mistakes fail before a request.

    Rules only the apiserver checks (CEL: unknown or self dependencies) still come back from
    the create call, as ``SagaInvalid`` with the apiserver's message.
    """
    parsed: list[StepSpec] = []
    for index, step in enumerate(steps):
        try:
            parsed.append(step if isinstance(step, StepSpec) else StepSpec.model_validate(step))
        except ValidationError as error:
            raise invalid_spec(error, namespace, name, at=f"steps.{index}") from error
    try:
        return SagaSpec(
            steps=parsed,
            context=context or {},
            deadline_seconds=deadline_seconds,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
        )
    except ValidationError as error:
        raise invalid_spec(error, namespace, name) from error


def invalid_spec(error: ValidationError, namespace: str, name: str, at: str = "") -> SagaInvalid:
    """A pydantic validation error as ``SagaInvalid``: one line per problem, with its field."""
    prefix = [at] if at else []
    causes = [
        (".".join(prefix + [str(part) for part in e["loc"]]), _plain(e["msg"]))
        for e in error.errors()
    ]
    lines = "; ".join(f"{where}: {msg}" if where else msg for where, msg in causes)
    message = f"saga {namespace}/{name} is invalid: {lines}"
    return SagaInvalid(message, namespace=namespace, name=name, causes=causes)


def _plain(message: str) -> str:
    """A validator's message without pydantic's "Value error, " prefix."""
    return message.removeprefix("Value error, ")


def saga_body(
    namespace: str, name: str, spec: SagaSpec, labels: Mapping[str, str] | None
) -> dict[str, Any]:
    """The Saga object to create, with its shard-key label (the user's labels kept)."""
    return saga_manifest(namespace, name, spec.to_wire(), labels)


def name_selector(name: str) -> str:
    """The field selector that narrows a list or watch to one saga."""
    return f"metadata.name={name}"


def adopt_existing(existing: Saga, spec: SagaSpec) -> Saga:
    """``existing`` if it is the saga ``spec`` describes (a repeated start); else raise.

    Same spec, ignoring ``compensate``: return it, so a retried request (a web handler's retry,
    a crashed script run again) does not fail or start a second saga. A different spec, or a
    saga being deleted, raises ``SagaAlreadyExists`` naming what differs.
    """
    where = f"{existing.namespace}/{existing.name}"
    if existing.deleting:
        raise SagaAlreadyExists(
            f"saga {where} is being deleted; start it again once it is gone, or use another name",
            existing=existing,
        )
    differing = spec_differences(existing.spec, spec)
    if differing:
        raise SagaAlreadyExists(
            f"saga {where} already exists with a different spec (differs in: "
            f"{', '.join(differing)}); use another name, or delete the existing saga first",
            existing=existing,
        )
    return existing


def spec_differences(existing: SagaSpec, wanted: SagaSpec) -> list[str]:
    """The wire names of the spec fields that differ (``compensate`` does not count)."""
    old = existing.model_dump(mode="json", by_alias=True)
    new = wanted.model_dump(mode="json", by_alias=True)
    ignored = {SagaSpec.model_fields[f].alias or f for f in IGNORED_ON_START}
    keys = (old.keys() | new.keys()) - ignored
    return sorted(key for key in keys if old.get(key) != new.get(key))


def compensate_patch(uid: str | None) -> dict[str, Any]:
    """The merge patch that requests compensation; with ``uid``, only of that incarnation.

    The apiserver refuses (409, "Precondition failed: UID") a patch whose ``metadata.uid``
    differs from the object's: a handle never compensates a newer saga of the same name.
    """
    patch: dict[str, Any] = {"spec": {"compensate": True}}
    if uid:
        patch["metadata"] = {"uid": uid}
    return patch


def suspend_patch(suspend: bool, uid: str | None) -> dict[str, Any]:
    """The merge patch that suspends (or resumes) the saga; with ``uid``, only that one."""
    return _for_uid({"spec": {"suspend": suspend}}, uid)


def redrive_patch(saga: Saga) -> dict[str, Any]:
    """The merge patch that asks for one more redrive of ``saga``, or ``SagaNotRedrivable``.

    The rule is the engine's own (``kubesaga.engine.redrive.refusal``), so what the client
    refuses is exactly what the operator would refuse, and a refusal changes nothing.
    """
    where = f"saga {saga.namespace}/{saga.name}"
    status = saga.status
    why = redrive_refusal(status)
    if why is None and status is not None and saga.spec.redrive > (status.observed_redrive or 0):
        why = f"redrive {saga.spec.redrive} was requested and the operator has not acted on it yet"
    if why is None and saga.spec.redrive >= limits.MAX_REDRIVES:
        why = f"it was redriven {limits.MAX_REDRIVES} times, the most a saga keeps history for"
    if why is not None:
        raise SagaNotRedrivable(f"{where} cannot be redriven: {why}", saga=saga)
    return _for_uid({"spec": {"redrive": saga.spec.redrive + 1}}, saga.uid)


def _for_uid(patch: dict[str, Any], uid: str | None) -> dict[str, Any]:
    if uid:
        patch["metadata"] = {"uid": uid}
    return patch


def same_incarnation(saga: Saga, uid: str | None) -> Saga:
    """``saga`` if it is the incarnation ``uid`` names (or no uid was given); else raise.

    A handle follows one saga: one deleted and created again under the same name is another.
    """
    if uid and saga.uid != uid:
        raise SagaNotFound(
            f"saga {saga.namespace}/{saga.name} was deleted and created again (the handle "
            f"refers to uid {uid}, the saga now there is {saga.uid}); get a new handle",
            namespace=saga.namespace,
            name=saga.name,
        )
    return saga
