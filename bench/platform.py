"""The platform the bench runs on: an existing one, or one started (and stopped) here."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from bench.procstat import find_processes, process_cmdline
from kubesaga.demo.platform import parse_exports

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTENV = REPO_ROOT / "hack" / "testenv.sh"
UP_TIMEOUT_S = 1800.0
DOWN_TIMEOUT_S = 120.0
ESTABLISH_TIMEOUT_S = 60


@dataclass
class Platform:
    kubeconfig: str
    amqp_url: str
    started_here: bool
    state_dir: str | None = None
    pids: dict[str, list[int]] = field(default_factory=dict)


def acquire() -> Platform:
    """Use KUBECONFIG + KUBESAGA_AMQP_URL with KUBESAGA_USE_EXISTING=1, else ``testenv.sh up``."""
    kubeconfig = os.environ.get("KUBECONFIG", "")
    amqp_url = os.environ.get("KUBESAGA_AMQP_URL", "")
    state_dir = os.environ.get("KUBESAGA_TESTENV_DIR")
    if os.environ.get("KUBESAGA_USE_EXISTING") == "1":
        if not kubeconfig or not amqp_url:
            raise SystemExit("KUBESAGA_USE_EXISTING=1 needs KUBECONFIG and KUBESAGA_AMQP_URL")
        platform = Platform(kubeconfig, amqp_url, started_here=False, state_dir=state_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="kubesaga-bench-") as tmp:
            started_file = Path(tmp) / "started"
            env = dict(os.environ, KUBESAGA_TESTENV_STARTED_FILE=str(started_file))
            proc = subprocess.run(
                [str(TESTENV), "up"],
                env=env,
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=UP_TIMEOUT_S,
                check=False,
            )
            started = started_file.exists() and started_file.read_text().strip() == "1"
        exports = parse_exports(proc.stdout)
        if proc.returncode != 0 or not {"KUBECONFIG", "KUBESAGA_AMQP_URL"} <= exports.keys():
            raise SystemExit(
                f"`hack/testenv.sh up` failed (exit {proc.returncode}); see its messages above. "
                "To use a platform you already have: KUBESAGA_USE_EXISTING=1 KUBECONFIG=... "
                "KUBESAGA_AMQP_URL=..."
            )
        platform = Platform(
            exports["KUBECONFIG"],
            exports["KUBESAGA_AMQP_URL"],
            started_here=started,
            state_dir=state_dir or str(Path.home() / ".cache" / "kubesaga" / "testenv"),
        )
    os.environ["KUBECONFIG"] = platform.kubeconfig
    os.environ["KUBESAGA_AMQP_URL"] = platform.amqp_url
    platform.pids = platform_pids(platform)
    return platform


def release(platform: Platform) -> None:
    if platform.started_here:
        subprocess.run(
            [str(TESTENV), "down"], stdin=subprocess.DEVNULL, timeout=DOWN_TIMEOUT_S, check=False
        )


def _pidfile(state_dir: str | None, name: str) -> list[int]:
    if not state_dir:
        return []
    path = Path(state_dir) / "pids" / f"{name}.pid"
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [pid] if Path(f"/proc/{pid}").exists() else []


def platform_pids(platform: Platform) -> dict[str, list[int]]:
    """PIDs of kube-apiserver, etcd and RabbitMQ on this machine (for their CPU share)."""
    pids = {
        "apiserver": _pidfile(platform.state_dir, "kube-apiserver"),
        "etcd": _pidfile(platform.state_dir, "etcd"),
        "rabbitmq": _pidfile(platform.state_dir, "rabbitmq"),
    }
    if not pids["apiserver"]:
        try:
            cfg = yaml.safe_load(Path(platform.kubeconfig).read_text())
            port = urlparse(cfg["clusters"][0]["cluster"]["server"]).port
        except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
            port = None
        if port:
            pids["apiserver"] = find_processes("kube-apiserver", f"--secure-port={port}")
    if not pids["etcd"] and pids["apiserver"]:
        args = process_cmdline(pids["apiserver"][0])
        servers = [a.split("=", 1)[1] for a in args if a.startswith("--etcd-servers=")]
        if servers:
            port = urlparse(servers[0].split(",")[0]).port
            pids["etcd"] = find_processes("etcd", f":{port}")
    if not pids["rabbitmq"]:
        port = urlparse(platform.amqp_url).port
        found = [
            pid
            for pid in find_processes("beam.smp")
            if any(str(port) in arg for arg in process_cmdline(pid))
        ]
        pids["rabbitmq"] = found or []
    return {name: found for name, found in pids.items() if found}


async def apiserver_version(api: client.ApiClient) -> str:
    try:
        info = await client.VersionApi(api).get_code()
    except ApiException:
        return "unknown"
    return str(info.git_version)


async def create_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"kubesaga.io/bench": "true"})
        )
    )


DELETE_TIMEOUT_S = 600.0
"""A collection delete of 10,000+ Sagas takes longer than one ordinary request's bound."""


async def delete_namespace(api: client.ApiClient, name: str) -> None:
    """Delete the namespace's Sagas (one collection delete) and the namespace itself.

    There may be no kube-controller-manager (envtest-style platform), so the namespace's objects
    are not garbage-collected: the Sagas are deleted explicitly first.
    """
    from kubesaga.models import API_GROUP, API_VERSION, PLURAL

    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    try:
        await custom.delete_collection_namespaced_custom_object(
            API_GROUP, API_VERSION, name, PLURAL, _request_timeout=DELETE_TIMEOUT_S
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
    try:
        await core.delete_collection_namespaced_event(name, _request_timeout=DELETE_TIMEOUT_S)
    except ApiException as exc:
        if exc.status != 404:
            raise
    try:
        await core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
