"""The ``kubesaga ui`` web server: static pages, server-sent events and the saga actions.

aiohttp, already a dependency (the probes serve with it), is all it needs: three JSON/SSE
endpoints and files. Pages are static files filled in by scripts from the same origin, so the
Content-Security-Policy can forbid every inline script and style, and everything from the
cluster reaches the page as JSON put into ``textContent``, never parsed as HTML.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.client import AsyncSagaClient
from kubesaga.client.errors import (
    ApprovalRefused,
    SagaApiError,
    SagaClientError,
    SagaNotFound,
    SagaNotRedrivable,
)
from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.store import SagaObject
from kubesaga.ui import offers, views
from kubesaga.ui.feed import Change, Closed, SagaFeed, Subscription

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("kubesaga.ui") / "static"))
HEARTBEAT_S = 15.0
PERMISSION_TTL_S = 30.0

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ACTION_HEADER = "X-Kubesaga-Action"
"""Required on POSTs: a header a cross-site form cannot set (CSRF)."""

FEED = web.AppKey("feed", SagaFeed)
API = web.AppKey("api", client.ApiClient)
LOOPBACK_ONLY = web.AppKey("loopback_only", bool)


class Permissions:
    """Whether the caller may patch Sagas in a namespace (SelfSubjectAccessReview), cached.

    ``read_only`` turns actions off whatever RBAC says (the chart's default).
    """

    def __init__(self, api: client.ApiClient, read_only: bool) -> None:
        self._api = client.AuthorizationV1Api(api)
        self.read_only = read_only
        self._cache: dict[str, tuple[float, bool]] = {}

    async def can_compensate(self, namespace: str) -> bool:
        if self.read_only:
            return False
        cached = self._cache.get(namespace)
        if cached is not None and time.monotonic() - cached[0] < PERMISSION_TTL_S:
            return cached[1]
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    group=API_GROUP, resource=PLURAL, verb="patch", namespace=namespace
                )
            )
        )
        try:
            answer = await self._api.create_self_subject_access_review(review)
            allowed = bool(answer.status.allowed)
        except ApiException:
            allowed = False
        self._cache[namespace] = (time.monotonic(), allowed)
        return allowed


PERMISSIONS = web.AppKey("permissions", Permissions)


def make_app(
    api: client.ApiClient,
    namespace: str | None = None,
    *,
    read_only: bool = False,
    loopback_only: bool = True,
) -> web.Application:
    """The application; its one watch starts with it and stops on cleanup."""
    objects = client.CustomObjectsApi(api)
    if namespace:
        feed = SagaFeed(
            objects.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL
        )
    else:
        feed = SagaFeed(objects.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL)
    app = web.Application(middlewares=[_guard])
    app[FEED], app[API] = feed, api
    app[PERMISSIONS] = Permissions(api, read_only)
    app[LOOPBACK_ONLY] = loopback_only
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/saga/{namespace}/{name}", _page("saga.html"))
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/api/stream", list_stream)
    app.router.add_get("/api/sagas/{namespace}/{name}/stream", detail_stream)
    app.router.add_get("/api/sagas/{namespace}/{name}/events", saga_events)
    app.router.add_post("/api/sagas/{namespace}/{name}/{action:" + "|".join(ACTIONS) + "}", act)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    app[FEED].start()


async def _stop(app: web.Application) -> None:
    await app[FEED].close()  # ends every event stream, so shutdown does not wait for them


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Security headers on every answer; on loopback, refuse foreign Host names (DNS
    rebinding would otherwise let any web page drive the caller's kubeconfig)."""
    if request.app[LOOPBACK_ONLY] and not _local_host(request.host):
        return web.Response(
            status=421, text="this server answers to localhost only\n", headers=SECURITY_HEADERS
        )
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response  # type: ignore[no-any-return]


def _local_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name)

    return page


async def _event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, kind: str, data: Any) -> None:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    await response.write(f"event: {kind}\ndata: {text}\n\n".encode())


async def list_stream(request: web.Request) -> web.StreamResponse:
    """The saga list: a ``snapshot`` of every row, then ``upsert`` and ``delete`` changes."""
    feed = request.app[FEED]
    response = await _event_stream(request)
    with contextlib.suppress(ConnectionResetError):  # the page went away
        await _follow_list(feed, response)
    return response


async def _follow_list(feed: SagaFeed, response: web.StreamResponse) -> None:
    async with feed.subscribe() as subscription:
        rows = [views.row(s) for s in subscription.snapshot]
        await _send(response, "snapshot", {"sagas": rows, "error": feed.error})
        while True:
            change = await _next(subscription, response)
            if change is None:
                break
            if change.saga is None:
                await _send(response, "status", {"error": feed.error})
            elif change.kind == "upsert":
                await _send(response, "upsert", views.row(change.saga))
            else:
                await _send(response, "delete", _key(change.saga))


async def detail_stream(request: web.Request) -> web.StreamResponse:
    """One saga: ``saga`` with the whole detail on every change, ``gone`` once deleted."""
    response = await _event_stream(request)
    with contextlib.suppress(ConnectionResetError):  # the page went away
        await _follow_saga(request, response)
    return response


