"""The images: one Dockerfile for operator and workers, and the examples' image built FROM it.

Both are linted by hadolint and checked by reading them for the facts the Helm chart, the image
build and ``hack/e2e-kind.sh`` rely on (entry point, non-root numeric user with a passwd entry,
port, the package only in the production image, the examples in theirs). The images themselves
are built and run by the cluster tier.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
EXAMPLES_DOCKERFILE = REPO_ROOT / "examples" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
CHART = REPO_ROOT / "helm" / "kubesaga"


def _instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
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


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, EXAMPLES_DOCKERFILE], ids=["image", "examples"])
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it comes with the dev extras, pip install -e '.[dev]'")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)],
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


def test_base_image_is_a_build_argument_defaulting_to_the_upstream_slim_python() -> None:
    instructions = _instructions()
    assert instructions[0] == ("ARG", "PYTHON_IMAGE=python:3.12-slim-bookworm")
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    assert all(args.startswith("${PYTHON_IMAGE}") for args in stages), stages


def test_runs_only_commands_both_bases_have() -> None:
    """The upstream image has `python` in /usr/local, Debian's python3 has it through
    python-is-python3: both have `python -m venv`; `passwd` (groupadd, useradd) is in minbase."""
    allowed = {"python", "/opt/venv/bin/pip", "groupadd", "useradd"}
    for keyword, args in _instructions():
        if keyword == "RUN":
            commands = {part.split()[0] for part in args.split("&&")}
            assert commands <= allowed, commands - allowed


def test_the_users_uid_has_a_passwd_entry_with_no_login_and_no_home() -> None:
    """kopf (getpass.getuser) and other libraries look the UID up: an unknown UID crashes them."""
    uid, _, gid = next(
        args for keyword, args in reversed(_final_stage()) if keyword == "USER"
    ).partition(":")
    runs = " ".join(args for keyword, args in _final_stage() if keyword == "RUN")
    assert f"groupadd --system --gid {gid} kubesaga" in runs
    useradd = re.search(r"useradd (.*?) kubesaga\b", runs)
    assert useradd is not None, runs
    options = useradd.group(1).split()
    assert options[options.index("--uid") + 1] == uid
    assert options[options.index("--gid") + 1] == gid
    assert options[options.index("--shell") + 1] == "/usr/sbin/nologin"
    assert "--no-create-home" in options


def test_the_charts_pods_run_as_the_images_user() -> None:
    uid, _, gid = next(
        args for keyword, args in reversed(_final_stage()) if keyword == "USER"
    ).partition(":")
    pod = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["podSecurityContext"]
    assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == (uid, gid)


def test_the_production_image_carries_the_package_only() -> None:
    copied = [args for keyword, args in _instructions() if keyword in ("COPY", "ADD")]
    assert not [args for args in copied if "examples" in args], copied


def test_examples_image_is_built_from_the_production_image_and_adds_the_examples() -> None:
    instructions = _instructions(EXAMPLES_DOCKERFILE)
    version = _project_version()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == version
    assert instructions[0] == ("ARG", f"KUBESAGA_IMAGE=kubesaga:{version}")
    assert [args for keyword, args in instructions if keyword == "FROM"] == ["${KUBESAGA_IMAGE}"]
    assert ("COPY", "examples/ /app/examples/") in instructions
    assert "USER" not in dict(instructions), "it keeps the production image's non-root user"
    assert "ENTRYPOINT" not in dict(instructions) and "CMD" not in dict(instructions)


def _project_version() -> str:
    return str(
        tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    )


def test_every_copied_source_exists_and_is_not_ignored() -> None:
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert "*" in ignored, ".dockerignore should start from nothing and list what is sent"
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    instructions = _instructions() + _instructions(EXAMPLES_DOCKERFILE)
    for keyword, args in instructions:
        if keyword != "COPY" or args.startswith("--from="):
            continue
        *sources, _destination = args.split()
        for source in sources:
            name = source.rstrip("/")
            assert name in allowed, f"{source} is excluded by .dockerignore"
            assert (REPO_ROOT / name).exists(), f"{source} is copied but missing from the repo"
