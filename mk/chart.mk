# Helm charts, the container image and the release tooling: charts/,
# Dockerfile, .github/workflows/. Tools come from tools/build.sh (cached per
# user); the Envoy Gateway chart is packaged from its Go module, offline.

HELM          ?= .cache/bin/helm
HELM_UNITTEST := .cache/bin/helm-unittest
ACTIONLINT    := .cache/bin/actionlint
# The Envoy Gateway module that tools/build.sh links (its chart and CRDs).
GATEWAY_SRC   := .cache/src/gateway
GATEWAY_CHART := charts/envoy-router/charts/gateway-helm-v1.9.0.tgz
RUNTIME_DIR   := build/runtime
# `make upgrade`: release, namespace and an optional values file.
RELEASE   ?= envoy-router
NAMESPACE ?= envoy-router
VALUES    ?=

.cache/bin/helm .cache/bin/helm-unittest &:
	tools/build.sh helm helm-unittest

.cache/bin/actionlint:
	tools/build.sh actionlint

$(GATEWAY_SRC)/VERSION:
	tools/build.sh crds

# The packaged subchart stands in for `helm dependency build`, which would
# pull oci://docker.io/envoyproxy/gateway-helm (see tools/package-gateway-chart.sh).
$(GATEWAY_CHART): tools/package-gateway-chart.sh | $(GATEWAY_SRC)/VERSION .cache/bin/helm
	tools/package-gateway-chart.sh charts/envoy-router/charts

.PHONY: helm-deps
helm-deps: $(GATEWAY_CHART) | .cache/bin/helm ## Package both charts' dependencies offline (not committed)
	@$(HELM) dependency build --skip-refresh charts/envoy-router-test >/dev/null
	@echo "helm-deps: $$(ls charts/envoy-router/charts charts/envoy-router-test/charts | grep -c tgz) packaged charts"

.PHONY: helm-test
helm-test: helm-deps | .cache/bin/helm .cache/bin/helm-unittest ## helm lint and helm-unittest of both charts (no cluster)
	@tools/run-suite.sh helm-unit spec/helm/run.sh --charts

.PHONY: test-helm
test-helm: build/envoy-router helm-deps | .cache/bin/helm .cache/bin/helm-unittest \
  .cache/bin/etcd .cache/bin/kube-apiserver .cache/bin/kube-controller-manager .cache/bin/kubectl ## Helm suite: lint, helm-unittest, server-side dry runs, install into the test cluster
	@ENVOY_ROUTER_BIN=$(abspath build/envoy-router) tools/run-suite.sh helm spec/helm/run.sh

# --- the image ---------------------------------------------------------------
.PHONY: docker-build
docker-build: ## Build the image $(IMAGE_REPO):$(IMAGE_TAG) (needs docker)
	docker build --build-arg VERSION=$(IMAGE_TAG) -t $(IMAGE_REPO):$(IMAGE_TAG) .

.PHONY: docker-push
docker-push: ## Push $(IMAGE_REPO):$(IMAGE_TAG)
	docker push $(IMAGE_REPO):$(IMAGE_TAG)

.PHONY: runtime-dir
runtime-dir: build/envoy-router ## The image's runtime files in build/runtime/ (binary, its .so files, scripts)
	@tools/runtime-dir.sh build/envoy-router $(RUNTIME_DIR)

.PHONY: test-runtime
test-runtime: runtime-dir | .cache/bin/etcd .cache/bin/kube-apiserver .cache/bin/kube-controller-manager .cache/bin/kubectl ## Run build/runtime as the image would (env -i, own libs): check, then against the cluster
	@tools/run-suite.sh runtime spec/helm/image-runtime.sh $(RUNTIME_DIR)

# --- deploy and lint ---------------------------------------------------------
.PHONY: upgrade
upgrade: helm-deps ## helm upgrade --install charts/envoy-router (RELEASE, NAMESPACE, VALUES, IMAGE_REPO, IMAGE_TAG)
	$(HELM) upgrade --install $(RELEASE) charts/envoy-router --namespace $(NAMESPACE) --create-namespace \
	  --set image.repository=$(IMAGE_REPO) --set image.tag=$(IMAGE_TAG) $(if $(VALUES),-f $(VALUES))

# `lint` gathers lint-* targets; other makefiles may add theirs the same way.
.PHONY: lint lint-workflows lint-charts
lint: lint-workflows lint-charts ## Lint the workflows (actionlint) and the charts (helm lint)

lint-workflows: | .cache/bin/actionlint
	$(ACTIONLINT) .github/workflows/*.yml

lint-charts: helm-deps | .cache/bin/helm
	$(HELM) lint --strict charts/envoy-router charts/envoy-router-test
	$(HELM) lint --strict charts/envoy-router -f charts/envoy-router/values-secondary.yaml
