"""The image: one Dockerfile for the operator and the workers, linted by hadolint.

No container engine runs on our machines, so the image is checked by reading it: hadolint for the
conventions, and the facts the Helm chart and ``hack/e2e-kind.sh`` rely on (entry point, non-root
numeric user, port, where the examples are copied).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    pairs = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it comes with the dev extras, pip install -e '.[dev]'")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_build_is_multi_stage_and_copies_only_the_venv_into_the_final_image() -> None:
    stages = [args for keyword, args in _instructions() if keyword == "FROM"]
    assert len(stages) >= 2
    copies = [args for keyword, args in _final_stage() if keyword == "COPY"]
    assert any(args.startswith("--from=") and "/opt/venv" in args for args in copies)


def test_final_image_runs_as_a_numeric_non_root_user() -> None:
    users = [args for keyword, args in _final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)


def test_entrypoint_is_kubesaga_and_the_default_command_runs_the_operator() -> None:
    stage = dict(_final_stage())
    assert stage["ENTRYPOINT"] == '["kubesaga"]'
    assert stage["CMD"] == '["operator"]'
    assert stage["EXPOSE"] == "8080"


def test_examples_are_copied_where_the_chart_and_e2e_script_expect_them() -> None:
    copies = [args for keyword, args in _final_stage() if keyword == "COPY"]
    assert "examples/ /app/examples/" in copies


def test_every_copied_source_exists_and_is_not_ignored() -> None:
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert "*" in ignored, ".dockerignore should start from nothing and list what is sent"
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    for keyword, args in _instructions():
        if keyword != "COPY" or args.startswith("--from="):
            continue
        *sources, _destination = args.split()
        for source in sources:
            name = source.rstrip("/")
            assert name in allowed, f"{source} is excluded by .dockerignore"
            assert (REPO_ROOT / name).exists(), f"{source} is copied but missing from the repo"
