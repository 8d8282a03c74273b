"""``store.watching.follow`` for the synchronous client, on the official ``kubernetes`` package.

The same list-then-watch loop with the same rules (``store.watch_rules``: 410 Gone lists again,
429 waits Retry-After, a watch the server ends is resumed from the last version seen); only the
transport differs. Blocking code has no ``asyncio.timeout``, so a deadline bounds it here: each
watch request asks the server to end it by the deadline, and the generator ends when it passes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from kubesaga.store.watch_rules import (
    WATCH_TIMEOUT_S,
    Recovery,
    listed_items,
    reconnect_backoff,
    recovery,
    retry_after,
)
from kubesaga.store.watch_rules import resource_version as version_of

CONNECT_TIMEOUT_S = 10.0
READ_SLACK_S = 30.0
"""A watch connection silent this much longer than the server's own timeout is dead."""


def follow(
    list_fn: Callable[..., Any],
    *args: Any,
    resource_version: str | None = None,
    deadline: float | None = None,
    **kwargs: Any,
) -> Iterator[tuple[str, Any]]:
    """Yield ``(type, object)``: listed objects as ``ADDED``, then every change, until ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value (None: for ever); the generator simply ends
    when it has passed, at most about a second late. Objects are the raw dicts (custom objects).
    """
    version = resource_version
    failures = 0
    while True:
        window = _window(deadline)
        if window is not None and window <= 0:
            return
        server_timeout = WATCH_TIMEOUT_S if window is None else min(WATCH_TIMEOUT_S, window)
        request_timeout = (CONNECT_TIMEOUT_S, server_timeout + READ_SLACK_S)
        try:
            if version is None:
                listing = list_fn(*args, _request_timeout=request_timeout, **kwargs)
                for item in listed_items(listing):
                    yield "ADDED", item
                version = version_of(listing)
            watching: Any = watch  # untyped in the package
            stream = watching.Watch().stream(
                list_fn,
                *args,
                resource_version=version,
                timeout_seconds=server_timeout,
                _request_timeout=request_timeout,
                **kwargs,
            )
            for event in stream:
                obj = event["raw_object"]
                version = version_of(obj) or version
                yield event["type"], obj
        except ApiException as error:
            match recovery(error.status):
                case Recovery.RELIST:
                    version = None
                case Recovery.BACK_OFF | Recovery.RETRY as rule:
                    # Server-directed back-off (429 Retry-After) or the apiserver's storage
                    # coming back (5xx), bounded by the deadline; not a poll.
                    if rule is Recovery.BACK_OFF:
                        pause = retry_after(error.headers)
                    else:
                        pause = reconnect_backoff(failures)
                        failures += 1
                    window = _window(deadline)
                    time.sleep(pause if window is None else max(0.0, min(pause, window)))
                case Recovery.RAISE:
                    raise


def _window(deadline: float | None) -> int | None:
    """Whole seconds left until ``deadline`` (rounded up: the server counts in seconds)."""
    if deadline is None:
        return None
    return math.ceil(deadline - time.monotonic())
