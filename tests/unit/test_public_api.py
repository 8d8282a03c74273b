"""The public API is small and deliberate: adding or removing a name is a visible change.

What the docs and examples import must be exported (``__all__``), and importing the worker SDK
must stay cheap: no Kubernetes client, no kopf.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kubesaga
import kubesaga.worker
import kubesaga.worker.testing

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

WORKER_API = [
    "CommandKind",
    "ErrorInfo",
    "Handler",
    "JsonObject",
    "PermanentError",
    "Result",
    "ResultStatus",
    "RetryableError",
    "SagaError",
    "Settings",
    "StepContext",
    "Worker",
]


def test_public_names_are_pinned() -> None:
    assert sorted(kubesaga.__all__) == sorted(
        [
            "ApprovalRefused",
            "AsyncSagaClient",
            "AsyncSagaHandle",
            "PermanentError",
            "RetryPolicy",
            "RetryableError",
            "Saga",
            "SagaAlreadyExists",
            "SagaApiError",
            "SagaClient",
            "SagaClientError",
            "SagaError",
            "SagaHandle",
            "SagaInvalid",
            "SagaNotFound",
            "SagaPhase",
            "SagaSpec",
            "SagaStatus",
            "SagaNotRedrivable",
            "SagaTimeout",
            "StepContext",
            "StepPhase",
            "StepSpec",
            "Worker",
            "__version__",
        ]
    )
    for name in kubesaga.__all__:
        assert hasattr(kubesaga, name), name
    assert set(kubesaga._WHERE) == set(kubesaga.__all__) - {"__version__"}


def test_worker_sdk_names_are_pinned() -> None:
    assert sorted(kubesaga.worker.__all__) == WORKER_API
    assert sorted(kubesaga.worker.testing.__all__) == ["make_context", "run_handler"]
    for module in (kubesaga.worker, kubesaga.worker.testing):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_workers_methods_take_and_return_only_public_types() -> None:
    """``execute`` and ``registration`` exposed Command and Registration: they are private now."""
    public = {name for name in vars(kubesaga.worker.Worker) if not name.startswith("_")}
    assert public == {"actions", "step", "compensation", "run"}


def _snippets() -> list[tuple[str, str]]:
    """(where, Python code) of every example handler and every python block of the docs."""
    found = [
        (str(p.relative_to(REPO_ROOT)), p.read_text()) for p in REPO_ROOT.glob("examples/*/*.py")
    ]
    for doc in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            found.append((f"{doc.relative_to(REPO_ROOT)} block {i + 1}", block))
    docstring = kubesaga.worker.testing.__doc__ or ""
    found.append(
        (
            "kubesaga.worker.testing docstring",
            "\n".join(line.strip() for line in docstring.splitlines() if line.startswith("    ")),
        )
    )
    return found


def test_everything_the_docs_and_examples_import_from_kubesaga_is_exported() -> None:
    modules = {
        "kubesaga": kubesaga,
        "kubesaga.worker": kubesaga.worker,
        "kubesaga.worker.testing": kubesaga.worker.testing,
    }
    missing = []
    imported: set[str] = set()
    for where, code in _snippets():
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                for alias in node.names:
                    imported.add(alias.name)
                    if alias.name not in modules[node.module].__all__:
                        missing.append(f"{where}: from {node.module} import {alias.name}")
    assert not missing, "\n".join(missing)
    # the names the testing docs use are among them
    assert {"ResultStatus", "run_handler", "StepContext", "Worker"} <= imported


def test_docs_use_the_new_step_context_names() -> None:
    old = re.compile(r"ctx\.outputs?\b")
    stale = [where for where, code in _snippets() if old.search(code)]
    assert not stale, stale


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_importing_the_worker_sdk_loads_no_kubernetes_client_and_no_kopf() -> None:
    loaded = _modules_after("import kubesaga.worker, kubesaga.worker.testing")
    assert not loaded & {"kubernetes", "kubernetes_asyncio", "kopf"}, loaded
    assert not loaded & {"aio_pika", "aiohttp"}, "the broker client loads when run() starts"


def test_importing_kubesaga_loads_nothing_until_a_name_is_used() -> None:
    loaded = _modules_after("import kubesaga")
    assert not loaded & {"kubernetes", "kubernetes_asyncio", "pydantic", "kopf"}, loaded


def test_importing_the_sdk_does_not_import_kopf() -> None:
    assert "kopf" not in _modules_after("import kubesaga; kubesaga.SagaClient; kubesaga.Worker")


def test_the_client_errors_and_handles_load_no_kubernetes_client() -> None:
    """A web app catching ``SagaNotFound`` pays for no Kubernetes package until a client is
    used; each client loads only its own package."""
    light = _modules_after("from kubesaga import SagaNotFound, SagaHandle, AsyncSagaHandle")
    assert not light & {"kubernetes", "kubernetes_asyncio"}, light
    assert "kubernetes" in _modules_after("from kubesaga import SagaClient")
    assert "kubernetes_asyncio" in _modules_after("from kubesaga import AsyncSagaClient")
