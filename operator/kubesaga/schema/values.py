"""The Helm chart's values as a model: the one source of values.yaml and values.schema.json.

Values that are settings (``setting(...)``) take their type, bounds and description from
``kubesaga.settings.Settings`` and name their ``KUBESAGA_*`` variable; their default is the
setting's unless the chart has a reason to differ (given next to it). The rest is chart
structure (images, RBAC, pod placement). ``kubesaga.schema.chart`` renders both files from this
module; unit tests fail when the committed files drift, and the integration tests check that
the templates turn every value into its variable.

Objects the chart owns forbid unknown keys, so a misspelt value fails ``helm install`` with a
schema error instead of being ignored. Objects that are handed to Kubernetes as they are
(resources, security contexts, affinity, ...) accept any key: the apiserver validates them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubesaga.settings import default_of

SETTING_KEY = "x-kubesaga-setting"
"""Marks a value's schema as the named setting's (replaced by ``kubesaga.schema.chart``)."""

_UNSET: Any = object()


def setting(name: str, *, chart_default: Any = _UNSET) -> Any:
    """A value that is the setting ``name``; ``chart_default`` when the chart needs another
    default than a local process (e.g. JSON logs, probes that need a port)."""
    default = default_of(name) if chart_default is _UNSET else chart_default
    return Field(default=default, json_schema_extra={SETTING_KEY: name})


class _Closed(BaseModel):
    """Part of the chart's own structure: unknown keys are typos."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


class _Open(_Closed):
    """A Kubernetes object passed through as it is: more keys are fine (the apiserver checks)."""

    model_config = ConfigDict(extra="allow")


