"""The deterministic part of sharding: a saga's shard, fair shares, and what a replica does with
the Leases it read (``kubesaga.operator.shards``). No cluster: Leases are plain values here."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from kubesaga.models.shard_key import shard_key
from kubesaga.operator.shards import (
    LeaseState,
    fair_shares,
    member_lease_name,
    plan,
    shard_of,
    shard_queue,
)

NOW = 1_000_000.0
DURATION = 15.0


def held(holder: str, renewed: float = NOW) -> LeaseState:
    return LeaseState(holder=holder, renewed=renewed, duration=DURATION)


def members(*names: str) -> dict[str, LeaseState]:
    return {name: held(name) for name in names}


def test_a_sagas_shard_is_its_name_keys_stable_hash_not_pythons_hash() -> None:
    # Pinned values: a process with another PYTHONHASHSEED (or another Python) must agree.
    key = 0x9EFB36117D50566E % 256  # sha256("default/a"), first 8 bytes
    assert shard_key("default", "a") == key
    assert shard_of("default", "a", 16) == key % 16
    assert shard_of("default", "a", 1) == 0
    assert shard_of("default", "a", 256) == key


def test_names_spread_over_every_shard() -> None:
    counts = Counter(shard_of("shop", f"order-{i}", 16) for i in range(4000))
    assert set(counts) == set(range(16))
    assert min(counts.values()) > 4000 / 16 * 0.7


def test_a_shards_results_queue_is_the_results_queue_with_its_number() -> None:
    assert shard_queue("kubesaga.results", 7) == "kubesaga.results.7"


def test_member_lease_names_are_valid_kubernetes_names_whatever_the_identity() -> None:
    name = member_lease_name("kubesaga", "My_Host.example.com-1234")
    assert name.startswith("kubesaga-member-")
    assert name == name.lower() and len(name) <= 63


def test_sixteen_shards_over_three_replicas_are_six_five_five() -> None:
    assert sorted(fair_shares(16, ["a", "b", "c"]).values()) == [5, 5, 6]


@given(st.integers(1, 256), st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=12))
def test_fair_shares_add_up_and_differ_by_at_most_one(shards: int, names: set[str]) -> None:
    shares = fair_shares(shards, names)
    assert sum(shares.values()) == shards
    assert max(shares.values()) - min(shares.values()) <= 1


def test_a_lone_replica_acquires_every_free_shard() -> None:
    todo = plan("a", 16, {}, {}, NOW)
    assert sorted(todo.acquire) == list(range(16))
    assert todo.renew == () and todo.release == ()


def test_a_replica_renews_what_it_holds_and_takes_only_up_to_its_share() -> None:
    leases = {s: held("a") for s in range(3)}
    todo = plan("a", 16, leases, members("a", "b", "c"), NOW)
    assert sorted(todo.renew) == [0, 1, 2]
    assert len(todo.renew) + len(todo.acquire) == todo.share == 6
    assert not set(todo.acquire) & {0, 1, 2}


def test_live_leases_of_others_are_never_acquired() -> None:
    leases = {s: held("b") for s in range(16)}
    todo = plan("a", 16, leases, members("a", "b"), NOW)
    assert todo.acquire == ()


def test_expired_leases_of_a_dead_replica_are_taken_over() -> None:
    stale = NOW - DURATION - 1
    leases = {s: held("b", renewed=stale) for s in range(16)}
    dead = {"b": held("b", renewed=stale)}
    todo = plan("a", 16, leases, dead, NOW)
    assert sorted(todo.acquire) == list(range(16))  # b no longer counts as a member either


def test_a_released_lease_without_holder_is_free() -> None:
    leases = {0: LeaseState(holder=None, renewed=NOW, duration=1.0)}
    assert 0 in plan("a", 1, leases, {}, NOW).acquire


def test_extras_are_handed_back_when_a_member_joins() -> None:
    leases = {s: held("a") for s in range(16)}
    todo = plan("a", 16, leases, members("a", "b"), NOW)
    assert len(todo.renew) == 8 and len(todo.release) == 8
    assert set(todo.renew).isdisjoint(todo.release)


def test_its_own_expired_lease_is_renewed_not_acquired() -> None:
    leases = {3: held("a", renewed=NOW - DURATION - 1)}
    todo = plan("a", 16, leases, {}, NOW)
    assert 3 in todo.renew and 3 not in todo.acquire


def test_replicas_starting_together_try_shards_in_different_orders() -> None:
    first = plan("a", 16, {}, members("a", "b", "c"), NOW).acquire
    second = plan("b", 16, {}, members("a", "b", "c"), NOW).acquire
    assert first != second


@given(st.lists(st.sampled_from("abcd"), min_size=16, max_size=16), st.sampled_from("abcd"))
def test_applying_every_members_plan_in_turn_converges_to_fair_shares(
    initial: list[str], joiner: str
) -> None:
    """Replicas that each apply their plan in turn (as the Lease writes serialise them) end up
    holding their fair shares, each shard held by exactly one."""
    names = sorted(set(initial) | {joiner})
    leases = {s: held(holder) for s, holder in enumerate(initial)}
    for _ in range(4):
        for me in names:
            todo = plan(me, 16, leases, members(*names), NOW)
            for s in todo.release:
                leases[s] = LeaseState(holder=None, renewed=NOW, duration=1.0)
            for s in todo.acquire:
                leases[s] = held(me)
    assert Counter(lease.holder for lease in leases.values()) == Counter(fair_shares(16, names))
