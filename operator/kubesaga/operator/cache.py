"""What the operator remembers of every Saga: a compact record each, parsed views for the hot few.

Memory, not CPU, is what grows with the number of sagas in flight, so a saga's record keeps only
what deciding needs: its identity and resourceVersion, and its spec and status as compact JSON
(no managedFields, annotations or other metadata; about 1.5 KB for three steps, where the raw
watch copy plus its pydantic view took ~34 KB). A finished saga keeps its identity and phase
only; if it is looked at again (TTL, a late result) the orchestrator reads it from the API.

Parsing is most of the operator's CPU per transition, so parsed views of the most recently used
sagas (``VIEWS``) are kept: a saga moving step to step is never parsed twice, since a copy we
wrote ourselves is cached with the status we wrote, and a spec is re-parsed only when its uid
or generation changed. A saga that waited out of that window is parsed from its JSON again.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from kubesaga.engine import InvalidSpec, SagaView
from kubesaga.models import SagaPhase, SagaRef, SagaSpec, SagaStatus
from kubesaga.store import SagaObject

Key = tuple[str, str]
View = SagaView | InvalidSpec
FINAL_PHASES = frozenset(phase.value for phase in SagaPhase if phase.is_final)
VIEWS = 1024
"""Parsed views kept (the most recently used sagas): ~22 KB each for three steps."""


def phase_of(obj: SagaObject) -> str:
    """The saga's phase as its status says, ``Pending`` before the operator's first write."""
    status = obj.status if isinstance(obj.status, dict) else {}
    return str(status.get("phase") or "Pending")


class Record:
    """One saga's newest copy, compactly. ``spec``/``status`` are None once the saga is final
    (then ``complete`` is False: the next look reads the object from the API)."""

    __slots__ = (
        "deadline",
        "deletion",
        "generation",
        "name",
        "namespace",
        "phase",
        "rv",
        "spec",
        "status",
        "uid",
    )

    def __init__(self, obj: SagaObject, spec: bytes | None = None) -> None:
        self.namespace = sys.intern(obj.namespace)
        self.name = obj.name
        self.uid = obj.uid
        self.rv = obj.resource_version
        self.generation = obj.generation
        self.deletion: str | None = obj.metadata.get("deletionTimestamp")
        raw_status = obj.status if isinstance(obj.status, dict) else {}
        self.phase: str = sys.intern(phase_of(obj))
        final = self.phase in FINAL_PHASES
        deadline = raw_status.get("deadlineAt")
        self.deadline: str | None = None if final or not deadline else str(deadline)
        self.spec: bytes | None = None if final else (spec or to_json(obj.spec or {}))
        self.status: bytes | None = None if final or not obj.status else to_json(obj.status)

    @property
    def complete(self) -> bool:
        """Whether the spec is here to decide from (not a finished saga's bare record)."""
        return self.spec is not None

    def obj(self) -> SagaObject:
        """The copy's identity as a SagaObject (no spec or status: see ``SagaCache.view``)."""
        metadata: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "resourceVersion": self.rv,
            "generation": self.generation,
        }
        if self.deletion:
            metadata["deletionTimestamp"] = self.deletion
        return SagaObject({"metadata": metadata})

    def same_spec(self, obj: SagaObject) -> bool:
        return self.uid == obj.uid and self.generation == obj.generation


def _newer(rv: str, than: str) -> bool:
    """Whether resourceVersion ``rv`` is newer; they are etcd revisions in practice."""
    if rv.isdigit() and than.isdigit():
        return int(rv) > int(than)
    return rv != than


