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
# podman and buildah from Debian (tools/podman.sh: runc, no default ulimits).
# IMAGE_BASE=debootstrap makes FROM debian:bookworm-slim from the Debian
# mirror (tools/image-base.sh, cached per user); IMAGE_BASE=registry lets the
# engine pull it (where a registry is reachable, as in the release workflow).
IMAGE_PKGS  ?= podman buildah runc debootstrap qemu-user-static
ENGINE      ?= tools/podman.sh
IMAGE_BASE  ?= debootstrap
VERSION     ?= $(IMAGE_TAG)
HOST_ARCH   := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
# `make image-multiarch`: one manifest list of these architectures.
IMAGE_ARCHES ?= amd64 arm64

.PHONY: image-deps
image-deps:
	@$(if $(strip $(IMAGE_PKGS)),tools/deps.sh -q $(IMAGE_PKGS),:)

# image-base-ARCH: the base for ARCH; foreign ones need binfmt_misc.
.PHONY: image-base image-base-%
image-base: image-base-$(HOST_ARCH)
image-base-%: image-deps
ifeq ($(IMAGE_BASE),debootstrap)
	@[[ $* == $(HOST_ARCH) ]] || tools/binfmt.sh $*
	@tools/image-base.sh $*
endif

.PHONY: docker-build
docker-build: image-base ## Build the image $(IMAGE_REPO):$(IMAGE_TAG) for this machine's architecture (podman)
	$(ENGINE) build -q --build-arg VERSION=$(VERSION) -t $(IMAGE_REPO):$(IMAGE_TAG) .

# The arm64 base is imported as debian:bookworm-slim-arm64 (so it never
# shadows the host's); the Dockerfile takes it through its DEBIAN argument.
.PHONY: image-multiarch
image-multiarch: $(addprefix image-base-,$(IMAGE_ARCHES)) ## Build $(IMAGE_REPO):$(IMAGE_TAG) for IMAGE_ARCHES as one manifest list
	@$(ENGINE) manifest rm $(IMAGE_REPO):$(IMAGE_TAG) >/dev/null 2>&1 || true
	@$(ENGINE) manifest create $(IMAGE_REPO):$(IMAGE_TAG) >/dev/null
	@set -e; for a in $(IMAGE_ARCHES); do \
	  base=docker.io/library/debian:bookworm-slim; \
	  [[ $(IMAGE_BASE) != debootstrap || $$a == $(HOST_ARCH) ]] || base=$$base-$$a; \
	  echo "image-multiarch: $$a"; \
	  $(ENGINE) build -q --platform linux/$$a --build-arg DEBIAN=$$base --build-arg VERSION=$(VERSION) \
	    --manifest $(IMAGE_REPO):$(IMAGE_TAG) . >/dev/null; \
	done
	@$(ENGINE) manifest inspect $(IMAGE_REPO):$(IMAGE_TAG) | grep -o '"architecture": *"[a-z0-9]*"' | sort | uniq

.PHONY: docker-push image-push
docker-push: ## Push $(IMAGE_REPO):$(IMAGE_TAG) (one architecture)
	$(ENGINE) push $(IMAGE_REPO):$(IMAGE_TAG)

image-push: ## Push the manifest list $(IMAGE_REPO):$(IMAGE_TAG) and every image in it
	$(ENGINE) manifest push --all $(IMAGE_REPO):$(IMAGE_TAG) docker://$(IMAGE_REPO):$(IMAGE_TAG)

# The chart as the release publishes it: version and appVersion VERSION, the
# image repository IMAGE_REPO; into dist/. Needs the dependency in
# charts/envoy-router/charts/ (helm dependency build, or make helm-deps here).
.PHONY: chart-package
chart-package: | $(HELM) ## Package charts/envoy-router as dist/envoy-router-$(VERSION).tgz (image $(IMAGE_REPO))
	@rm -rf build/chart && mkdir -p build/chart dist
	@cp -R charts/envoy-router build/chart/
	@sed -i 's|^  repository: .*|  repository: $(IMAGE_REPO)|' build/chart/envoy-router/values.yaml
	@grep -qx '  repository: $(IMAGE_REPO)' build/chart/envoy-router/values.yaml
	$(HELM) package build/chart/envoy-router --version $(VERSION) --app-version $(VERSION) -d dist

# What can run here of the release workflow, through its make targets.
.PHONY: test-release
test-release: | .cache/bin/helm .cache/bin/actionlint ## actionlint; make chart-package; make image-multiarch (amd64 + arm64 under qemu)
	@tools/run-suite.sh release spec/install/release.sh

.PHONY: runtime-dir
runtime-dir: build/envoy-router ## The image's root file system in build/runtime/ (as the Dockerfile assembles it)
	@tools/runtime-dir.sh build/envoy-router $(RUNTIME_DIR)

# The image suite: build it, then run it (check, version, the operator
# against the loopback cluster); see spec/install/image.sh.
.PHONY: test-image
test-image: | $(CLUSTER_TOOLS) ## Build the image (make docker-build) and run it: check, version, against the cluster
	@tools/run-suite.sh image spec/install/image.sh

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
