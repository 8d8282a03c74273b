"""The public API is small and deliberate: adding or removing a name is a visible change."""

from __future__ import annotations

import subprocess
import sys

import kubesaga


def test_public_names_are_pinned() -> None:
    assert sorted(kubesaga.__all__) == sorted(
        [
            "PermanentError",
            "RetryPolicy",
            "RetryableError",
            "Saga",
            "SagaClient",
            "SagaError",
            "SagaPhase",
            "SagaSpec",
            "SagaStatus",
            "StepContext",
            "StepPhase",
            "StepSpec",
            "Worker",
            "__version__",
        ]
    )
    for name in kubesaga.__all__:
        assert hasattr(kubesaga, name), name


def test_importing_the_sdk_does_not_import_kopf() -> None:
    code = "import sys, kubesaga; sys.exit(1 if 'kopf' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
