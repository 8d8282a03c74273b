"""The Python client: start and inspect Sagas (never imports kopf or the broker)."""

from kubesaga.client.client import SagaClient
from kubesaga.client.saga import Saga

__all__ = ["Saga", "SagaClient"]
