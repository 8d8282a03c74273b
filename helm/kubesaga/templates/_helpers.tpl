{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "kubesaga.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" unless the release name already holds the chart name. */}}
{{- define "kubesaga.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubesaga.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kubesaga.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubesaga
{{- end }}

{{/* Selector of the operator pods; workers add their own component label. */}}
{{- define "kubesaga.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubesaga.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubesaga.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubesaga.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubesaga.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}

{{/* The Secret holding the AMQP URL: the user's, or the one templates/secret.yaml creates. */}}
{{- define "kubesaga.amqpSecretName" -}}
{{- if .Values.amqp.existingSecret }}
{{- .Values.amqp.existingSecret }}
{{- else }}
{{- printf "%s-amqp" (include "kubesaga.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kubesaga.amqpCaDir" -}}
/etc/kubesaga/amqp-ca
{{- end }}

{{/* Environment shared by the operator and the workers (kubesaga.settings.Settings). */}}
{{- define "kubesaga.commonEnv" -}}
- name: KUBESAGA_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "kubesaga.amqpSecretName" . }}
      key: {{ .Values.amqp.secretKey }}
{{- if .Values.amqp.caSecret }}
- name: KUBESAGA_AMQP_CA_FILE
  value: {{ printf "%s/%s" (include "kubesaga.amqpCaDir" .) .Values.amqp.caSecretKey | quote }}
{{- end }}
- name: KUBESAGA_QUORUM_QUEUES
  value: {{ .Values.amqp.quorumQueues | quote }}
- name: KUBESAGA_RESULTS_QUEUE
  value: {{ .Values.amqp.resultsQueue | quote }}
- name: KUBESAGA_DEAD_LETTER_QUEUE
  value: {{ .Values.amqp.deadLetterQueue | quote }}
- name: KUBESAGA_AMQP_HEARTBEAT_SECONDS
  value: {{ .Values.amqp.heartbeatSeconds | quote }}
- name: KUBESAGA_AMQP_TIMEOUT_SECONDS
  value: {{ .Values.amqp.timeoutSeconds | quote }}
- name: KUBESAGA_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: KUBESAGA_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- end }}

{{/* Volumes every pod mounts: a writable /tmp (the root filesystem is read-only) and the CA. */}}
{{- define "kubesaga.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.amqp.caSecret }}
- name: amqp-ca
  secret:
    secretName: {{ .Values.amqp.caSecret }}
    items:
      - key: {{ .Values.amqp.caSecretKey }}
        path: {{ .Values.amqp.caSecretKey }}
{{- end }}
{{- end }}

{{- define "kubesaga.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.amqp.caSecret }}
- name: amqp-ca
  mountPath: {{ include "kubesaga.amqpCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod annotations: the given ones (.extra) plus a checksum of the chart-made AMQP Secret,
so that pods restart when the URL changes. Renders nothing when there are none. */}}
{{- define "kubesaga.podAnnotations" -}}
{{- $annotations := deepCopy (default (dict) .extra) }}
{{- if not .root.Values.amqp.existingSecret }}
{{- $_ := set $annotations "checksum/amqp" (.root.Values.amqp.url | sha256sum) }}
{{- end }}
{{- with $annotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Probes of the operator and the workers (kubesaga.health): /livez fails only when the event
loop is stalled, so the kubelet restarts a wedged process but not one waiting out a broker or API
outage; /readyz fails while the broker (and, for the operator, the API or its watch) is down.
The startup probe uses /livez too: an outage at start must not restart the pod either. */}}
{{- define "kubesaga.probes" -}}
startupProbe:
  httpGet:
    path: /livez
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /livez
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
{{- end }}

{{/* Image of a worker: its own, else workerDefaults.image, else the chart's image. */}}
{{- define "kubesaga.workerImage" -}}
{{- $defaults := .root.Values.workerDefaults.image }}
{{- if .worker.image }}
{{- .worker.image }}
{{- else if $defaults.repository }}
{{- printf "%s:%s" $defaults.repository (toString (default .root.Chart.AppVersion $defaults.tag)) }}
{{- else }}
{{- include "kubesaga.image" .root }}
{{- end }}
{{- end }}

{{- /*
Name of a cluster-scoped object (ClusterRole, its binding, an admission policy): the release's
namespace comes first, so two releases of the same name in different namespaces do not collide.
*/ -}}
{{- define "kubesaga.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "kubesaga.fullname" .) | trunc 253 | trimSuffix "-" -}}
{{- end }}