class Image(_Closed):
    repository: str = "kubesaga"
    """Registry and repository of the kubesaga image. No public image is published: build it
    from the repository's Dockerfile and push it where your cluster pulls from
    (hack/e2e-kind.sh loads it)."""
    tag: str | float = ""
    """Image tag; empty means the chart's appVersion. (A number is accepted: YAML and --set read
    an unquoted 1 or 1.0 as one.)"""
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image: Always, IfNotPresent or Never."""


class Log(_Closed):
    level: Any = setting("log_level")
    format: Any = setting("log_format", chart_default="json")
    """(json by default in the chart.)"""


class Amqp(_Closed):
    existing_secret: str = ""
    """Name of an existing Secret holding the AMQP URL; empty means the chart creates one from
    amqp.url."""
    secret_key: str = "url"
    """Key of the URL in that Secret (or in the one the chart creates); becomes
    KUBESAGA_AMQP_URL."""
    url: str = "amqp://guest:guest@rabbitmq:5672/"
    """AMQP URL (amqp://user:password@host:5672/vhost, or amqps://) stored in a Secret the chart
    creates when existingSecret is empty. The default reaches a `rabbitmq` Service in the
    release's namespace (the official image lets guest connect remotely); use existingSecret in
    production."""
    ca_secret: str = ""
    """Name of a Secret holding the CA bundle that signs the broker's certificate (amqps://); it
    is mounted read-only and its path passed as KUBESAGA_AMQP_CA_FILE. Empty means the system
    CAs."""
    ca_secret_key: str = "ca.crt"
    """Key of the CA bundle in caSecret."""
    quorum_queues: Any = setting("quorum_queues")
    results_queue: Any = setting("results_queue")
    dead_letter_queue: Any = setting("dead_letter_queue")
    heartbeat_seconds: Any = setting("amqp_heartbeat_seconds")
    timeout_seconds: Any = setting("amqp_timeout_seconds")


class Requests(_Open):
    cpu: str = "100m"
    """CPU reserved."""
    memory: str = "128Mi"
    """Memory reserved."""


class Limits(_Open):
    memory: str = "512Mi"
    """Memory cap; the container is restarted above it."""


class Resources(_Open):
    requests: Requests = Requests()
    """What the scheduler reserves for the container."""
    limits: Limits = Limits()
    """Hard caps for the container."""


class Operator(_Closed):
    replicas: int = Field(default=1, ge=0)
    """Number of operator pods. They share the work: each holds a fair share of the shards
    (operator.shards) by Leases in the release's namespace and decides only their sagas.
    Ownership is not a lock (each status write carries the Saga's resourceVersion), so a
    replica that loses a shard late costs a 409, never a wrong decision."""
    namespaces: Any = setting("namespaces")
    """(The chart grants a ClusterRole when empty, else a Role and RoleBinding in each.)"""
    prefetch: Any = setting("operator_prefetch")
    events: Any = setting("events")
    redeliver_after_seconds: Any = setting("redeliver_after_seconds")
    kube_request_timeout_seconds: Any = setting("kube_request_timeout_seconds")
    kube_watch_idle_seconds: Any = setting("kube_watch_idle_seconds")
    grace_seconds: Any = setting("operator_grace_seconds")
    shards: Any = setting("shards")
    shard_lease_seconds: Any = setting("shard_lease_seconds")
    shard_renew_seconds: Any = setting("shard_renew_seconds")
    """(The pod's terminationGracePeriodSeconds is this plus 10.)"""
    resources: Resources = Resources()
    """CPU and memory of the operator container."""
    pod_annotations: dict[str, str] = {}
    """Extra annotations on the operator pods."""
    node_selector: dict[str, str] = {}
    """Node labels the operator pods must run on."""
    tolerations: list[dict[str, Any]] = []
    """Taints the operator pods tolerate."""
    affinity: dict[str, Any] = {}
    """Affinity rules of the operator pods."""


class MetricsService(_Closed):
    enabled: bool = False
    """Create the Service."""
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Type of the Service."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port the Service exposes."""
    annotations: dict[str, str] = {}
    """Annotations on the Service, e.g. prometheus.io/scrape: "true"."""


class Metrics(_Closed):
    port: Any = setting("metrics_port")
    """(Not 0 in the chart: the probes need it.)"""
    host: Any = setting("metrics_host")
    service: MetricsService = MetricsService()
    """A Service in front of the operators' metrics port, for Prometheus."""


class ServiceAccount(_Closed):
    create: bool = True
    """Create the ServiceAccount; false means serviceAccount.name must already exist."""
    name: str = ""
    """Name of the ServiceAccount; empty means the chart's full name."""
    annotations: dict[str, str] = {}
    """Annotations on the ServiceAccount (e.g. for workload identity)."""


class Rbac(_Closed):
    create: bool = True
    """Create the ClusterRole and ClusterRoleBinding (or a Role and RoleBinding per namespace in
    operator.namespaces). False means you grant the same rules yourself."""


class Approvals(_Closed):
    check_approver: bool = False
    """Install a ValidatingAdmissionPolicy and its binding that refuse a new answer in
    spec.approvals whose `by` is not the user sending it (docs/approvals.md). Needs Kubernetes
    1.30+ and an installer allowed to create admission policies (cluster-scoped). Off by
    default: it also refuses a system answering for a person (`kubesaga approve --by`)."""


class SeccompProfile(_Open):
    type: str = "RuntimeDefault"
    """The runtime's default profile."""


class PodSecurityContext(_Open):
    run_as_non_root: bool = True
    """Refuse to start a container that would run as root."""
    run_as_user: int = 10001
    """UID the containers run as (the image's user)."""
    run_as_group: int = 10001
    """Primary GID of the containers."""
    fs_group: int = 10001
    """Group owning mounted volumes."""
    seccomp_profile: SeccompProfile = SeccompProfile()
    """Syscall filter of the container runtime."""


class Capabilities(_Open):
    drop: list[str] = ["ALL"]
    """Drop every capability."""


class SecurityContext(_Open):
    allow_privilege_escalation: bool = False
    """No setuid gains."""
    read_only_root_filesystem: bool = True
    """The image needs no writes outside the /tmp emptyDir the chart mounts."""
    run_as_non_root: bool = True
    """Refuse to start as root."""
    capabilities: Capabilities = Capabilities()
    """Linux capabilities."""


class WorkerImage(_Closed):
    repository: str = ""
    """Repository of the workers' image; empty means the chart's image (image.repository:tag)."""
    tag: str | float = ""
    """Tag of the workers' image; empty means the chart's appVersion."""


class WorkerDefaults(_Closed):
    image: WorkerImage = WorkerImage()
    """Image of the workers that name none of their own. Handler code lives in an image built
    FROM the kubesaga image (examples/Dockerfile is the pattern); e.g. the examples' workers use
    repository kubesaga-examples (ci/workers-values.yaml)."""
    health_port: Any = setting("health_port", chart_default=8080)
    """(In the chart it cannot be 0: the pod's probes use it, and a broker outage makes a worker
    unready, never restarts it.)"""
    concurrency: Any = setting("worker_concurrency")
    grace_seconds: Any = setting("worker_grace_seconds")
    """(The pod's terminationGracePeriodSeconds is this plus 15.)"""


class Worker(_Closed):
    """One handler Deployment."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)
    """(required) suffix of the Deployment's name, and its kubesaga.io/worker label."""
    module: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    """(required) the Worker object, "package.module:attribute"."""
    image: str | None = None
    """image reference; default: workerDefaults.image, else the chart's image."""
    app_dir: str | None = None
    """folder put first on sys.path before importing module; default: /app."""
    replicas: int | None = Field(default=None, ge=0)
    """pods; default 1."""
    concurrency: Any = setting("worker_concurrency", chart_default=None)
    """For this worker's pods; default workerDefaults.concurrency."""
    grace_seconds: Any = setting("worker_grace_seconds", chart_default=None)
    """For this worker's pods; default workerDefaults.graceSeconds."""
    env: list[dict[str, Any]] | None = None
    """extra environment variables (a list of Kubernetes EnvVar)."""
    resources: dict[str, Any] | None = None
    """CPU and memory of the container."""
    pod_annotations: dict[str, str] | None = None
    """extra annotations on the worker's pods."""


class HelmTest(_Closed):
    enabled: bool = True
    """Render the test hook."""
    timeout_seconds: int = Field(default=60, ge=1)
    """Seconds the Saga may take to complete before the test fails."""


class UiService(_Closed):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Type of the Service."""
    port: int = Field(default=80, ge=1, le=65535)
    """Port the Service exposes."""
    annotations: dict[str, str] = {}
    """Annotations on the Service."""


class Ui(_Closed):
    enabled: bool = False
    """Run `kubesaga ui` as a Deployment with a Service (reach it with `kubectl port-forward`)."""
    actions: bool = False
    """Offer the action buttons (compensate, approve/reject, suspend/resume, redrive): grants
    the UI's ServiceAccount patch on Sagas. Approvals are recorded as given by that
    ServiceAccount. The UI has no login of its own, so whoever reaches the Service may then act
    on any saga it shows: put an authenticating proxy in front first."""
    namespace: str = ""
    """Show only this namespace (a Role there); empty means every namespace (a ClusterRole)."""
    replicas: int = Field(default=1, ge=0)
    """Number of UI pods (each holds one watch)."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port the UI container listens on."""
    service: UiService = UiService()
    """The Service in front of the UI pods."""
    resources: Resources = Resources()
    """CPU and memory of the UI container."""
    pod_annotations: dict[str, str] = {}
    """Extra annotations on the UI pods."""


class GrafanaDashboard(_Closed):
    enabled: bool = False
    """Ship the dashboard (files/dashboard.json) in a ConfigMap for Grafana's sidecar."""
    namespace: str = ""
    """Namespace of the ConfigMap (where the sidecar looks); empty means the release's."""
    label: str = "grafana_dashboard"
    """Label the sidecar selects dashboards by."""
    label_value: str = "1"
    """Value of that label."""


class PrometheusRule(_Closed):
    enabled: bool = False
    """Create a PrometheusRule (Prometheus Operator) with the alerts of files/alerts.yaml: sagas
    stuck past their deadline, Failed sagas, dead letters, commands without results."""
    labels: dict[str, str] = {}
    """Extra labels, e.g. the one your Prometheus selects rules by (release: prometheus)."""


class ServiceMonitor(_Closed):
    enabled: bool = False
    """Create a ServiceMonitor (Prometheus Operator) scraping the operators' /metrics; it also
    creates the metrics Service, as metrics.service.enabled does."""
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    """Scrape interval."""
    labels: dict[str, str] = {}
    """Extra labels, e.g. the one your Prometheus selects ServiceMonitors by."""


class ChartValues(_Closed):
    """Values of the kubesaga chart."""

    image: Image = Image()
    """Container image of the operator; workers use it too unless they name their own."""
    image_pull_secrets: list[dict[str, str]] = []
    """Secrets for pulling the images from a private registry, e.g. [{name: regcred}]."""
    name_override: str = ""
    """Replaces the chart name in the names of the objects this chart creates."""
    fullname_override: str = ""
    """Replaces the whole "<release>-<chart>" prefix of the names of the objects this chart
    creates."""
    log: Log = Log()
    """Logging of the operator and the workers."""
    amqp: Amqp = Amqp()
    """RabbitMQ connection, shared by the operator and the workers."""
    operator: Operator = Operator()
    """The operator: watches Sagas, decides, writes status, publishes commands, consumes
    results."""
    metrics: Metrics = Metrics()
    """The operator's HTTP server: /metrics (Prometheus) and the probes' /livez (fails only when
    the operator is wedged: its event loop stalled) and /readyz (fails while the Kubernetes API
    or the broker is unreachable, or the watch is not running)."""
    service_account: ServiceAccount = ServiceAccount()
    """The identity the operator runs as."""
    rbac: Rbac = Rbac()
    """Least-privilege RBAC for the operator: read, watch and delete Sagas, update their status,
    create Events; cluster-wide also list and watch CustomResourceDefinitions (kopf follows the
    Saga CRD)."""
    approvals: Approvals = Approvals()
    """Approval steps: who may be named as the approver. Who may approve at all is who may
    patch Sagas (RBAC you grant)."""
    pod_security_context: PodSecurityContext = PodSecurityContext()
    """Pod-level security context of the operator and the workers (Pod Security
    "restricted")."""
    security_context: SecurityContext = SecurityContext()
    """Container-level security context of the operator and the workers (Pod Security
    "restricted")."""
    worker_defaults: WorkerDefaults = WorkerDefaults()
    """Settings every worker Deployment shares."""
    workers: list[Worker] = []
    """Handler workers, one Deployment each, running `kubesaga worker --app-dir <appDir>
    <module>`. They share the AMQP settings and the security contexts above."""
    ui: Ui = Ui()
    """The web UI (`kubesaga ui`): a live list of the Sagas and each saga's step graph, timeline
    and Events. Read-only RBAC (get, list, watch Sagas; list Events) unless ui.actions."""
    grafana_dashboard: GrafanaDashboard = GrafanaDashboard()
    """A Grafana dashboard of the operator's metrics (ConfigMap for the Grafana sidecar)."""
    prometheus_rule: PrometheusRule = PrometheusRule()
    """Alerts on the operator's metrics (needs the Prometheus Operator's CRDs)."""
    service_monitor: ServiceMonitor = ServiceMonitor()
    """Scraping of the operators' metrics by the Prometheus Operator."""
    helm_test: HelmTest = HelmTest()
    """`helm test <release>`: a Pod from the chart's image runs a zero-step Saga through the
    operator and passes once it is Completed, which proves the CRD, the operator's RBAC, its
    watch, its broker connection and its status writes (no worker needed). It runs as its own
    ServiceAccount with a Role that may only create, read, watch and delete Sagas in the
    operator's (first) namespace; the hook's objects are deleted after a successful test and
    kept after a failed one (for `kubectl logs`)."""
    global_: dict[str, Any] = Field(default={}, alias="global")
    """Helm's values shared with subcharts (set by a parent chart; unused here)."""


INDIRECT = {
    "amqp_url": "amqp.url (in a Secret the chart makes) or amqp.existingSecret",
    "amqp_ca_file": "amqp.caSecret (mounted; the variable is its path)",
    "pod_name": "the pod's name (downward API)",
    "pod_namespace": "the pod's namespace (downward API)",
    "shard_lease_prefix": "the release's full name",
    "kubeconfig": "unset: the pod's service account",
}
"""Settings the chart sets without a value of their own, and how."""

WORKER_EXAMPLE = """\
- name: orders
  module: handlers:worker
  image: kubesaga-examples:0.1.0
  appDir: /app/examples/01-order-saga
  replicas: 2
  env: [{name: PAYMENT_URL, value: "http://payments"}]
"""
"""Shown under ``workers`` in values.yaml (the image kubesaga-examples built by
examples/Dockerfile)."""
