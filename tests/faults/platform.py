"""Restart parts of the platform in place, and point a process at a proxy instead.

The restarts call ``hack/testenv.sh`` (the platform's owner), so a test reaches the same
processes by the same PIDs whatever started them; the ``KUBESAGA_TESTENV_*`` variables of the
test session choose the instance. Each returns how long the part was away (seconds).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTENV = REPO_ROOT / "hack" / "testenv.sh"
RESTART_TIMEOUT_S = 120

Part = Literal["apiserver", "etcd", "control-plane", "broker"]


class RestartFailed(RuntimeError):
    pass


async def restart(part: Part) -> float:
    """``hack/testenv.sh restart-<part>``: stop it, start it with its data, wait until ready."""
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(TESTENV),
        f"restart-{part}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), RESTART_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RestartFailed(f"restart-{part} took more than {RESTART_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        raise RestartFailed(f"restart-{part} failed: {err.decode(errors='replace')}")
    for line in err.decode(errors="replace").splitlines():  # what stopped and started, and when
        print(line, file=sys.stderr)
    return time.monotonic() - t0


def amqp_address(amqp_url: str) -> tuple[str, int]:
    url = urlsplit(amqp_url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def proxied_amqp_url(amqp_url: str, port: int, reconnect_interval: float = 0.2) -> str:
    """``amqp_url`` pointed at the proxy's ``port``, with quick reconnects."""
    url = urlsplit(amqp_url)
    netloc = url.netloc.rsplit(":", 1)[0] + f":{port}"
    query = f"reconnect_interval={reconnect_interval}"
    return urlunsplit(url._replace(netloc=netloc, query=query))


def apiserver_address(kubeconfig: str) -> tuple[str, int]:
    config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    assert server.hostname is not None and server.port is not None
    return server.hostname, server.port


def proxied_kubeconfig(kubeconfig: str, port: int, path: Path) -> str:
    """The same credentials, with the apiserver's address replaced by the proxy's.

    The proxy listens on 127.0.0.1, which the platform's serving certificate names, so TLS
    verifies as before.
    """
    config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    for cluster in config["clusters"]:
        server = urlsplit(cluster["cluster"]["server"])
        cluster["cluster"]["server"] = urlunsplit(server._replace(netloc=f"127.0.0.1:{port}"))
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)
