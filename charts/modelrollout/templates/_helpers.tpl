{{/* The chart's name, overridable. */}}
{{- define "modelrollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name: `<release>-modelrollout`, or the release name when it already contains the chart name. */}}
{{- define "modelrollout.fullname" -}}
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

{{- define "modelrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelrollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelrollout.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modelrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelrollout
{{- end }}

{{- define "modelrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelrollout.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelrollout.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
What the operator does, and nothing more (rendered into the ClusterRole or each Role):
- modelrollouts: kopf lists/watches them and patches its annotations (progress, finalizer);
  /status is where every decision is written; /finalizers lets owner references with
  blockOwnerDeletion be set where OwnerReferencesPermissionEnforcement is on.
- deployments: one per model version, written by server-side apply (a patch; one that creates the
  object needs create too), read by name or labels, deleted after promotion/rollback.
- services: the rollout's Service and preview Service, written by server-side apply; listed by label
  when a rollout is deleted, to give adopted ones their selector back; never deleted.
- poddisruptionbudgets: one per version when spec.serving.podDisruptionBudget asks (apply, delete).
- pods: read only, to find the ready serving pods whose /metrics the analysis scrapes.
- events: the verdicts and phase changes users see in `kubectl describe` (core and events.k8s.io).
- jobs: spec.validation's Job, created once per run and read back (its pod's termination message is read
  through the pods rule); deleted when its version no longer waits for it (superseded, aborted); finished
  ones are removed by their ttlSecondsAfterFinished. Also spec.monitoring.retrain's Job, created from the
  user's template once drift lasted and read back until it ends.
*/}}
{{- define "modelrollout.rules" -}}
- apiGroups: [modelrollout.dev]
  resources: [modelrollouts]
  verbs: [get, list, watch, patch]
- apiGroups: [modelrollout.dev]
  resources: [modelrollouts/status]
  verbs: [get, patch, update]
- apiGroups: [modelrollout.dev]
  resources: [modelrollouts/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# By name only, never listed: `get` the Secrets a rollout's analysis.prometheus names (CA bundle, bearer
# token); `get` and server-side apply (create, patch) each rollout's own prediction-token key Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
# By name only, never listed: each rollout's own mirror ConfigMap (<name>-mirror), read and server-side applied.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# spec.trafficRouting.gatewayAPI: read the user's HTTPRoute, server-side apply its backend weights.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, delete]
{{- end }}

{{/* Leader election: asked for, or forced by more than one replica. */}}
{{- define "modelrollout.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}
