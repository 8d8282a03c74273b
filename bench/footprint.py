"""What many sagas in flight cost the platform: apiserver/etcd RSS, etcd's DB size, object count.

These are the figures that bound how many sagas one cluster holds (see bench/README.md): every
Saga lives in etcd (its DB has a backend quota, 2 GiB by default), in the apiserver's watch cache
(all of them, decoded) and in the operator's cache. etcd's own ``/metrics`` gives the DB size;
its URL is read from kube-apiserver's ``--etcd-servers`` (plain HTTP on the local platform).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import aiohttp
from kubernetes_asyncio import client

from bench.procstat import memory_kb, process_cmdline
from bench.report import metric_sum, parse_prometheus

MB = 1024 * 1024


def etcd_url(pids: dict[str, list[int]]) -> str | None:
    """etcd's client URL as kube-apiserver was told it (None when not plain HTTP/unknown)."""
    for pid in pids.get("apiserver", []):
        for arg in process_cmdline(pid):
            if arg.startswith("--etcd-servers="):
                url = arg.split("=", 1)[1].split(",")[0]
                return url if urlparse(url).scheme == "http" else None
    return None


async def _etcd(http: aiohttp.ClientSession, url: str | None) -> dict[str, float]:
    if url is None:
        return {}
    try:
        async with http.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
            metrics = parse_prometheus(await resp.text())
    except (aiohttp.ClientError, TimeoutError):
        return {}
    return {
        "etcd_db_mb": round(metric_sum(metrics, "etcd_mvcc_db_total_size_in_bytes") / MB, 1),
        "etcd_db_in_use_mb": round(
            metric_sum(metrics, "etcd_mvcc_db_total_size_in_use_in_bytes") / MB, 1
        ),
        "etcd_keys": int(metric_sum(metrics, "etcd_debugging_mvcc_keys_total")),
        "etcd_quota_mb": round(metric_sum(metrics, "etcd_server_quota_backend_bytes") / MB, 1),
    }


async def _apiserver(api: client.ApiClient) -> dict[str, float]:
    """Sagas the apiserver says it stores (``apiserver_storage_objects``)."""
    try:
        text = await api.call_api(
            "/metrics",
            "GET",
            auth_settings=["BearerToken"],
            response_types_map={200: "str"},
            _return_http_data_only=True,
        )
    except Exception:
        return {}
    metrics = parse_prometheus(str(text))
    return {
        "apiserver_saga_objects": int(
            metric_sum(metrics, "apiserver_storage_objects", resource="sagas.kubesaga.io")
        )
    }


async def footprint(
    http: aiohttp.ClientSession, api: client.ApiClient, pids: dict[str, list[int]]
) -> dict[str, Any]:
    """RSS of the platform's processes (MB), etcd DB size and keys, Sagas stored."""
    out: dict[str, Any] = {}
    for name in ("apiserver", "etcd", "rabbitmq"):
        rss = sum(memory_kb(pid).get("VmRSS", 0) for pid in pids.get(name, []))
        out[f"{name}_rss_mb"] = round(rss / 1024, 1)
    out.update(await _etcd(http, etcd_url(pids)))
    out.update(await _apiserver(api))
    return out
