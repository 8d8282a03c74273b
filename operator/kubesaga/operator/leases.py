"""The shard and member Leases (``coordination.k8s.io/v1``) of one installation: read and write.

Every write is conditional: a Lease is created (409 if someone else just did) or replaced with
the resourceVersion it was read at (409 if it changed since), so two replicas can never both
believe they took the same Lease in one round. What to take is ``shards.plan``'s answer; this
module only talks to the apiserver.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.operator.shards import (
    MEMBER_LEASE,
    SHARD_LEASE,
    LeaseState,
    member_lease_name,
    shard_lease_name,
)

LABEL_SET = "kubesaga.io/lease-set"
LABEL_KIND = "kubesaga.io/lease-kind"
LABEL_SHARD = "kubesaga.io/shard"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesaga"}


@dataclass(frozen=True)
class Lease:
    """One Lease as read: its state for ``plan`` and the version a conditional write names."""

    name: str
    state: LeaseState
    resource_version: str | None


@dataclass(frozen=True)
class Leases:
    shards: dict[int, Lease]
    members: dict[str, Lease]
    """By holder identity."""


def _micro_time(when: float) -> str:
    """RFC 3339 with exactly six fractional digits, as a Lease's MicroTime fields want."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseStore:
    """The Leases named ``<prefix>-shard-<n>`` and ``<prefix>-member-<hash>`` in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str, prefix: str) -> None:
        # Bodies go as dicts (the typed V1Lease would send renewTime without the six fractional
        # digits a MicroTime needs whenever the microseconds are zero).
        self.coordination: Any = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.prefix = prefix

    async def read(self) -> Leases:
        listed = await self.coordination.list_namespaced_lease(
            self.namespace, label_selector=f"{LABEL_SET}={self.prefix}"
        )
        shards: dict[int, Lease] = {}
        members: dict[str, Lease] = {}
        for item in listed.items:
            labels = item.metadata.labels or {}
            spec = item.spec
            renewed = spec.renew_time.timestamp() if spec and spec.renew_time else None
            lease = Lease(
                name=item.metadata.name,
                state=LeaseState(
                    holder=(spec.holder_identity if spec else None) or None,
                    renewed=renewed,
                    duration=float((spec.lease_duration_seconds if spec else 0) or 0),
                ),
                resource_version=item.metadata.resource_version,
            )
            if labels.get(LABEL_KIND) == SHARD_LEASE and str(labels.get(LABEL_SHARD, "")).isdigit():
                shards[int(labels[LABEL_SHARD])] = lease
            elif labels.get(LABEL_KIND) == MEMBER_LEASE and lease.state.holder:
                members[lease.state.holder] = lease
        return Leases(shards, members)

    async def hold_shard(
        self, shard: int, known: Lease | None, me: str, duration: int, now: float
    ) -> bool:
        """Take or renew a shard's Lease; False if someone else wrote it since it was read."""
        name = shard_lease_name(self.prefix, shard)
        labels = {LABEL_KIND: SHARD_LEASE, LABEL_SHARD: str(shard)}
        return await self._write(name, labels, known, me, duration, now)

    async def hold_member(self, known: Lease | None, me: str, duration: int, now: float) -> bool:
        name = member_lease_name(self.prefix, me)
        return await self._write(name, {LABEL_KIND: MEMBER_LEASE}, known, me, duration, now)

    async def release_shard(self, shard: int, known: Lease) -> bool:
        """Hand a shard's Lease back (no holder), so another replica may take it at once."""
        body = self._body(known.name, {LABEL_KIND: SHARD_LEASE, LABEL_SHARD: str(shard)}, known)
        body["spec"] = {"leaseDurationSeconds": 1}
        return await self._replace(known.name, body)

    async def drop_member(self, me: str) -> None:
        try:
            await self.coordination.delete_namespaced_lease(
                member_lease_name(self.prefix, me), self.namespace
            )
        except ApiException as error:
            if error.status != 404:
                raise

    async def _write(
        self,
        name: str,
        labels: dict[str, str],
        known: Lease | None,
        me: str,
        duration: int,
        now: float,
    ) -> bool:
        body = self._body(name, labels, known)
        spec: dict[str, Any] = {
            "holderIdentity": me,
            "leaseDurationSeconds": duration,
            "renewTime": _micro_time(now),
        }
        if known is None or known.state.holder != me:
            spec["acquireTime"] = _micro_time(now)
        body["spec"] = spec
        if known is None or known.resource_version is None:
            try:
                await self.coordination.create_namespaced_lease(self.namespace, body)
            except ApiException as error:
                if error.status == 409:  # another replica created it first
                    return False
                raise
            return True
        return await self._replace(name, body)

    async def _replace(self, name: str, body: dict[str, Any]) -> bool:
        try:
            await self.coordination.replace_namespaced_lease(name, self.namespace, body)
        except ApiException as error:
            if error.status in (404, 409):  # changed or deleted since we read it
                return False
            raise
        return True

    def _body(self, name: str, labels: dict[str, str], known: Lease | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {**MANAGED_BY, LABEL_SET: self.prefix, **labels},
        }
        if known is not None and known.resource_version is not None:
            metadata["resourceVersion"] = known.resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata}
