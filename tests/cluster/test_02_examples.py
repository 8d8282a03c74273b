"""Every example saga reaches its expected phase through the operator and handler pods."""

from __future__ import annotations

import pytest

from tests.cluster.kube import Cluster, example_sagas

EXAMPLES = example_sagas()


def test_there_are_six_examples() -> None:
    assert len(EXAMPLES) == 6


@pytest.mark.parametrize(("name", "phase", "path"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_reaches_its_expected_phase(
    cluster: Cluster, release: str, name: str, phase: str, path: object
) -> None:
    cluster.kubectl("apply", "-n", release, "-f", str(path))
    cluster.kubectl(
        "wait",
        "-n",
        release,
        f"saga/{name}",
        f"--for=jsonpath={{.status.phase}}={phase}",
        "--timeout=120s",
    )
    saga = cluster.get_json("saga", "-n", release, name)
    steps = saga["status"]["steps"]
    # a step that ran has attempts; an approval step runs nothing, it has an answer or a timeout
    assert steps and all(
        step.get("attempt", 0) >= 1
        for step in steps
        if step["phase"] != "Skipped"
        if "approval" not in step
    )
    assert all("outcome" in step["approval"] for step in steps if "approval" in step)


def test_kubectl_get_sagas_shows_the_printer_columns(cluster: Cluster, release: str) -> None:
    out = cluster.kubectl("get", "sagas", "-n", release)
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "CURRENT", "AGE"]
    by_name = {row.split()[0]: row.split() for row in rows}
    for name, phase, _ in EXAMPLES:
        assert by_name[name][1] == phase, out
    order = by_name["order-42"] if "order-42" in by_name else next(iter(by_name.values()))
    assert "/" in order[2], f"PROGRESS is done/total: {out}"
