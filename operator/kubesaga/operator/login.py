"""kopf's credentials, from the same configuration as the operator's own API client.

kopf's stock login tries the in-cluster service account first and reads only ``KUBECONFIG``,
while the store honours ``KUBESAGA_KUBECONFIG`` and another order: the watch and the writes could
reach different clusters. Here kopf gets exactly what ``store.load_configuration`` decided.
"""

from __future__ import annotations

import kopf

from kubesaga.store import load_configuration


async def connection_info(kubeconfig: str | None) -> kopf.ConnectionInfo:
    """kopf's view of ``load_configuration(kubeconfig)`` (reloaded on every re-login)."""
    configuration = await load_configuration(kubeconfig)
    header = await configuration.get_api_key_with_prefix("BearerToken")  # refreshes tokens
    scheme, _, token = (header or "").partition(" ")
    return kopf.ConnectionInfo(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert or None,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file or None,
        private_key_path=configuration.key_file or None,
        username=configuration.username or None,
        password=configuration.password or None,
    )
