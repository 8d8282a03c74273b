"""One typed settings object read from the environment (``KUBESAGA_*``).

The Helm chart maps its values one to one onto these variables.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of the operator, the workers and the client."""

    model_config = SettingsConfigDict(env_prefix="KUBESAGA_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """RabbitMQ URL; amqps:// with amqp_ca_file for TLS."""
    amqp_ca_file: str | None = None
    """CA bundle that signs the broker's certificate (amqps://)."""
    quorum_queues: bool = False
    """Declare action queues as quorum queues (replicated, for HA brokers); see docs/protocol.md."""
    results_queue: str = "kubesaga.results"
    """Queue the workers publish results to and the operator consumes (one per installation)."""
    dead_letter_queue: str = "kubesaga.dead-letter"
    """Where malformed, unknown and stale messages are kept, with the reason."""
    prefetch: int = Field(default=64, ge=1, le=10_000)
    """Results the operator works on at once."""
    kubeconfig: str | None = Field(
        default=None, validation_alias=AliasChoices("KUBESAGA_KUBECONFIG", "KUBECONFIG")
    )
    """Kubeconfig file (KUBESAGA_KUBECONFIG, else KUBECONFIG); unset means in-cluster, else
    ~/.kube/config. The operator's watch and writes both use it (store.load_configuration)."""
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch, comma separated; empty means all (cluster-wide)."""
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """Operator: port of /metrics and the probes (/livez, /readyz); 0 disables the server."""
    metrics_host: str = "0.0.0.0"
    """Address the HTTP server binds (the operator's metrics and probes, a worker's probes)."""
    health_port: int = Field(default=0, ge=0, le=65535)
    """Worker: port of its probes (/livez, /readyz); 0 (the default, for local runs) disables."""
    pod_name: str | None = None
    """Name of this pod (the chart sets it from the downward API): the operator's identity
    towards kopf. Unset means the host name."""
    events: Literal["all", "phases", "none"] = "all"
    """Kubernetes Events to post: every transition, saga phase changes and warnings, or none."""
    redeliver_after_seconds: float = Field(default=300.0, gt=0)
    """Re-publish a command still unanswered after this long (same dispatch id)."""
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("*", mode="before")
    @classmethod
    def _not_a_service_link(cls, value: object) -> object:
        """Say what went wrong when Kubernetes filled a KUBESAGA_* variable with a Service link."""
        if isinstance(value, str) and value.startswith(("tcp://", "udp://")):
            raise ValueError(
                f"{value!r} looks like a Kubernetes Service link variable (a Service named "
                "kubesaga-... in the pod's namespace); set enableServiceLinks: false in the pod"
            )
        return value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
