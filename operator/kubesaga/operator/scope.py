"""Results are accepted only for sagas in the namespaces this operator watches.

An operator limited to namespaces (``KUBESAGA_NAMESPACES``, the Helm chart's Role-only RBAC) must
not act on sagas elsewhere, even when its credentials could reach them: a result naming another
namespace would otherwise make it read, write and dispatch for a saga it does not own. Such a
result is dead-lettered with the reason. Patterns follow kopf's: globs, and ``!glob`` for "all
but".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from fnmatch import fnmatchcase

from kubesaga.broker import Outcome
from kubesaga.models import Result

ResultHandler = Callable[[Result], Awaitable[Outcome]]


def watches(namespace: str, patterns: Sequence[str]) -> bool:
    """Whether ``namespace`` is watched; no patterns means every namespace (cluster-wide)."""
    if not patterns:
        return True
    return any(
        not fnmatchcase(namespace, p[1:].strip())
        if p.startswith("!")
        else fnmatchcase(namespace, p)
        for p in patterns
    )


def only_watched(
    handler: ResultHandler, patterns: Sequence[str], on_refused: Callable[[], None]
) -> ResultHandler:
    """``handler`` for results in watched namespaces; a dead-letter outcome for the others."""
    if not patterns:
        return handler
    listed = ", ".join(patterns)

    async def scoped(result: Result) -> Outcome:
        if watches(result.saga.namespace, patterns):
            return await handler(result)
        on_refused()
        return Outcome.dead_letter(
            f"namespace {result.saga.namespace!r} is not watched by this operator ({listed})"
        )

    return scoped
