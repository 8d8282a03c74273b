"""The operator and the example workers as ordinary ``python -m kubesaga ...`` processes.

Each runs in its own session with its output in a log file, so ``--keep`` can leave it running
after the demo exits (a pipe to the demo would break then) and a Ctrl-C in the terminal reaches
only the demo, which stops them in order. The demo learns that one exited from a pidfd (an event,
not a poll), so a worker that fails to import its handlers ends the demo at once with its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT_S = 20.0


@dataclass
class Child:
    """One process the demo started."""

    name: str
    args: Sequence[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    exited: asyncio.Future[int] = field(init=False)

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubesaga", *self.args],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._watch_exit(loop)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _watch_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.proc is not None
        try:
            fd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):  # no pidfd (kernel < 5.3): no early-exit notice
            return

        def on_exit() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if not self.exited.done():
                assert self.proc is not None
                self.exited.set_result(self.proc.wait())

        loop.add_reader(fd, on_exit)
        self._fd = fd

    def detach(self) -> None:
        """Stop watching (``--keep``): the process runs on after the demo exits."""
        fd = getattr(self, "_fd", None)
        if fd is not None and not self.exited.done():
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
        if not self.exited.done():
            self.exited.cancel()

    async def stop(self) -> int | None:
        """SIGTERM (graceful: workers finish or requeue their commands), SIGKILL if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT_S)
        self.detach()
        return self.proc.returncode

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def child_env(kubeconfig: str, amqp_url: str, namespace: str, queue_prefix: str) -> dict[str, str]:
    """Configuration shared by the operator and the workers (KUBESAGA_* settings).

    The results queue is the demo's own, so an operator of another installation on the same
    broker never takes the demo's results. The dead-letter queue keeps its default name: every
    action queue is declared with it as an argument, and RabbitMQ refuses to declare an existing
    queue with different arguments.
    """
    env = dict(os.environ)
    env.pop("KUBESAGA_USE_EXISTING", None)
    env.update(
        KUBECONFIG=kubeconfig,
        KUBESAGA_AMQP_URL=amqp_url,
        KUBESAGA_NAMESPACES=namespace,
        KUBESAGA_RESULTS_QUEUE=f"{queue_prefix}.results",
        KUBESAGA_METRICS_PORT="0",
        KUBESAGA_LOG_LEVEL="INFO",
        KUBESAGA_LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    return env