class SagaCache:
    def __init__(self, views: int = VIEWS) -> None:
        self._records: dict[Key, Record] = {}
        self._views: dict[Key, tuple[str, View]] = {}
        self._capacity = views

    def get(self, key: Key) -> SagaObject | None:
        """The newest copy to decide from, or None: unknown, or finished (read it again)."""
        record = self._records.get(key)
        return record.obj() if record is not None and record.complete else None

    def record(self, key: Key) -> Record | None:
        return self._records.get(key)

    def offer(self, obj: SagaObject) -> bool:
        """Keep ``obj`` if it is newer than the copy we have; False for our own write coming
        back through the watch, or an older copy."""
        known = self._records.get(obj.key)
        if known is not None and not _newer(obj.resource_version, known.rv):
            return False
        self._keep(obj, known)
        return True

    def reread(self, obj: SagaObject) -> None:
        """A copy we just fetched: keep it unless the watch already delivered a newer one."""
        known = self._records.get(obj.key)
        if (
            known is None
            or _newer(obj.resource_version, known.rv)
            or known.rv == obj.resource_version
        ):
            self._keep(obj, known)

    def _keep(self, obj: SagaObject, known: Record | None) -> None:
        spec = known.spec if known is not None and known.same_spec(obj) else None
        self._records[obj.key] = Record(obj, spec)

    def wrote(self, before: SagaObject, written: SagaObject, status: SagaStatus) -> None:
        """Our status write succeeded: remember the new copy, and its view already parsed."""
        known = self._records.get(written.key)
        if known is None or _newer(written.resource_version, known.rv):
            self._keep(written, known)
        view = self._cached(before)
        if view is None:
            record = self._records.get(before.key)
            if record is not None and record.rv == before.resource_version and record.complete:
                view = self.view(before)
        if isinstance(view, SagaView):
            self._remember(written.key, written.resource_version, replace(view, status=status))

    def forget(self, key: Key) -> None:
        self._records.pop(key, None)
        self._views.pop(key, None)

    def keys(self, matches: Callable[[Key], bool]) -> list[Key]:
        """The sagas whose key matches (the sagas of some shards)."""
        return [key for key in self._records if matches(key)]

    def phases(self) -> list[str]:
        """Phase of every known saga, for the ``kubesaga_sagas`` gauge."""
        return [record.phase for record in self._records.values()]

    def past_deadline(self, now: datetime) -> int:
        """Sagas not final although their deadline passed, for ``kubesaga_sagas_past_deadline``.

        Passing the deadline starts compensation; a saga that stays unfinished long after it is
        stuck (a compensation that keeps failing or goes unanswered): worth an alert.
        """
        count = 0
        for record in self._records.values():
            if record.deadline is None:
                continue
            with contextlib.suppress(ValueError):
                if datetime.fromisoformat(record.deadline) < now:
                    count += 1
        return count

    def view(self, obj: SagaObject) -> View:
        """The parsed saga (or why its spec is invalid) for this exact copy.

        ``obj`` is a copy from ``get`` (identity only: parsed from the record) or one read from
        the API (parsed from its own spec and status).
        """
        cached = self._cached(obj)
        if cached is not None:
            return cached
        previous = self._views.get(obj.key)
        record = self._records.get(obj.key)
        if record is not None and record.rv == obj.resource_version and record.complete:
            view = _parse_json(obj, record, previous[1] if previous else None)
        elif "spec" in obj.raw or "status" in obj.raw:
            view = _parse(obj, previous[1] if previous else None)
        else:
            raise LookupError(f"saga {obj.namespace}/{obj.name}: no copy to parse")
        self._remember(obj.key, obj.resource_version, view)
        return view

    def _cached(self, obj: SagaObject) -> View | None:
        cached = self._views.get(obj.key)
        if cached is None or cached[0] != obj.resource_version:
            return None
        # Most recently used last: re-inserting moves it to the end of the dict's order.
        del self._views[obj.key]
        self._views[obj.key] = cached
        return cached[1]

    def _remember(self, key: Key, rv: str, view: View) -> None:
        self._views.pop(key, None)
        self._views[key] = (rv, view)
        while len(self._views) > self._capacity:
            del self._views[next(iter(self._views))]


def _reusable_spec(obj: SagaObject, previous: View | None) -> SagaSpec | None:
    if (
        isinstance(previous, SagaView)
        and previous.ref.uid == obj.uid
        and previous.generation == obj.generation
    ):
        return previous.spec
    return None


def _problem(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())


def _parse_json(obj: SagaObject, record: Record, previous: View | None) -> View:
    ref = SagaRef(namespace=obj.namespace, name=obj.name, uid=obj.uid)
    try:
        status = SagaStatus.model_validate_json(record.status) if record.status else None
    except ValidationError:
        status = None  # an unreadable status (hand-edited?) is rebuilt from the spec
    spec = _reusable_spec(obj, previous)
    if spec is None:
        try:
            spec = SagaSpec.model_validate_json(record.spec or b"{}")
        except ValidationError as error:
            return InvalidSpec(ref, obj.generation, _problem(error), status)
    return SagaView(ref=ref, generation=obj.generation, spec=spec, status=status)


def _parse(obj: SagaObject, previous: View | None) -> View:
    ref = SagaRef(namespace=obj.namespace, name=obj.name, uid=obj.uid)
    try:
        status = SagaStatus.model_validate(obj.status) if obj.status else None
    except ValidationError:
        status = None  # an unreadable status (hand-edited?) is rebuilt from the spec
    spec = _reusable_spec(obj, previous)
    if spec is None:
        try:
            spec = SagaSpec.model_validate(obj.spec or {})
        except ValidationError as error:
            return InvalidSpec(ref, obj.generation, _problem(error), status)
    return SagaView(ref=ref, generation=obj.generation, spec=spec, status=status)
