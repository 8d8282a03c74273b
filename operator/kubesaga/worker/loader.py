"""Finding the ``Worker`` that ``kubesaga worker package.module:attr`` names."""

from __future__ import annotations

import importlib

from kubesaga.worker.app import Worker


class WorkerLoadError(ValueError):
    """The target does not name an importable ``Worker``."""


def load_worker(target: str) -> Worker:
    """Import ``package.module`` and return its ``attr`` (dotted paths allowed after the colon)."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise WorkerLoadError(f"expected 'package.module:attribute', got {target!r}")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise WorkerLoadError(f"cannot import module {module_name!r}: {exc}") from exc
        raise  # the module exists but one of its own imports is missing: show the traceback
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise WorkerLoadError(
                f"module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not isinstance(obj, Worker):
        raise WorkerLoadError(
            f"{target!r} is a {type(obj).__name__}, not a kubesaga Worker; "
            "point at the object created with Worker(...)"
        )
    return obj
