# syntax=docker/dockerfile:1
# envoy-router image: the C host with its embedded Lua, on Debian bookworm.
#
#   docker build --build-arg VERSION=1.2.3 -t ghcr.io/<owner>/envoy-router:1.2.3 .
#
# `make runtime-dir` assembles the same runtime file set in build/runtime/
# without a container engine, and the runtime suite runs it.

ARG DEBIAN=debian:bookworm-slim

FROM ${DEBIAN} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config \
      liblua5.4-dev lua-cjson-dev libcurl4-openssl-dev libmicrohttpd-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY mk/ mk/
COPY host/ host/
COPY scripts/ scripts/
COPY templates/ templates/
ARG VERSION=0.0.0-dev
# CFLAGS from the environment keeps the Makefile's own flags (it appends).
RUN CFLAGS="-O2 -g -DENVOY_ROUTER_VERSION=\\\"${VERSION}\\\"" make build \
 && ./build/envoy-router version \
 && ./build/envoy-router check

FROM ${DEBIAN}
# The shared libraries of the binary, from Debian's runtime packages.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libcurl4 liblua5.4-0 lua-cjson libmicrohttpd12 libyaml-0-2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/envoy-router /usr/local/bin/envoy-router
# The built-in scripts, for reference: the binary embeds them and runs them
# unless --scripts-dir names a directory (the chart mounts a ConfigMap at
# /etc/envoy-router/scripts). Copy these to start a customisation.
COPY scripts/ /usr/share/envoy-router/scripts/
COPY templates/ /usr/share/envoy-router/scripts/templates/
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/envoy-router"]
