"""The newest copy of every Saga this process has seen, and its parsed view by resourceVersion.

Parsing is most of the operator's CPU per transition, so the same copy is never parsed twice: a
copy we wrote ourselves is cached with the status we wrote, and a spec is re-parsed only when
its uid or generation changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from pydantic import ValidationError

from kubesaga.engine import InvalidSpec, SagaView
from kubesaga.models import SagaPhase, SagaRef, SagaStatus, parse_spec, parse_status
from kubesaga.store import SagaObject

Key = tuple[str, str]
FINAL_PHASES = frozenset(phase.value for phase in SagaPhase if phase.is_final)


class SagaCache:
    def __init__(self) -> None:
        self._copies: dict[Key, SagaObject] = {}
        self._views: dict[Key, tuple[str, SagaView | InvalidSpec]] = {}

    def get(self, key: Key) -> SagaObject | None:
        return self._copies.get(key)

    def offer(self, obj: SagaObject) -> bool:
        """Keep ``obj`` if it is newer than the copy we have; False for our own write coming
        back through the watch, or an older copy."""
        known = self._copies.get(obj.key)
        if known is not None and not obj.newer_than(known):
            return False
        self._copies[obj.key] = obj
        return True

    def reread(self, obj: SagaObject) -> None:
        """A copy we just fetched: keep it unless the watch already delivered a newer one."""
        known = self._copies.get(obj.key)
        if known is None or obj.newer_than(known) or known.resource_version == obj.resource_version:
            self._copies[obj.key] = obj

    def wrote(self, before: SagaObject, written: SagaObject, status: SagaStatus) -> None:
        """Our status write succeeded: remember the new copy already parsed."""
        view = self.view(before)
        if isinstance(view, SagaView):
            self._views[written.key] = (written.resource_version, replace(view, status=status))
        known = self._copies.get(written.key)
        if known is None or written.newer_than(known):
            self._copies[written.key] = written

    def forget(self, key: Key) -> None:
        self._copies.pop(key, None)
        self._views.pop(key, None)

    def keys(self, uid_matches: Callable[[str], bool]) -> list[Key]:
        """The sagas whose uid matches (the sagas of some shards)."""
        return [key for key, obj in self._copies.items() if uid_matches(obj.uid)]

    def phases(self) -> list[str]:
        """Phase of every known saga, for the ``kubesaga_sagas`` gauge."""
        return [str((obj.status or {}).get("phase") or "Pending") for obj in self._copies.values()]

    def past_deadline(self, now: datetime) -> int:
        """Sagas not final although their deadline passed, for ``kubesaga_sagas_past_deadline``.

        Passing the deadline starts compensation; a saga that stays unfinished long after it is
        stuck (a compensation that keeps failing or goes unanswered): worth an alert.
        """
        count = 0
        for obj in self._copies.values():
            status = obj.status or {}
            deadline = status.get("deadlineAt")
            if not deadline or str(status.get("phase")) in FINAL_PHASES:
                continue
            with contextlib.suppress(ValueError):
                if datetime.fromisoformat(str(deadline)) < now:
                    count += 1
        return count

    def view(self, obj: SagaObject) -> SagaView | InvalidSpec:
        """The parsed saga (or why its spec is invalid) for this exact copy."""
        cached = self._views.get(obj.key)
        if cached is not None and cached[0] == obj.resource_version:
            return cached[1]
        view = self._parse(obj, cached[1] if cached is not None else None)
        self._views[obj.key] = (obj.resource_version, view)
        return view

    @staticmethod
    def _parse(obj: SagaObject, previous: SagaView | InvalidSpec | None) -> SagaView | InvalidSpec:
        ref = SagaRef(namespace=obj.namespace, name=obj.name, uid=obj.uid)
        try:
            status = parse_status(obj.status)
        except ValidationError:
            status = None  # an unreadable status (hand-edited?) is rebuilt from the spec
        if (
            isinstance(previous, SagaView)
            and previous.ref.uid == obj.uid
            and previous.generation == obj.generation
        ):
            spec = previous.spec
        else:
            try:
                spec = parse_spec(obj.spec)
            except ValidationError as error:
                problem = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
                )
                return InvalidSpec(ref, obj.generation, problem, status)
        return SagaView(ref=ref, generation=obj.generation, spec=spec, status=status)
