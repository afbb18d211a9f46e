# The data plane: Envoy Gateway and Envoy (tools/build.sh groups eg and
# envoy, cached per user), run by tools/dataplane.sh for the data-plane specs,
# `make demo` and the bench figures.

DATAPLANE_TOOLS := .cache/bin/envoy-gateway .cache/bin/envoy

.cache/bin/envoy-gateway:
	tools/build.sh eg

.cache/bin/envoy:
	tools/build.sh envoy

# Specs that send requests through Envoy and count every answer. Envoy
# Gateway's ports are fixed, so this suite runs alone and last; whatever
# happens, the data plane is stopped and its addresses removed on exit.
.PHONY: test-dataplane
test-dataplane: build/envoy-router helm-deps | $(CLUSTER_TOOLS) $(DATAPLANE_TOOLS) .cache/bin/helm ## Traffic through real Envoy Gateway and Envoy (client loops; needs root)
	@ENVOY_ROUTER_BIN=$(abspath $(E2E_BIN)) tools/run-suite.sh dataplane bash -c \
	  'trap "tools/dataplane.sh down" EXIT; busted --lua=lua5.4 -o TAP spec/dataplane'

.PHONY: dataplane-down
dataplane-down: ## Stop Envoy Gateway, the proxies and pod stand-ins of tools/dataplane.sh
	@tools/dataplane.sh down
