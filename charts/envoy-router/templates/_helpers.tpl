{{/*
Names. The operator's own objects carry the full name; the Gateway (and, in
Envoy Gateway's GatewayNamespace mode, the proxy Deployment, Service and
ServiceAccount Envoy Gateway creates for it) carries gateway.name, so the two
never collide.
*/}}
{{- define "envoy-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "envoy-router.fullname" -}}
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

{{/*
The one name of the Gateway: the Gateway's metadata.name, the operator's
--gateway-name, the EnvoyProxy's name and the Envoy proxy Service's name.
Callable from a parent chart with a context of its own
(dict "Values" <these values> "Release" .Release "Chart" (dict "Name" "envoy-router")).
*/}}
{{- define "envoy-router.gatewayName" -}}
{{- $go := dig "gatewayName" "" .Values.operator }}
{{- if and $go .Values.gateway.name (ne $go .Values.gateway.name) }}
{{- fail (printf "operator.gatewayName (%s, the Go chart's key) and gateway.name (%s) differ: set gateway.name only" $go .Values.gateway.name) }}
{{- end }}
{{- $gw := default $go .Values.gateway.name }}
{{- if $gw }}
{{- if eq $gw (include "envoy-router.fullname" .) }}
{{- fail (printf "gateway.name %s is the operator's own name: Envoy Gateway names the proxy Deployment, Service and ServiceAccount after the Gateway, in this namespace; choose another gateway.name" $gw) }}
{{- end }}
{{- $gw }}
{{- else }}
{{- printf "%s-gateway" (include "envoy-router.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "envoy-router.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "envoy-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "envoy-router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "envoy-router.labels" -}}
helm.sh/chart: {{ include "envoy-router.chart" . }}
{{ include "envoy-router.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "envoy-router.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "envoy-router.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* operator.watchNamespace after tpl ("" = all namespaces). */}}
{{- define "envoy-router.watchNamespace" -}}
{{- tpl .Values.operator.watchNamespace . }}
{{- end }}

{{/* The ConfigMap mounted as the scripts directory, or "" for the built-in scripts. */}}
{{- define "envoy-router.scriptsConfigMap" -}}
{{- if and .Values.scripts.existingConfigMap .Values.scripts.files }}
{{- fail "scripts: set existingConfigMap or files, not both" }}
{{- end }}
{{- if .Values.scripts.existingConfigMap }}
{{- .Values.scripts.existingConfigMap }}
{{- else if .Values.scripts.files }}
{{- printf "%s-scripts" (include "envoy-router.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/*
Leader election: on unless turned off; off is allowed only with one replica
(the Deployment then uses Recreate, so no two writers ever overlap).
*/}}
{{- define "envoy-router.leaderElect" -}}
{{- if .Values.leaderElection.enabled }}true
{{- else if gt (int .Values.replicaCount) 1 }}
{{- fail "leaderElection.enabled=false needs replicaCount 1: without a leader, every replica writes" }}
{{- end }}
{{- end }}

{{- define "envoy-router.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Envoy Gateway's controllerName, read from the subchart's values so the two cannot drift. */}}
{{- define "envoy-router.controllerName" -}}
{{- dig "config" "envoyGateway" "gateway" "controllerName" "gateway.envoyproxy.io/gatewayclass-controller" (index .Values "envoy-gateway") }}
{{- end }}
