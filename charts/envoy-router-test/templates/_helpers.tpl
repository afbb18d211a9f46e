{{- define "envoy-router-test.fullname" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- end }}

{{- define "envoy-router-test.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The envoy-router subchart's values, as that chart sees them. */}}
{{- define "envoy-router-test.router" -}}
{{- toYaml (index .Values "envoy-router") }}
{{- end }}

{{/*
The Gateway's name, computed by the envoy-router chart's own helper. With
Envoy Gateway in GatewayNamespace mode (the envoy-router chart's setting) the
Envoy proxy Service in this namespace carries the same name.
*/}}
{{- define "envoy-router-test.gatewayName" -}}
{{- $ctx := dict "Values" (index .Values "envoy-router") "Release" .Release "Chart" (dict "Name" "envoy-router") }}
{{- include "envoy-router.gatewayName" $ctx }}
{{- end }}
