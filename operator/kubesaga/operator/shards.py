"""Which shards this replica should hold: the deterministic part of sharding, without I/O.

Operator replicas share the sagas by shard. A saga's shard is its shard key (a stable hash of its
namespace and name, ``kubesaga.models.shard_key``, carried as a label) modulo the number of
shards; each replica watches only its shards' keys (``selector``), and each shard has a
``coordination.k8s.io/v1`` Lease, and each replica keeps a member Lease so every replica sees
how many are alive. From the Leases it read and the time, ``plan`` says which shards to renew,
which free or expired ones to acquire and which extras to hand back: everything the I/O loop
(``sharding.py``) does follows from its answer, so the rules are tested here without a cluster.

Ownership is an optimisation, not a lock: the Saga's resourceVersion precondition stays the lock,
so two owners for a moment (a paused replica that wakes up, clocks that disagree) cost 409s only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from kubesaga.models.shard_key import SHARD_KEY_LABEL, SHARD_KEYS, labelled_key, shard_key

SHARD_LEASE = "shard"
MEMBER_LEASE = "member"


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of the saga ``namespace/name``, in ``range(shards)``: the same in every process,
    for every incarnation of the name (a name reused maps to the same shard)."""
    return shard_key(namespace, name) % shards


def shard_keys(shard: int, shards: int) -> list[int]:
    """The shard keys of one shard: ``shard, shard + shards, …`` below ``SHARD_KEYS``."""
    return list(range(shard, SHARD_KEYS, shards))


def selector(shard: int, shards: int) -> str:
    """The label selector of one shard's watch: its sagas whose label is one of its keys."""
    return f"{SHARD_KEY_LABEL} in ({','.join(map(str, shard_keys(shard, shards)))})"


CATCHALL_SELECTOR = f"{SHARD_KEY_LABEL} notin ({','.join(map(str, range(SHARD_KEYS)))})"
"""The sagas no shard watch covers: without the label (``notin`` matches those) or with a value
that is not a key. kopf's watch uses it, so every replica receives only these."""


def watched_by_shard(labels: Mapping[str, str] | None, shards: int) -> int | None:
    """The shard whose watch delivers a saga with these labels; None: the catch-all's."""
    key = labelled_key(labels)
    return None if key is None else key % shards


class OnDeleted(Enum):
    """What a DELETED event from a watch means for the saga it names."""

    FORGET = "forget"
    CONFIRM = "confirm"
    """GET it first: 404, forget it; found, observe it (it moved to another watch)."""


def on_deleted(owned: bool, finished: bool) -> OnDeleted:
    """A DELETED event is also what a watch sends when an object stops matching its selector
    (a label added or changed), with the *old* object, in no order with the ADDED of the watch
    it moved to. An owned saga still in flight must not be dropped on that: confirm with a GET.
    Anything else is forgotten at once (cheap on bulk deletes of finished sagas; an unowned saga
    is the owner's to keep)."""
    return OnDeleted.CONFIRM if owned and not finished else OnDeleted.FORGET


def shard_queue(results_queue: str, shard: int) -> str:
    """The results queue of one shard: ``<results queue>.<shard>`` (docs/protocol.md)."""
    return f"{results_queue}.{shard}"


def shard_lease_name(prefix: str, shard: int) -> str:
    return f"{prefix}-shard-{shard}"


def member_lease_name(prefix: str, identity: str) -> str:
    """A name fit for Kubernetes whatever the identity holds (host names, pod names)."""
    return f"{prefix}-member-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class LeaseState:
    """What ``plan`` needs of one Lease: who holds it and until when (wall-clock seconds)."""

    holder: str | None
    renewed: float | None
    duration: float

    def live(self, now: float) -> bool:
        """Held, and renewed less than its duration ago."""
        return bool(self.holder) and self.renewed is not None and now < self.renewed + self.duration


@dataclass(frozen=True)
class Plan:
    """What to do with the shard Leases this round, each in the order to try it."""

    renew: tuple[int, ...]
    acquire: tuple[int, ...]
    release: tuple[int, ...]
    share: int
    """How many shards this replica should hold."""


def fair_shares(shards: int, members: Iterable[str]) -> dict[str, int]:
    """Each live member's share: ``shards // n`` and one more for the first ``shards % n`` in
    sorted order, so 16 shards over three replicas are 6/5/5, never 6/6/4."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    base, extra = divmod(shards, len(ordered))
    return {member: base + (1 if rank < extra else 0) for rank, member in enumerate(ordered)}


def preference(identity: str, shards: int) -> list[int]:
    """The order in which ``identity`` tries shards: its own permutation, so replicas that start
    together do not all race for shard 0 (and lose all but one of those races)."""
    return sorted(range(shards), key=lambda s: hashlib.sha256(f"{identity}/{s}".encode()).digest())


def plan(
    me: str,
    shards: int,
    leases: Mapping[int, LeaseState],
    members: Mapping[str, LeaseState],
    now: float,
) -> Plan:
    """The shards to renew, acquire and release, from the Leases read at ``now``.

    ``leases`` maps shard numbers to their Lease (a missing one is free); ``members`` maps
    identities to their member Lease. This replica counts as a live member whatever its own
    member Lease says (it may not have been written yet). A shard this replica holds is renewed
    even if its Lease expired meanwhile: no one else took it, and the write is conditional.
    """
    live = {identity for identity, lease in members.items() if lease.live(now)} | {me}
    share = fair_shares(shards, live)[me]
    order = preference(me, shards)
    mine = [s for s in order if (lease := leases.get(s)) is not None and lease.holder == me]
    keep, release = mine[:share], mine[share:]
    free = [
        s
        for s in order
        if s not in mine and ((lease := leases.get(s)) is None or not lease.live(now))
    ]
    acquire = free[: max(0, share - len(keep))]
    return Plan(renew=tuple(keep), acquire=tuple(acquire), release=tuple(release), share=share)
