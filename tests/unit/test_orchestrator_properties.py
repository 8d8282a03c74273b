"""Two orchestrators sharing one in-memory store, driven through random interleavings.

Whatever order results reach the replicas in, however far each one's watch lags and however
many foreign writes slip in before a status write, the saga completes, every result is
acknowledged, and no attempt of a step is published twice (no clock moves here, so the
documented redelivery never fires).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from kubesaga.broker import Disposition
from tests.unit.orchestrator_kit import Rig, deliver, phase, spec, succeeded

STEPS = "abcd"

turn = st.tuples(
    st.integers(0, 1),  # which replica receives the result
    st.tuples(st.booleans(), st.booleans()),  # whether each replica's watch caught up first
    st.integers(0, 2),  # foreign writes before the next status replace (409s)
)


async def scenario(turns: list[tuple[int, tuple[bool, bool], int]]) -> Rig:
    rig = Rig(replicas=2)
    rig.store.create("s", spec(*STEPS))
    await rig.settle()
    for name, (who, caught_up, interfere) in zip(STEPS, turns, strict=True):
        for i, o in enumerate(rig.orchestrators):
            if caught_up[i]:
                deliver(rig.streams[i], o)
        rig.store.interfere_next = interfere
        outcome = await rig.orchestrators[who].on_result(succeeded(rig.broker.sent(name)[-1]))
        assert outcome.disposition is Disposition.ACK, outcome.reason
        for o in rig.orchestrators:
            await o.tasks.wait()
    await rig.settle()
    await rig.close()
    return rig


@settings(max_examples=60, deadline=None)
@given(st.lists(turn, min_size=len(STEPS), max_size=len(STEPS)))
def test_two_replicas_complete_the_saga_and_publish_each_attempt_once(
    turns: list[tuple[int, tuple[bool, bool], int]],
) -> None:
    rig = asyncio.run(scenario(turns))
    assert phase(rig.store, "s") == "Completed"
    attempts = Counter((c.step, c.kind, c.attempt) for c in rig.broker.published)
    assert set(attempts.values()) == {1}, attempts
    assert [c.step for c in rig.broker.published] == list(STEPS)
