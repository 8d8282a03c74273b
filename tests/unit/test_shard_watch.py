"""Each replica receives only its own shards' sagas: the shard-key label, which watch covers which
saga, what a DELETED event means, and what a shard watch does with its events. In memory (see
orchestrator_kit); tests/integration/test_shards.py runs replicas on the platform."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes_asyncio import client

from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.models.shard_key import (
    SHARD_KEY_LABEL,
    SHARD_KEYS,
    labelled_key,
    shard_key,
    with_shard_key,
)
from kubesaga.operator import Orchestrator
from kubesaga.operator.handlers import build_registry
from kubesaga.operator.shard_watch import ShardWatches, watch_targets
from kubesaga.operator.shards import (
    CATCHALL_SELECTOR,
    OnDeleted,
    on_deleted,
    selector,
    shard_keys,
    shard_of,
    watched_by_shard,
)
from kubesaga.store import SagaObject
from tests.unit.orchestrator_kit import NS, Rig, spec

pytestmark = pytest.mark.unit

names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=20)


def test_a_client_keeps_the_users_labels_and_sets_the_key_of_the_name() -> None:
    labels = with_shard_key("shop", "order-1", {"app": "shop", SHARD_KEY_LABEL: "999"})
    assert labels == {"app": "shop", SHARD_KEY_LABEL: str(shard_key("shop", "order-1"))}
    assert with_shard_key("shop", "order-1", None) == {
        SHARD_KEY_LABEL: str(shard_key("shop", "order-1"))
    }


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("0", 0),
        ("7", 7),
        ("255", 255),
        ("256", None),
        ("-1", None),
        ("007", None),
        ("", None),
        ("seven", None),
        ("²", None),
        (" 7", None),
    ],
)
def test_only_a_canonical_number_below_256_is_a_key(value: str, key: int | None) -> None:
    assert labelled_key({SHARD_KEY_LABEL: value}) == key


def test_a_saga_without_the_label_has_no_key() -> None:
    assert labelled_key({"app": "shop"}) is None
    assert labelled_key(None) is None


@pytest.mark.parametrize("shards", [1, 3, 16, 100, 256])
def test_every_key_is_in_exactly_one_shards_selector(shards: int) -> None:
    keys = [k for shard in range(shards) for k in shard_keys(shard, shards)]
    assert sorted(keys) == list(range(SHARD_KEYS))
    assert selector(3 % shards, shards).startswith(f"{SHARD_KEY_LABEL} in (")


def test_a_shards_selector_lists_its_keys() -> None:
    assert selector(5, 100) == f"{SHARD_KEY_LABEL} in (5,105,205)"


def test_the_catch_all_selector_excludes_every_key() -> None:
    values = CATCHALL_SELECTOR.removeprefix(f"{SHARD_KEY_LABEL} notin (").removesuffix(")")
    assert values.split(",") == [str(k) for k in range(SHARD_KEYS)]


@given(namespace=names, name=names, shards=st.integers(min_value=1, max_value=SHARD_KEYS))
def test_the_shard_watch_delivering_a_labelled_saga_is_its_owners(
    namespace: str, name: str, shards: int
) -> None:
    labels = with_shard_key(namespace, name, {})
    assert watched_by_shard(labels, shards) == shard_of(namespace, name, shards)


def test_an_unlabelled_or_mislabelled_saga_is_the_catch_alls() -> None:
    assert watched_by_shard({}, 16) is None
    assert watched_by_shard({SHARD_KEY_LABEL: "x"}, 16) is None


@pytest.mark.parametrize(
    ("owned", "finished", "action"),
    [
        (True, False, OnDeleted.CONFIRM),
        (True, True, OnDeleted.FORGET),
        (False, False, OnDeleted.FORGET),
        (False, True, OnDeleted.FORGET),
    ],
)
def test_only_an_owned_saga_in_flight_is_confirmed_before_it_is_dropped(
    owned: bool, finished: bool, action: OnDeleted
) -> None:
    assert on_deleted(owned, finished) is action


def test_plain_namespaces_are_watched_one_by_one_and_patterns_cluster_wide() -> None:
    assert watch_targets([]) == [None]
    assert watch_targets(["a", "b", "a"]) == ["a", "b"]
    assert watch_targets(["a", "team-*"]) == [None]
    assert watch_targets(["!kube-system"]) == [None]


def test_kopf_watches_only_the_sagas_no_shard_watch_covers() -> None:
    orchestrator = Orchestrator(Rig(replicas=0).store, Rig(replicas=0).broker)
    registry = build_registry(orchestrator)
    settings = kopf.OperatorSettings()
    (configure,) = [h for h in registry._activities.get_all_handlers() if "configure" in h.id]
    fn: Any = configure.fn
    fn(settings=settings)
    resource = kopf.Resource(API_GROUP, API_VERSION, PLURAL, kind="Saga")
    assert list(settings.watching.label_selectors.collect(resource)) == [CATCHALL_SELECTOR]


# -- DELETED: a saga deleted, or moved to another watch -------------------------------------


async def test_an_owned_saga_that_moved_to_another_watch_keeps_its_timers() -> None:
    """The catch-all's ADDED came first, then the shard watch's DELETED with the old copy."""
    rig = Rig()
    created = rig.store.create("s", spec("a", deadlineSeconds=60))
    await rig.settle()
    assert rig.clock.pending()
    rig.orchestrator.vanished(created)
    await rig.settle()
    assert rig.orchestrator.cache.get((NS, "s")) is not None
    assert rig.clock.pending()  # its redelivery and deadline timers


async def test_an_owned_saga_deleted_is_forgotten_after_the_confirming_read() -> None:
    rig = Rig()
    rig.store.create("s", spec("a"))
    await rig.settle()
    await rig.store.delete(NS, "s")
    await rig.settle()
    assert rig.orchestrator.cache.record((NS, "s")) is None
    assert not rig.clock.pending()


async def test_an_unowned_or_finished_saga_is_forgotten_at_once() -> None:
    rig = Rig(replicas=0)
    outsider = Orchestrator(rig.store, rig.broker, clock=rig.clock, owns=lambda key: False)
    created = rig.store.create("s", spec("a"))
    outsider.observe(created)
    outsider.vanished(created)  # it still exists: the owner's watch has it
    assert outsider.cache.record((NS, "s")) is None
    owner = Orchestrator(rig.store, rig.broker, clock=rig.clock)
    done = SagaObject({**created.raw, "status": {"phase": "Completed"}})
    owner.cache.offer(done)
    owner.vanished(done)
    assert len(owner.tasks) == 0  # no read: finished sagas go at once (bulk deletes)
    assert owner.cache.record((NS, "s")) is None


# -- a shard watch's events -------------------------------------------------------------------


class Relabels:
    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, str], str | None]] = []

    async def merge_labels(
        self, namespace: str, name: str, labels: Mapping[str, str], uid: str | None = None
    ) -> SagaObject:
        self.patches.append((namespace, name, dict(labels), uid))
        return SagaObject({})


def labelled(obj: SagaObject, value: str | None) -> SagaObject:
    metadata = dict(obj.metadata)
    metadata["labels"] = {} if value is None else {SHARD_KEY_LABEL: value}
    return SagaObject({**obj.raw, "metadata": metadata})


@contextlib.asynccontextmanager
async def watches_of(orchestrator: Orchestrator, relabels: Relabels) -> AsyncIterator[ShardWatches]:
    """Shard watches whose events the test hands over (none is started: no apiserver here)."""
    async with client.ApiClient() as api:
        yield ShardWatches(
            api,
            relabels,
            orchestrator,
            16,
            lambda key: shard_of(key[0], key[1], 16),
            [NS],
            orchestrator.metrics,
            30.0,
        )


async def test_a_mislabelled_saga_is_relabelled_to_the_key_of_its_name() -> None:
    rig = Rig()
    relabels = Relabels()
    async with watches_of(rig.orchestrator, relabels) as watches:
        created = rig.store.create("s", spec("a"))
        right = shard_key(NS, "s")
        watches.on_event("ADDED", labelled(created, str((right + 1) % SHARD_KEYS)))
        watches.on_event("MODIFIED", labelled(created, str((right + 1) % SHARD_KEYS)))
        await rig.orchestrator.tasks.wait()
        assert relabels.patches == [(NS, "s", {SHARD_KEY_LABEL: str(right)}, created.uid)] * 2
        watches.on_event("MODIFIED", labelled(created, str(right)))
        await rig.orchestrator.tasks.wait()
        assert len(relabels.patches) == 2  # labelled right: left alone


async def test_a_shard_watch_keeps_only_owned_sagas_and_forgets_them_when_the_shard_is_lost() -> (
    None
):
    rig = Rig(replicas=0)
    owned = {"mine"}
    orchestrator = Orchestrator(
        rig.store, rig.broker, clock=rig.clock, owns=lambda key: key[1] in owned
    )
    async with watches_of(orchestrator, Relabels()) as watches:
        mine = rig.store.create("mine", spec("a"))
        theirs = rig.store.create("theirs", spec("a"))
        watches.on_event("ADDED", labelled(mine, str(shard_key(NS, "mine"))))
        watches.on_event("ADDED", labelled(theirs, str(shard_key(NS, "theirs"))))  # a rebalance
        assert orchestrator.cache.record((NS, "theirs")) is None
        assert watches.delivered == {(NS, "mine")}
        assert await watches.stop({shard_of(NS, "mine", 16)}) == [(NS, "mine")]
        assert watches.delivered == set()
        events = orchestrator.metrics.registry.get_sample_value(
            "kubesaga_watch_events_total", {"watch": "shard"}
        )
        assert events == 2
        await orchestrator.close()


def test_failing_shard_watches_say_what_is_wrong_once_not_per_shard_and_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    from kubesaga.operator.shard_watch import REPEAT_SECONDS, Trouble

    now = [0.0]
    trouble = Trouble(clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="kubesaga.operator.shards"):
        for _ in range(16 * 3):  # 16 shards, three retries each
            trouble.report(ApiException(status=404, reason="Not Found"))
        trouble.report(ApiException(status=403, reason="Forbidden"))
        now[0] += REPEAT_SECONDS
        trouble.report(ApiException(status=403, reason="Forbidden"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "the Saga CRD is not installed" in lines[0] and "kubectl apply" in lines[0]
    assert "grant list and watch on sagas.kubesaga.io" in lines[1] == lines[2]
