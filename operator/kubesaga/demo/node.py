"""``kubesaga demo --cluster``: the examples as pods on the one-node cluster, installed with Helm.

The demo does what a user does: start (or reuse) the node with ``hack/cluster.sh up``, label a
namespace Pod Security ``restricted``, ``helm upgrade --install`` the chart with the examples'
workers, and then the same sagas, live board and summary as the local demo (``sagas.py``).
``kubectl`` and ``helm`` are the ones the node exports on PATH. ``hack/cluster.sh`` prints its
progress on stderr, passed to the terminal, and only ``export`` lines on stdout.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kubesaga.client import AsyncSagaClient
from kubesaga.demo.examples import DemoError, find_repo, load_examples, select_examples
from kubesaga.demo.platform import parse_exports
from kubesaga.demo.sagas import DemoOptions, Run, run_sagas

RELEASE = "kubesaga"
NODE_EXPORTS = ("KUBECONFIG", "KUBESAGA_CLUSTER_AMQP_URL", "PATH")
STATUS_TIMEOUT_S = 60.0
UP_TIMEOUT_S = 2400.0
"""A first ``up`` builds kubelet & co. and the images: ~15 minutes on 2 cores."""
HELM_TIMEOUT = "5m"
DELETE_TIMEOUT = "180s"


@dataclass(frozen=True)
class Node:
    """The running node as the demo reaches it."""

    script: Path
    env: dict[str, str]
    """The demo's environment with the node's exports: KUBECONFIG, PATH (kubectl, helm first)."""
    started_here: bool
    """Whether this demo started it (and so stops it, unless --keep)."""

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    @property
    def amqp_url(self) -> str:
        """The broker's URL as pods reach it (a cluster DNS name)."""
        return self.env["KUBESAGA_CLUSTER_AMQP_URL"]