async def _follow_saga(request: web.Request, response: web.StreamResponse) -> None:
    feed, key = request.app[FEED], _request_key(request)
    permissions = request.app[PERMISSIONS]
    async with feed.subscribe() as subscription:
        current = feed.sagas.get(key)
        if current is None:
            await _send(response, "gone", {"namespace": key[0], "name": key[1]})
        else:
            await _send(response, "saga", await _detail(current, permissions))
        while True:
            change = await _next(subscription, response)
            if change is None:
                break
            if change.saga is None or change.saga.key != key:
                continue
            if change.kind == "delete":
                await _send(response, "gone", _key(change.saga))
            else:
                await _send(response, "saga", await _detail(change.saga, permissions))


async def _next(subscription: Subscription, response: web.StreamResponse) -> Change | None:
    """The next change; a comment line every HEARTBEAT_S finds closed connections."""
    while True:
        try:
            return await asyncio.wait_for(subscription.next(), HEARTBEAT_S)
        except TimeoutError:
            await response.write(b": heartbeat\n\n")
        except Closed:
            return None


async def _detail(saga: SagaObject, permissions: Permissions) -> dict[str, Any]:
    out = views.detail(saga)
    out["canCompensate"] = await permissions.can_compensate(saga.namespace)
    out["actions"] = offers.offered(saga, out["canCompensate"])
    return out


async def saga_events(request: web.Request) -> web.Response:
    """The Kubernetes Events about the saga (by uid: not those of a former namesake)."""
    key = _request_key(request)
    saga = request.app[FEED].sagas.get(key)
    if saga is None:
        raise web.HTTPNotFound(text="no such saga\n")
    api = request.app[API]
    try:
        listing = await client.CoreV1Api(api).list_namespaced_event(
            key[0], field_selector=f"involvedObject.uid={saga.uid}"
        )
    except ApiException as error:
        return web.json_response({"events": [], "error": f"cannot list Events: {error.reason}"})
    events = [views.event(api.sanitize_for_serialization(e)) for e in listing.items]
    events.sort(key=lambda e: (str(e["time"] or ""), e["order"]))  # seconds, then etcd order
    return web.json_response({"events": events, "error": None})


ACTIONS = ("compensate", "approve", "reject", "suspend", "resume", "redrive")
REFUSALS: dict[type[SagaClientError], int] = {
    SagaNotFound: 404,
    ApprovalRefused: 409,
    SagaNotRedrivable: 409,
}


async def act(request: web.Request) -> web.Response:
    """Compensate, approve or reject a step (JSON body ``{step, reason}``), suspend, resume or
    redrive: the AsyncSagaClient's own methods, so its checks and patches are the only ones (as
    ``kubesaga compensate|approve|...``). ``by`` of an answer is left to the client: the UI's
    own identity (a SelfSubjectReview)."""
    action = request.match_info["action"]
    namespace, name = await _permitted(request, action)
    sagas = AsyncSagaClient(request.app[API], namespace)
    try:
        if action in ("approve", "reject"):
            step, reason = await _answer(request)
            answer = sagas.approve if action == "approve" else sagas.reject
            await answer(name, step, reason)
        elif action == "redrive":
            await sagas.redrive(name)
        elif action == "compensate":
            await sagas.compensate(name)
        else:
            await (sagas.suspend if action == "suspend" else sagas.resume)(name)
    except SagaClientError as error:
        status = REFUSALS.get(type(error)) or (
            error.status if isinstance(error, SagaApiError) and error.status >= 400 else 400
        )
        return web.json_response({"error": error.message}, status=status)
    return web.json_response({"ok": True})


async def _permitted(request: web.Request, action: str) -> tuple[str, str]:
    """The saga's key, once the CSRF header names ``action`` and the UI may act (403 if not)."""
    if request.headers.get(ACTION_HEADER) != action:
        raise web.HTTPForbidden(text=f"missing {ACTION_HEADER}: {action} header\n")
    namespace, name = _request_key(request)
    permissions = request.app[PERMISSIONS]
    if permissions.read_only:
        raise web.HTTPForbidden(text="this UI is read-only (--read-only): no actions\n")
    if not await permissions.can_compensate(namespace):
        raise web.HTTPForbidden(text="not allowed to patch sagas in this namespace\n")
    return namespace, name


async def _answer(request: web.Request) -> tuple[str, str]:
    """``step`` and ``reason`` from an approve/reject body; 400 for anything else."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("step"), str):
        raise web.HTTPBadRequest(text='expected a JSON body {"step": ..., "reason": ...}\n')
    reason = body.get("reason") or ""
    if not isinstance(reason, str):
        raise web.HTTPBadRequest(text="reason must be a string\n")
    return body["step"], reason


async def livez(_: web.Request) -> web.Response:
    """Answering at all is being alive: the server has no loop of its own that could wedge."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Ready once the watch has listed the Sagas, and not while it is failing."""
    feed = request.app[FEED]
    if not feed.synced.is_set() or feed.error:
        return web.Response(status=503, text=f"not ready: {feed.error or 'listing Sagas'}\n")
    return web.Response(text="ok\n")


def _request_key(request: web.Request) -> tuple[str, str]:
    return request.match_info["namespace"], request.match_info["name"]


def _key(saga: SagaObject) -> dict[str, str]:
    return {"namespace": saga.namespace, "name": saga.name}


@contextlib.asynccontextmanager
async def serving(app: web.Application, address: str, port: int) -> Any:
    """Serve ``app`` on address:port until the block ends; yields the bound port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
