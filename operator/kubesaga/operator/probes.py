"""The operator's probes: ready while its watch runs, the broker is connected and the API answers.

The broker's state comes from aio-pika's connection callbacks (``Broker.connected``). kopf offers
no such signal for the Kubernetes API (its watch retries connection errors silently), so the API
is checked when a probe asks, with a timeout, and a success is trusted for a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from kubernetes_asyncio import client

from kubesaga.broker import Broker
from kubesaga.health import Health

log = logging.getLogger("kubesaga.operator")

API_TIMEOUT_SECONDS = 2.0
API_FRESH_SECONDS = 5.0
READYZ = "/readyz"


class ApiReachability:
    """``await check()``: is the Kubernetes API ready (``GET /readyz`` within the timeout)?

    The apiserver's own ``/readyz`` includes its storage: with etcd down, ``/version`` still
    answers 200 and the operator said ready while no status write could succeed (seen in the
    control-plane chaos scenario). ``/readyz`` is cheap and allowed to every account (the
    default ``system:public-info-viewer`` role), so it needs no extra RBAC. Concurrent probes
    share one request; a success counts for ``fresh_for`` seconds, a failure is re-checked on
    the next ask.
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        timeout: float = API_TIMEOUT_SECONDS,
        fresh_for: float = API_FRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._timeout = timeout
        self._fresh_for = fresh_for
        self._clock = clock
        self._ok_at: float | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> bool:
        async with self._lock:
            if self._ok_at is not None and self._clock() - self._ok_at < self._fresh_for:
                return True
            reachable = await self._ask()
            self._ok_at = self._clock() if reachable else None
            return reachable

    async def _ask(self) -> bool:
        try:
            await self._api.call_api(
                READYZ,
                "GET",
                auth_settings=["BearerToken"],
                response_types_map={200: "str"},
                _return_http_data_only=True,
                _request_timeout=self._timeout,
            )
        except client.ApiException as error:
            # An answer is an answer, unless it says our credentials or the apiserver are broken.
            if error.status == 401 or error.status >= 500:
                log.warning("Kubernetes API answers %s to GET %s", error.status, READYZ)
                return False
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("Kubernetes API unreachable: %r", error)
            return False
        return True


def operator_health(api: client.ApiClient, broker: Broker, watching: asyncio.Event) -> Health:
    """Liveness from the event loop's heartbeat; readiness from the watch, broker and API."""
    health = Health()
    health.add_check("watch", watching.is_set)
    health.add_check("broker", lambda: broker.connected)
    health.add_check("kubernetes-api", ApiReachability(api))
    return health