def node_env(stdout: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the exports of ``hack/cluster.sh up``; its PATH line extends ``$PATH``."""
    exports = parse_exports(stdout)
    missing = [name for name in NODE_EXPORTS if not exports.get(name)]
    if missing:
        raise DemoError(f"hack/cluster.sh up printed no {', '.join(missing)} export")
    path = exports["PATH"]
    for ref in ("${PATH}", "$PATH"):
        path = path.replace(ref, environ.get("PATH", ""))
    return {**environ, **exports, "PATH": path}


def namespace_commands(namespace: str, exists: bool) -> list[list[str]]:
    """Create the namespace (unless it exists) and enforce Pod Security ``restricted`` on it, as
    users should before installing: every pod of the chart must be admitted under it."""
    create = [] if exists else [["kubectl", "create", "namespace", namespace]]
    label = [
        "kubectl",
        "label",
        "--overwrite",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ]
    return [*create, label]


def install_command(repo: Path, namespace: str, amqp_url: str) -> list[str]:
    """``helm upgrade --install`` of the chart with the examples' workers.

    The operator serves only the demo's namespace (a Role, not the chart's default ClusterRole)
    and the workers report to the demo's own results queue, so the demo neither collides with nor
    serves another kubesaga release on the same node and broker.
    """
    chart = repo / "helm" / "kubesaga"
    return [
        "helm",
        "upgrade",
        "--install",
        RELEASE,
        str(chart),
        "--namespace",
        namespace,
        "--create-namespace",
        "-f",
        str(chart / "ci" / "workers-values.yaml"),
        "--set",
        f"amqp.url={amqp_url}",
        "--set",
        f"operator.namespaces={{{namespace}}}",
        "--set",
        f"amqp.resultsQueue={namespace}.results",
        "--wait",
        "--timeout",
        HELM_TIMEOUT,
    ]


def cleanup_commands(namespace: str) -> list[list[str]]:
    """Uninstall the release, then delete the namespace with the sagas in it."""
    return [
        ["helm", "uninstall", RELEASE, "--namespace", namespace, "--wait", "--ignore-not-found"],
        [
            "kubectl",
            "delete",
            "namespace",
            namespace,
            "--ignore-not-found",
            "--wait=true",
            f"--timeout={DELETE_TIMEOUT}",
        ],
    ]


def keep_instructions(repo: Path, namespace: str, first: str) -> list[str]:
    script = repo / "hack" / "cluster.sh"
    return [
        "",
        "[bold]--keep: the node and the release are still running.[/] Try:",
        f'  eval "$({script} env)"',
        f"  kubectl get sagas -n {namespace}",
        f"  kubectl get pods -n {namespace}",
        f"  kubesaga get {first} -n {namespace}",
        f"  kubectl logs -n {namespace} deployment/{RELEASE}       # the operator",
        "Stop it:",
        f"  helm uninstall {RELEASE} -n {namespace} && kubectl delete namespace {namespace}",
        f"  {script} down                  # the node",
    ]


async def run_on_node(options: DemoOptions, console: Console) -> int:
    """The cluster demo; the exit code is 0 when every saga ended in its expected phase."""
    run = Run(options, console)
    node: Node | None = None
    code: int | None = None
    try:
        repo = find_repo(options.repo)
        examples = select_examples(load_examples(repo / "examples"), options.only)
        node = await _start_node(run, repo / "hack" / "cluster.sh")
        await _install(run, node, repo)
        saga_client = await AsyncSagaClient.connect(node.kubeconfig, options.namespace)
        try:
            ok = await run_sagas(run, saga_client.api, examples)
        finally:
            await saga_client.close()
        if options.keep:
            for line in keep_instructions(
                repo, options.namespace, f"{examples[0].name}-{run.run_id}"
            ):
                console.print(line, highlight=False)
        code = 0 if ok else 1
        return code
    finally:
        if node is not None and (code is None or not options.keep):
            await _cleanup(run, node)


async def _start_node(run: Run, script: Path) -> Node:
    """``up`` (reusing a running node); on a reused node, ``images`` so pods run this checkout."""
    if os.geteuid() != 0:
        raise DemoError(
            "kubesaga demo --cluster runs a one-node Kubernetes cluster on this machine "
            "(containerd, kubelet, iptables), which needs root: run `sudo hack/demo.sh --cluster`, "
            "or the local demo without --cluster"
        )
    t0 = time.monotonic()
    status = await _run_script(script, "status", timeout=STATUS_TIMEOUT_S)
    running = status.returncode == 0
    run.console.print(
        "[bold]Reusing the running one-node cluster[/] (hack/cluster.sh up)"
        if running
        else "[bold]Starting the one-node cluster[/] (hack/cluster.sh up: containerd, kubelet & "
        "co., CoreDNS, RabbitMQ as a pod). The first run builds the node's binaries and images: "
        "~15 minutes; later starts ~1 minute."
    )
    up = await _run_script(script, "up", timeout=UP_TIMEOUT_S)
    if up.returncode != 0:
        raise DemoError(
            f"the one-node cluster did not start ({script.name} up exited "
            f"{up.returncode}; its message is above)"
        )
    node = Node(script, node_env(up.stdout, os.environ), started_here=not running)
    run.timings["node"] = time.monotonic() - t0
    if running:
        t1 = time.monotonic()
        run.console.print(
            "[bold]Rebuilding the kubesaga images[/] from this checkout (hack/cluster.sh images)"
        )
        images = await _run_script(script, "images", timeout=UP_TIMEOUT_S)
        if images.returncode != 0:
            raise DemoError(
                f"{script.name} images exited {images.returncode}; its message is above"
            )
        run.timings["images"] = time.monotonic() - t1
    return node


async def _install(run: Run, node: Node, repo: Path) -> None:
    t0 = time.monotonic()
    ns = run.options.namespace
    phase = await _kubectl(
        node, "get", "namespace", ns, "--ignore-not-found", "-o", "jsonpath={.status.phase}"
    )
    if phase == "Terminating":
        run.console.print(f"Waiting for namespace {ns} of an earlier run to be deleted")
        await _kubectl(
            node, "wait", "--for=delete", f"namespace/{ns}", f"--timeout={DELETE_TIMEOUT}"
        )
        phase = ""
    for command in namespace_commands(ns, exists=bool(phase)):
        await _checked(node, command)
    run.console.print(
        f"[bold]Installing the chart[/] (helm upgrade --install {RELEASE} helm/kubesaga "
        f"-n {ns}, with the examples' workers; namespace Pod Security restricted, enforced)"
    )
    try:
        await _checked(node, install_command(repo, ns, node.amqp_url))
    except DemoError as error:
        pods = await _exec(["kubectl", "get", "pods", "-n", ns], node.env, timeout=60)
        raise DemoError(f"{error}\nThe pods (kubectl get pods -n {ns}):\n{pods.stdout}") from None
    run.timings["install"] = time.monotonic() - t0


async def _cleanup(run: Run, node: Node) -> None:
    """Uninstall and delete the namespace; stop the node only if this demo started it."""
    ns = run.options.namespace
    run.console.print(f"[bold]Uninstalling[/] the release and deleting namespace {ns}")
    for command in cleanup_commands(ns):
        result = await _exec(command, node.env, timeout=300)
        if result.returncode != 0:
            run.console.print(f"[red]{' '.join(command)} failed:[/] {result.stderr.strip()}")
    if node.started_here:
        run.console.print("[bold]Stopping the one-node cluster[/] (hack/cluster.sh down)")
        await _run_script(node.script, "down", timeout=300)


async def _kubectl(node: Node, *args: str) -> str:
    return await _checked(node, ["kubectl", *args])


async def _checked(node: Node, command: Sequence[str]) -> str:
    result = await _exec(command, node.env, timeout=600)
    if result.returncode != 0:
        raise DemoError(
            f"`{' '.join(command)}` exited {result.returncode}:\n"
            f"{(result.stderr or result.stdout).strip()[-3000:]}"
        )
    return result.stdout.strip()


async def _run_script(
    script: Path, verb: str, *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``hack/cluster.sh VERB``: stdout captured (exports), stderr (progress) to the terminal."""
    return await _exec([str(script), verb], dict(os.environ), timeout=timeout, stderr=None)


async def _exec(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float,
    stderr: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DemoError(f"`{' '.join(command)}` did not finish within {timeout:g}s") from None
    return subprocess.CompletedProcess(
        list(command),
        proc.returncode or 0,
        out.decode(errors="replace"),
        (err or b"").decode(errors="replace"),
    )
