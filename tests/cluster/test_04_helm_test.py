"""``helm test``: the chart's own test hook passes on the installed release, as NOTES.txt says."""

from __future__ import annotations

import re

from tests.cluster.kube import RELEASE, Cluster


def test_helm_test_passes_as_the_notes_say(cluster: Cluster, release: str) -> None:
    notes = cluster.helm("get", "notes", RELEASE, "--namespace", release)
    command = re.search(r"^\s*(helm test .*)$", notes, flags=re.MULTILINE)
    assert command is not None, notes
    args = command.group(1).split()
    assert args[:3] == ["helm", "test", RELEASE]
    # The hook's objects are deleted once it succeeds (so uninstall leaves nothing): no --logs.
    out = cluster.helm(*args[1:], "--timeout", "3m")
    assert re.search(r"TEST SUITE:\s+kubesaga-test\b.*?Phase:\s+Succeeded", out, re.S), out
    left = cluster.kubectl(
        "get", "pods,roles,rolebindings,serviceaccounts", "-n", release, "-o", "name"
    )
    assert f"{RELEASE}-test" not in left, left
