"""The cluster tier talks to its node the way users do: ``kubectl`` and ``helm`` subprocesses.

No Python Kubernetes client here on purpose: what these tests prove is what a person typing the
README's commands gets.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "hack" / "cluster.sh"
HOST_STATE = REPO_ROOT / "hack" / "cluster" / "host_state.py"
CHART = REPO_ROOT / "helm" / "kubesaga"
WORKERS_VALUES = CHART / "ci" / "workers-values.yaml"
EXAMPLES = REPO_ROOT / "examples"
RELEASE = "kubesaga"


class CommandFailed(AssertionError):
    """A kubectl or helm command exited non-zero; the message carries its output."""


@dataclass(frozen=True)
class Cluster:
    """Where the node's API is and how its broker is reached from pods."""

    env: dict[str, str]
    amqp_url: str
    started_here: bool
    ours: bool = True
    """False for a cluster we did not start with hack/cluster.sh (kind): its host is not ours."""

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        proc = subprocess.run(
            args,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandFailed(
                f"{' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
            )
        return proc.stdout

    def kubectl(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        return self.run("kubectl", *args, timeout=timeout, check=check)

    def helm(self, *args: str, timeout: float = 600) -> str:
        return self.run("helm", *args, timeout=timeout)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines as printed by ``hack/cluster.sh up`` (values may use $PATH)."""
    out = subprocess.run(
        ["bash", "-c", f"{text}\nenv -0"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    ).stdout
    pairs = (item.split("=", 1) for item in out.split("\0") if "=" in item)
    return dict(pairs)


def cluster_sh(
    *args: str, timeout: float, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``hack/cluster.sh``; its stderr (progress) is inherited."""
    return subprocess.run(
        [str(CLUSTER_SH), *args],
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        check=False,
    )


def host_state(verb: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python3", str(HOST_STATE), verb, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def example_sagas() -> list[tuple[str, str, Path]]:
    """(name, expected phase, file) of every examples/NN-*/saga.yaml."""
    import yaml

    found = []
    for path in sorted(EXAMPLES.glob("*/saga.yaml")):
        doc = yaml.safe_load(path.read_text())
        meta = doc["metadata"]
        found.append(
            (meta["name"], meta["annotations"]["examples.kubesaga.io/expected-phase"], path)
        )
    return found
