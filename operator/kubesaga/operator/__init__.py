"""The operator: kopf watch + result consumer around the pure engine."""

from kubesaga.operator.main import run_operator
from kubesaga.operator.orchestrator import Orchestrator

__all__ = ["Orchestrator", "run_operator"]
