"""Where the Kubernetes connection comes from: one precedence for every client in the process.

The operator's watch and writes (kubernetes_asyncio) and the synchronous ``SagaClient`` (the
official ``kubernetes`` package) must agree on which cluster and user they talk to, so the choice
is made here once. It imports no Kubernetes client.
"""

from __future__ import annotations

import os

IN_CLUSTER = None
"""``config_source`` returns this when the in-cluster service account is to be used."""


def config_source(kubeconfig: str | None = None) -> str | None:
    """The kubeconfig file to load, or ``IN_CLUSTER`` (None) for the service account.

    Precedence, as in controller-runtime: an explicit kubeconfig (``KUBESAGA_KUBECONFIG`` reaches
    here as ``kubeconfig``), else ``KUBECONFIG``, then the in-cluster service account, then
    ``~/.kube/config``. Raises RuntimeError saying what to set when nothing is found.
    """
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        return path
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return IN_CLUSTER
    default = os.path.expanduser("~/.kube/config")
    if os.path.exists(default):
        return default
    raise RuntimeError(
        "no Kubernetes configuration: set KUBECONFIG (for the local platform run "
        '`eval "$(hack/testenv.sh up)"`) or run inside a cluster'
    )
