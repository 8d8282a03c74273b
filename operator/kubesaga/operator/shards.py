"""Which shards this replica should hold: the deterministic part of sharding, without I/O.

Operator replicas share the sagas by shard. A saga's shard is a stable hash of its uid (the same
in every process and Python version, unlike ``hash()``); each shard has a
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

SHARD_LEASE = "shard"
MEMBER_LEASE = "member"


def shard_of(uid: str, shards: int) -> int:
    """The shard of the saga with this uid, in ``range(shards)``: the same in every process."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


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
