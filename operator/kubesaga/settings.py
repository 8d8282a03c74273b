"""One typed settings object read from the environment (``KUBESAGA_*``).

Every setting of the operator and the workers is a field here, once: its name, type, bounds,
default and docstring. Everything else is derived from it: the command-line flags
(``kubesaga.cli.options``), the Helm chart's values and their ``values.schema.json``
(``kubesaga.schema.values``) and the table in docs/settings.md; tests fail when a copy drifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "KUBESAGA_"

OPERATOR = "operator"
WORKER = "worker"


@dataclass(frozen=True)
class Use:
    """Who reads a setting, and the command-line flags that override it for one run.

    Kept on the field (``Annotated`` metadata) so the CLI and the docs table cannot disagree with
    the model about which process a setting is for.
    """

    by: tuple[str, ...]
    flags: tuple[str, ...] = ()


BOTH = Use((OPERATOR, WORKER))


class Settings(BaseSettings):
    """Configuration of the operator and the workers."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", use_attribute_docstrings=True
    )

    # ------------------------------------------------------------------ broker (both sides)
    amqp_url: Annotated[str, BOTH] = "amqp://guest:guest@127.0.0.1:5672/"
    """RabbitMQ URL; amqps:// with amqp_ca_file for TLS."""
    amqp_ca_file: Annotated[str | None, BOTH] = None
    """CA bundle that signs the broker's certificate (amqps://)."""
    quorum_queues: Annotated[bool, BOTH] = False
    """Declare action queues as quorum queues (replicated, for HA brokers); results and
    dead-letter queues stay classic (docs/protocol.md)."""
    results_queue: Annotated[str, BOTH] = "kubesaga.results"
    """Queue the workers publish results to and the operator consumes (one per installation)."""
    dead_letter_queue: Annotated[str, BOTH] = "kubesaga.dead-letter"
    """Where malformed, unknown and stale messages are kept, with the reason."""
    amqp_heartbeat_seconds: Annotated[int, BOTH] = Field(default=10, ge=1, le=600)
    """AMQP heartbeat: a broker connection silent for about three of these is given up and
    reconnected (and the process is unready meanwhile). RabbitMQ's 60 s took three minutes to
    notice a partition."""
    amqp_timeout_seconds: Annotated[float, BOTH] = Field(default=10.0, gt=0, le=600)
    """Bound on connecting to the broker and on each reconnect attempt (one that hung on a
    silent connection kept a process from ever reconnecting); a publish waits up to three times
    this for its confirm."""

    # ------------------------------------------------------------------------------ operator
    operator_prefetch: Annotated[int, Use((OPERATOR,))] = Field(default=64, ge=1, le=10_000)
    """Results the operator takes from the results queues and works on at once (its AMQP
    prefetch), split over the shards: each shard's queue gets prefetch / shards (rounded up).
    Not the workers' worker_concurrency."""
    kubeconfig: Annotated[str | None, Use((OPERATOR,))] = Field(
        default=None, validation_alias=AliasChoices("KUBESAGA_KUBECONFIG", "KUBECONFIG")
    )
    """Kubeconfig file (KUBESAGA_KUBECONFIG, else KUBECONFIG); unset means in-cluster, else
    ~/.kube/config. The operator's watch and writes both use it."""
    namespaces: Annotated[list[str], NoDecode, Use((OPERATOR,), ("--namespace", "-n"))] = Field(
        default_factory=list
    )
    """Namespaces whose Sagas the operator serves (the variable: comma separated; the flag:
    repeated); empty means all."""
    metrics_port: Annotated[int, Use((OPERATOR,), ("--metrics-port",))] = Field(
        default=8080, ge=0, le=65535
    )
    """Port of the operator's /metrics and probes (/livez, /readyz); 0 disables the server."""
    pod_name: Annotated[str | None, Use((OPERATOR,))] = None
    """Name of this pod (the chart sets it from the downward API): the operator's identity
    towards kopf. Unset means the host name."""
    events: Annotated[Literal["all", "phases", "none"], Use((OPERATOR,))] = "phases"
    """Kubernetes Events to post on Sagas: phases (saga phase changes, failures, retries and
    compensations: what a person looks for), all (also each step that succeeded: one more
    apiserver write per step), or none."""
    redeliver_after_seconds: Annotated[float, Use((OPERATOR,))] = Field(default=300.0, gt=0)
    """Re-publish a command still unanswered after this many seconds (same dispatch id)."""
    kube_request_timeout_seconds: Annotated[float, Use((OPERATOR,))] = Field(
        default=10.0, gt=0, le=600
    )
    """Bound on each Kubernetes API call (reads, status writes, Events; a watch's connect); a
    call that times out is retried like any failed call."""
    kube_watch_idle_seconds: Annotated[float, Use((OPERATOR,))] = Field(default=30.0, ge=5, le=3600)
    """A Saga watch that delivered nothing (no event, no bookmark) for this long is presumed
    dead and opened again from where it was: one request, no new list. Below the apiserver's
    minute between bookmarks, so a watch on a silent connection costs its sagas at most this."""
    operator_grace_seconds: Annotated[float, Use((OPERATOR,), ("--grace",))] = Field(
        default=20.0, ge=0
    )
    """Seconds from SIGTERM to the operator's forced exit (keep it below the pod's
    terminationGracePeriodSeconds); a second signal exits at once."""
    shards: Annotated[int, Use((OPERATOR,))] = Field(default=16, ge=1, le=256)
    """Shards the sagas are split into: a saga's shard is its kubesaga.io/shard-key label (a
    stable hash of its namespace and name, 0-255) modulo this. Each operator replica holds a
    fair share of them by coordination.k8s.io Leases, watches, decides only their sagas and
    consumes only their results queues (<results_queue>.<shard>). Keep it at least the number
    of replicas; every replica of an installation must use the same number."""
    shard_lease_seconds: Annotated[int, Use((OPERATOR,))] = Field(default=15, ge=2, le=3600)
    """How long a shard's Lease holds without renewal: a replica that dies loses its shards to
    the others after at most this (plus one renew period)."""
    shard_renew_seconds: Annotated[float, Use((OPERATOR,))] = Field(default=5.0, gt=0, le=1800)
    """How often a replica renews its Leases and rebalances; below shard_lease_seconds (a third
    of it is right), so one failed renewal does not lose the shards."""
    shard_lease_prefix: Annotated[str, Use((OPERATOR,))] = Field(
        default="kubesaga", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40
    )
    """Leases are named <prefix>-shard-<n> and <prefix>-member-<hash>: one prefix per
    installation sharing a namespace (the chart uses the release's full name)."""
    pod_namespace: Annotated[str, Use((OPERATOR,))] = Field(
        default="default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63
    )
    """Namespace of this pod (the chart sets it from the downward API): the shard Leases live
    there."""

    # -------------------------------------------------------------------------------- worker
    worker_concurrency: Annotated[int, Use((WORKER,), ("--concurrency",))] = Field(
        default=16, ge=1, le=10_000
    )
    """Commands a worker process runs at once; also its AMQP prefetch. Keep it above 1:
    parallel steps sharing an action wait for each other otherwise."""
    worker_grace_seconds: Annotated[float, Use((WORKER,), ("--grace",))] = Field(default=30.0, ge=0)
    """Seconds a worker's running handlers get to finish after SIGTERM; the commands of those
    still running then go back to their queues."""
    health_port: Annotated[int, Use((WORKER,))] = Field(default=0, ge=0, le=65535)
    """Port of a worker's probes (/livez, /readyz); 0 (the default, for local runs) disables."""

    # ------------------------------------------------------------------------- both processes
    metrics_host: Annotated[str, BOTH] = "0.0.0.0"
    """Address the HTTP server binds (the operator's metrics and probes, a worker's probes)."""
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BOTH] = "INFO"
    """Lowest level logged."""
    log_format: Annotated[Literal["text", "json"], BOTH] = "text"
    """text for people, json (one object per line) for log collectors."""

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

    @model_validator(mode="after")
    def _renew_within_lease(self) -> Settings:
        if self.shard_renew_seconds >= self.shard_lease_seconds:
            raise ValueError(
                f"shard_renew_seconds ({self.shard_renew_seconds}) must be below "
                f"shard_lease_seconds ({self.shard_lease_seconds}): Leases would expire "
                "between renewals"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        """``info`` worked before the level became an enum; keep accepting any case."""
        return value.upper() if isinstance(value, str) else value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def env_name(field: str) -> str:
    """The environment variable of a setting, e.g. ``KUBESAGA_WORKER_CONCURRENCY``."""
    return ENV_PREFIX + field.upper()


def use_of(field: FieldInfo) -> Use:
    """The ``Use`` marker of a settings field (every field has one; a test checks)."""
    for item in field.metadata:
        if isinstance(item, Use):
            return item
    raise LookupError("settings field without a Use marker")


def default_of(field: str) -> Any:
    """A setting's default, for code that needs it without reading the environment (typed by
    the field, hence ``Any`` here)."""
    return Settings.model_fields[field].get_default(call_default_factory=True)
