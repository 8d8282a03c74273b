"""kubesaga benchmark harness: ``python -m bench`` (from the repository root)."""
