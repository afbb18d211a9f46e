# envoy-router: a C host with embedded Lua 5.4 that routes one Envoy Gateway
# to every labelled pod. `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := build

CC      ?= cc
PKGS    := lua5.4 lua5.4-cjson libcurl libmicrohttpd yaml-0.1
WARN    := -Wall -Wextra -Wshadow -Wconversion -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral -Werror
CFLAGS  ?= -O2 -g
# pkg-config runs at first use, not when the Makefile is read: on a fresh
# machine the packages arrive through the `deps-ok` prerequisite below, after
# the Makefile was parsed. Each is computed once per make run.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
CFLAGS  += -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread

# Sanitizer builds live in their own tree so they never mix with normal objects.
ifeq ($(SAN),1)
  BUILD   := build/san
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=address,undefined
else
  BUILD   := build
endif

IMAGE_REPO ?= ghcr.io/envoy-router/envoy-router
IMAGE_TAG  ?= dev

# Tooling, cluster and chart targets (they define CLUSTER_TOOLS, used below).
include mk/*.mk

# --- the binary ------------------------------------------------------------
# Every host/*.c is a module; main.c is the only one not linked into tests.
# host/*.lua and the default scripts/templates are compiled in (embedded.c).
HOST_SRC  := $(filter-out host/main.c,$(wildcard host/*.c))
HOST_OBJ  := $(patsubst host/%.c,$(BUILD)/obj/%.o,$(HOST_SRC)) $(BUILD)/obj/embedded.o
LUA_FILES := $(sort $(wildcard host/*.lua) $(wildcard scripts/*.lua) \
             $(wildcard scripts/lib/*.lua) $(wildcard templates/*.lua))
BIN       := $(BUILD)/envoy-router

.PHONY: build
build: $(BIN) ## Build build/envoy-router

$(BIN): $(BUILD)/obj/main.o $(HOST_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: host/%.c $(wildcard host/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -Ihost -c -o $@ $<

$(BUILD)/embedded.c: host/embed.sh $(LUA_FILES) | $(BUILD)/obj
	host/embed.sh $(LUA_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/embedded.o: $(BUILD)/embedded.c host/embedded.h
	$(CC) $(CFLAGS) -Ihost -c -o $@ $<

$(BUILD)/obj $(BUILD)/test: | deps-ok
	mkdir -p $@

# --- C unit tests (cmocka) -------------------------------------------------
# host/test/test_<name>.c is one test program linked against all host modules.
TEST_SRC := $(wildcard host/test/test_*.c)
TEST_BIN := $(patsubst host/test/%.c,$(BUILD)/test/%,$(TEST_SRC))

$(BUILD)/test/%: host/test/%.c $(HOST_OBJ) $(wildcard host/test/*.h) | $(BUILD)/test
	$(CC) $(CFLAGS) -Ihost -Ihost/test -o $@ $< $(HOST_OBJ) $(LDFLAGS) $(LDLIBS) -lcmocka

.PHONY: test-c
test-c: $(TEST_BIN) ## C unit tests (cmocka)
	@tools/run-suite.sh c --each $(TEST_BIN)

VALGRIND := valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --error-exitcode=9

.PHONY: test-valgrind
test-valgrind: $(TEST_BIN) ## C unit tests under valgrind (memcheck, leaks)
	@SUITE_WRAPPER="$(VALGRIND)" tools/run-suite.sh valgrind --each $(TEST_BIN)

# --- fuzzing ----------------------------------------------------------------
# host/fuzz/fuzz_<x>.c: libFuzzer targets built with Debian's clang under ASan
# and UBSan (the host modules instrumented for coverage, in their own tree).
# `make fuzz` runs each for FUZZ_SECONDS with its committed corpus
# (host/fuzz/corpus/<x>) plus a work corpus in build/fuzz; `test-fuzz` is the
# short run `make test` does. Crashes land in build/fuzz/crash-<x>-*.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := lines watch kubeconfig render http luaval lease
FUZZ_DIR     := build/fuzz
FUZZ_CFLAGS  := -g -O1 -std=c11 -D_GNU_SOURCE -pthread -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=all \
                $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_OBJ     := $(patsubst host/%.c,$(FUZZ_DIR)/obj/%.o,$(HOST_SRC)) $(FUZZ_DIR)/obj/embedded.o
FUZZ_BINS    := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))

# Kept between runs (make would delete them as intermediates of the pattern rule).
.SECONDARY: $(FUZZ_OBJ)

$(FUZZ_DIR)/obj:
	mkdir -p $@

$(FUZZ_DIR)/obj/%.o: host/%.c $(wildcard host/*.h) | $(FUZZ_DIR)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -Ihost -c -o $@ $<

$(FUZZ_DIR)/obj/embedded.o: $(BUILD)/embedded.c host/embedded.h | $(FUZZ_DIR)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Ihost -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: host/fuzz/fuzz_%.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_WITH_LIBFUZZER -Ihost -o $@ $< \
	  $(FUZZ_OBJ) $(LDLIBS)

.PHONY: fuzz-build fuzz test-fuzz
fuzz-build: $(FUZZ_BINS) ## Build the libFuzzer targets (clang, ASan, UBSan)

fuzz: $(FUZZ_BINS) ## Run each libFuzzer target for FUZZ_SECONDS (default 60), one after another
	@FUZZ_DIR=$(FUZZ_DIR) tools/run-suite.sh fuzz tools/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

test-fuzz: $(FUZZ_BINS) ## Short libFuzzer run of each target from its committed corpus
	@FUZZ_DIR=$(FUZZ_DIR) tools/run-suite.sh fuzz tools/fuzz.sh $${TEST_FUZZ_SECONDS:-5} $(FUZZ_TARGETS)

# --- Lua specs (busted) ----------------------------------------------------
.PHONY: test-lua
test-lua: $(BIN) ## Lua specs of the scripts and templates (busted, offline), and luacheck
	@tools/run-suite.sh lua bash -c 'if luacheck -q --no-color scripts templates spec host/*.lua; \
	  then echo "ok - luacheck"; else echo "not ok - luacheck"; fi; busted --lua=lua5.4 spec/unit'

.PHONY: lint-lua
lint-lua: ## luacheck over scripts, templates, specs and the host's Lua
	luacheck scripts templates spec host/*.lua

lint: lint-lua

# --- end-to-end specs against the loopback control plane -------------------
# busted specs in spec/e2e start (or reuse) the cluster, run the built binary
# out of cluster, and create pods whose status they set as a kubelet would.
E2E_BIN ?= $(BIN)

.PHONY: test-e2e
test-e2e: $(BIN) | $(CLUSTER_TOOLS) ## End-to-end specs of the operator (real API server)
	@ENVOY_ROUTER_BIN=$(abspath $(E2E_BIN)) tools/run-suite.sh e2e \
	  busted --lua=lua5.4 -o TAP spec/e2e

.PHONY: bench-faults
bench-faults: $(BIN) | $(CLUSTER_TOOLS) ## The fault specs with 1,000-pod bursts (make test runs 300)
	@E2E_BURST=1000 E2E_FAULT_BOUND=60 ENVOY_ROUTER_BIN=$(abspath $(E2E_BIN)) tools/run-suite.sh faults \
	  busted --lua=lua5.4 -o TAP spec/e2e/faults_spec.lua

# --- the two commands of the README ---------------------------------------
# Every suite runs even when an earlier one fails; the last line sums them.
SUITES ?= test-c test-fuzz test-lua test-smoke test-e2e test-helm test-image test-release test-demo test-dataplane

.PHONY: test
test: deps ## Run every test suite (installs packages and tools when missing)
	@rm -f build/test-results.txt; failed=0; \
	$(MAKE) --no-print-directory build $(CLUSTER_TOOLS) || failed=1; \
	for s in $(SUITES); do $(MAKE) --no-print-directory $$s || failed=1; done; \
	tools/test-summary.sh build/test-results.txt || failed=1; exit $$failed

.PHONY: check
check: deps ## C tests and end-to-end specs under ASan and UBSan; C tests under valgrind
	@rm -f build/test-results.txt; failed=0; \
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1; \
	$(MAKE) --no-print-directory SAN=1 test-c || failed=1; \
	$(MAKE) --no-print-directory SAN=1 test-e2e || failed=1; \
	$(MAKE) --no-print-directory test-valgrind || failed=1; \
	tools/test-summary.sh build/test-results.txt || failed=1; exit $$failed

.PHONY: demo
demo: $(BIN) helm-deps | $(CLUSTER_TOOLS) $(DATAPLANE_TOOLS) ## Local control plane, Envoy Gateway and Envoy, operator, three labelled pods: requests through Envoy
	@tools/demo.sh

# `make demo` as the first command of a clean clone of this checkout's HEAD
# (its own cluster; the per-user tool cache and Debian packages are shared).
.PHONY: test-demo
test-demo: ## make demo in a fresh git clone of HEAD; checks what it prints
	@tools/run-suite.sh demo spec/install/demo.sh

.PHONY: help
help:
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

.PHONY: clean
clean:
	rm -rf build
