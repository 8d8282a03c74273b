"""Connecting to the Kubernetes API with kubernetes_asyncio (kubeconfig or in-cluster)."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from kubesaga.store.config_source import IN_CLUSTER, config_source


async def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """Where the Kubernetes API is and how to authenticate: the one answer for the whole process.

    The operator's watch (kopf, through its login handler) and its writes (this client) must
    reach the same cluster as the same user, so both come from here. Precedence, as in
    controller-runtime: an explicit kubeconfig (``KUBESAGA_KUBECONFIG``, else ``KUBECONFIG``),
    then the in-cluster service account, then ``~/.kube/config``. Loaded afresh on each call, so
    a re-login picks up rotated tokens (``config_source`` decides, for every client). Raises
    RuntimeError saying what to set when nothing is found.
    """
    configuration = client.Configuration()
    path = config_source(kubeconfig)
    if path is IN_CLUSTER:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        await config.load_kube_config(
            config_file=path, client_configuration=configuration, persist_config=False
        )
    return configuration


REQUEST_TIMEOUT_S = 10.0
WATCH_MARGIN_S = 30.0


async def make_api_client(
    kubeconfig: str | None = None, request_timeout: float = REQUEST_TIMEOUT_S
) -> client.ApiClient:
    """An API client configured by ``load_configuration``, whose every call has a timeout.

    ``request_timeout`` bounds each call (seconds) unless the call passes its own
    ``_request_timeout``: kubernetes_asyncio sends a request without one with no timeout at all,
    so a call on a connection that went silent (a lost apiserver, a dropped NAT entry) waited for
    ever, and with it the saga whose status it was writing. A watch is bounded by its connect
    and read times instead of its total (it legitimately lasts minutes): the watch loop
    (``store.watching``) passes its own read bound.
    """
    api = client.ApiClient(configuration=await load_configuration(kubeconfig))
    await _skip_environment_lookups(api)
    _bound_requests(api, request_timeout)
    return api


def _bound_requests(api: client.ApiClient, seconds: float) -> None:
    rest: Any = api.rest_client
    request = rest.request
    default = aiohttp.ClientTimeout(total=seconds, sock_connect=seconds)

    async def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        if _request_timeout is None:
            query = dict(kwargs.get("query_params") or [])
            if query.get("watch"):
                server_side = float(query.get("timeoutSeconds") or 0) or None
                total = server_side + WATCH_MARGIN_S if server_side else None
                _request_timeout = aiohttp.ClientTimeout(total=total, sock_connect=seconds)
            else:
                _request_timeout = default
        return await request(*args, _request_timeout=_request_timeout, **kwargs)

    rest.request = bounded


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NETRC")


async def _skip_environment_lookups(api: client.ApiClient) -> None:
    """Use a session with ``trust_env=False`` unless proxy variables are set.

    kubernetes_asyncio opens its aiohttp session with ``trust_env=True``, which looks up proxy
    variables and ~/.netrc (in a thread) on every request: about 9% of the operator's CPU per
    step in our profiles. The connector (pool, TLS context) is kept.
    """
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return
    rest: Any = api.rest_client
    old: aiohttp.ClientSession = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=old.connector, connector_owner=True, trust_env=False, read_bufsize=2**21
    )
    old._connector_owner = False  # the new session owns (and closes) the shared connector
    await old.close()
