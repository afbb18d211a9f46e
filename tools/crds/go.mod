// Pins the upstream modules whose files (not code) the tests use: Gateway API
// CRDs, Envoy Gateway's chart and CRDs, and the prometheus-operator
// ServiceMonitor CRD. Nothing here is compiled; tools/build.sh downloads the
// modules and reads their directories.
module envoy-router/tools/crds

go 1.26.0

require (
	github.com/envoyproxy/gateway v1.9.0
	github.com/prometheus-operator/prometheus-operator v0.85.0
	sigs.k8s.io/gateway-api v1.6.1
)
