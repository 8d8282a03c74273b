"""The demo's platform: the local one from ``hack/testenv.sh``, or the user's own.

``hack/testenv.sh up`` prints its progress (and, on a machine without Go or cached binaries, one
message saying what to install) on stderr, which the demo passes straight to the terminal; its
stdout carries only the ``export`` lines read here.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kubesaga.demo.examples import DemoError

TESTENV_VARS = (
    "KUBESAGA_TESTENV_DIR",
    "KUBESAGA_TESTENV_ETCD_PORT",
    "KUBESAGA_TESTENV_APISERVER_PORT",
    "KUBESAGA_TESTENV_AMQP_PORT",
    "KUBESAGA_TESTENV_EPMD_PORT",
)


@dataclass(frozen=True)
class Platform:
    kubeconfig: str
    amqp_url: str
    started_here: bool
    """Whether this demo started it (and so stops it, unless --keep)."""
    testenv: Path | None
    """The script that started it, or None for the user's own cluster and broker."""

    def down_command(self) -> str:
        """The shell command that stops it (with the same KUBESAGA_TESTENV_* settings)."""
        settings = [f"{k}={shlex.quote(os.environ[k])}" for k in TESTENV_VARS if k in os.environ]
        return " ".join([*settings, str(self.testenv or "hack/testenv.sh"), "down"])


def use_existing() -> Platform | None:
    """``KUBESAGA_USE_EXISTING=1`` with KUBECONFIG and KUBESAGA_AMQP_URL: the user's platform."""
    if os.environ.get("KUBESAGA_USE_EXISTING") != "1":
        return None
    kubeconfig = os.environ.get("KUBECONFIG", "")
    amqp_url = os.environ.get("KUBESAGA_AMQP_URL", "")
    missing = [n for n, v in (("KUBECONFIG", kubeconfig), ("KUBESAGA_AMQP_URL", amqp_url)) if not v]
    if missing:
        raise DemoError(f"KUBESAGA_USE_EXISTING=1 needs {' and '.join(missing)} to be set")
    return Platform(kubeconfig, amqp_url, started_here=False, testenv=None)


async def start_local(testenv: Path) -> Platform:
    """Run ``hack/testenv.sh up`` (reusing what already runs); stderr goes to the terminal."""
    with tempfile.TemporaryDirectory(prefix="kubesaga-demo-") as tmp:
        started_file = Path(tmp) / "started"
        env = dict(os.environ, KUBESAGA_TESTENV_STARTED_FILE=str(started_file))
        env.pop("KUBESAGA_USE_EXISTING", None)
        proc = await asyncio.create_subprocess_exec(
            str(testenv),
            "up",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        started = started_file.exists() and started_file.read_text().strip() == "1"
    exports = parse_exports(out.decode(errors="replace"))
    if proc.returncode != 0 or not {"KUBECONFIG", "KUBESAGA_AMQP_URL"} <= exports.keys():
        raise DemoError(
            f"the local platform did not start ({testenv.name} up exited {proc.returncode}; "
            "its message is above). To use a cluster and broker you already have instead, set "
            "KUBESAGA_USE_EXISTING=1, KUBECONFIG and KUBESAGA_AMQP_URL."
        )
    return Platform(exports["KUBECONFIG"], exports["KUBESAGA_AMQP_URL"], started, testenv)


async def stop_local(platform: Platform) -> None:
    """``hack/testenv.sh down``: stops exactly the processes ``up`` started."""
    if platform.testenv is None:
        return
    proc = await asyncio.create_subprocess_exec(
        str(platform.testenv), "down", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    await proc.wait()


def parse_exports(text: str) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines printed by ``hack/testenv.sh up``."""
    exports: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            exports[name] = value
    return exports
