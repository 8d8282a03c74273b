"""One way to follow Kubernetes objects: list, then watch from the list's resourceVersion.

Every watch loop (client, demo, tests) goes through here, so each survives what the apiserver
does to watches: 410 Gone (the resourceVersion fell out of the watch cache, after a long wait or
an apiserver restart: list again), 429 Too Many Requests (a resource's storage is still
initialising just after its CRD was created: wait Retry-After), and a watch the server ends after
``timeout_seconds`` (watch again from the last version seen), and the apiserver restarting or
the network failing under it: a 5xx, a connection refused or reset, or a watch that went silent
(no event and no bookmark for ``idle_timeout``) is watched again from the last version seen after
a short backoff, so no event is lost and nothing is listed again. Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.store.watch_rules import (
    IDLE_TIMEOUT_S,
    WATCH_TIMEOUT_S,
    Recovery,
    listed_items,
    reconnect_backoff,
    recovery,
)
from kubesaga.store.watch_rules import resource_version as version_of
from kubesaga.store.watch_rules import retry_after as retry_after_header

T = TypeVar("T")

_CONNECTION_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)

ListFn = Callable[..., Awaitable[Any]]


async def follow(
    list_fn: ListFn,
    *args: Any,
    resource_version: str | None = None,
    watch_timeout: int = WATCH_TIMEOUT_S,
    idle_timeout: float = IDLE_TIMEOUT_S,
    **kwargs: Any,
) -> AsyncGenerator[tuple[str, Any], None]:
    """Yield ``(type, object)``: the listed objects as ``ADDED``, then every change, for ever.

    ``list_fn(*args, **kwargs)`` is a list call of kubernetes_asyncio (typed, or a custom
    objects call returning dicts). With ``resource_version`` (of a copy the caller already has)
    watching starts there without a first list. After a 410 the objects are listed again and
    yielded as ``ADDED``: a caller sees the current state, maybe twice, never a gap. Bound it
    with ``asyncio.timeout``; close it (``contextlib.aclosing``) when done, or use ``watch_until``.
    """
    version = resource_version
    failures = 0
    while True:
        try:
            if version is None:
                listing = await list_fn(*args, **kwargs)
                for item in listed_items(listing):
                    yield "ADDED", item
                version = version_of(listing)
            stream = watch.Watch().stream(
                list_fn,
                *args,
                resource_version=version,
                timeout_seconds=watch_timeout,
                allow_watch_bookmarks=True,
                _request_timeout=aiohttp.ClientTimeout(
                    total=watch_timeout + idle_timeout, sock_read=idle_timeout
                ),
                **kwargs,
            )
            async with stream:
                async for event in stream:
                    failures = 0
                    if event["type"] == "BOOKMARK":
                        version = version_of(event["raw_object"]) or version
                        continue
                    obj = event["object"]
                    version = version_of(obj) or version
                    yield event["type"], obj
            failures = 0
        except ApiException as error:
            match recovery(error.status):
                case Recovery.RELIST:
                    version = None
                case Recovery.BACK_OFF:
                    await asyncio.sleep(retry_after(error))
                case Recovery.RETRY:
                    await asyncio.sleep(reconnect_backoff(failures))
                    failures += 1
                case Recovery.RAISE:
                    raise
        except _CONNECTION_ERRORS:
            # Refused, reset or silent: the apiserver restarts or the network failed. The
            # version is kept, so the next watch starts where this one stopped.
            await asyncio.sleep(reconnect_backoff(failures))
            failures += 1


async def watch_until(
    list_fn: ListFn,
    *args: Any,
    check: Callable[[str, Any], T | None],
    resource_version: str | None = None,
    **kwargs: Any,
) -> T:
    """Follow the objects until ``check(type, object)`` returns something; return that."""
    events = follow(list_fn, *args, resource_version=resource_version, **kwargs)
    async with contextlib.aclosing(events):
        async for kind, obj in events:
            found = check(kind, obj)
            if found is not None:
                return found
    raise AssertionError("follow() ended")  # it never does


class CrdNotAccepted(RuntimeError):
    """The apiserver refused a CustomResourceDefinition's names (NamesAccepted=False)."""


async def wait_crd_established(api: Any, name: str, generation: int) -> None:
    """Watch the CRD ``name`` until the apiserver serves (at least) ``generation`` of it.

    ``api`` is an ``ApiextensionsV1Api``; callers bound the wait with their own timeout.
    """

    def established(kind: str, crd: Any) -> bool | None:
        if kind == "DELETED" or crd.metadata.generation < generation or crd.status is None:
            return None
        conditions = {c.type: c for c in (crd.status.conditions or [])}
        names = conditions.get("NamesAccepted")
        if names is not None and names.status == "False":
            raise CrdNotAccepted(f"the {name} CRD's names were not accepted: {names.message}")
        done = conditions.get("Established")
        return True if done is not None and done.status == "True" else None

    await watch_until(
        api.list_custom_resource_definition,
        check=established,
        field_selector=f"metadata.name={name}",
    )


def retry_after(error: ApiException) -> float:
    """The server's Retry-After (seconds), bounded; 1 s when it gave none."""
    return retry_after_header(error.headers)
