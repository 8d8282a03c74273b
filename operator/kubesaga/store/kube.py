"""Connecting to the Kubernetes API with kubernetes_asyncio (kubeconfig or in-cluster)."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config


async def make_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client from ``kubeconfig`` (or $KUBECONFIG, ~/.kube/config), else in-cluster.

    Raises a RuntimeError with what to set when no configuration can be found.
    """
    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or _default_kubeconfig()
    if path:
        await config.load_kube_config(
            config_file=path, client_configuration=configuration, persist_config=False
        )
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        raise RuntimeError(
            "no Kubernetes configuration: set KUBECONFIG (for the local platform run "
            '`eval "$(hack/testenv.sh up)"`) or run inside a cluster'
        )
    return client.ApiClient(configuration=configuration)


def _default_kubeconfig() -> str | None:
    default = os.path.expanduser("~/.kube/config")
    return default if os.path.exists(default) else None
