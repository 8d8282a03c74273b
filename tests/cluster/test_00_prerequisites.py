"""``hack/cluster.sh`` says what is missing in one clear sentence instead of failing half way."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster.kube import CLUSTER_SH


def _run(
    *args: str, env: dict[str, str], user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), str(CLUSTER_SH), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_without_root_it_says_so(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the script as another user")
    env = dict(os.environ, HOME=str(tmp_path), KUBESAGA_CLUSTER_DIR=str(tmp_path / "state"))
    proc = _run("up", env=env, user=[setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "cluster: error: the one-node cluster needs root" in proc.stderr
    assert not (tmp_path / "state").exists()


def test_without_go_and_no_cached_binaries_it_says_what_to_install(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        KUBESAGA_BIN_DIR=str(tmp_path / "bin"),
        GO=str(tmp_path / "no-go"),
        KUBESAGA_CLUSTER_DIR=str(tmp_path / "state"),
    )
    proc = _run("build", env=env)
    assert proc.returncode == 1
    assert "Go is not installed, and kubelet v1.34.4 is not cached yet" in proc.stderr
    assert "https://go.dev/doc/install" in proc.stderr
    assert not (tmp_path / "bin").exists() or not any((tmp_path / "bin").iterdir())
