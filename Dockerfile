# syntax=docker/dockerfile:1
# envoy-router image: the C host with its embedded Lua, built on Debian
# bookworm; the image itself is empty (scratch) but for the binary, its
# shared libraries and loader, CA certificates and the default scripts. No
# shell, no package manager; runs as user 65532.
#
#   docker build --build-arg VERSION=1.2.3 -t ghcr.io/<owner>/envoy-router:1.2.3 .
#   make docker-build     the same with podman/buildah (tools/image-base.sh
#                         makes the base image from the Debian mirror)
#
# tools/runtime-dir.sh assembles the root file system (`make runtime-dir`
# does the same on the host into build/runtime/).

ARG DEBIAN=debian:bookworm-slim

FROM ${DEBIAN} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config binutils ca-certificates \
      liblua5.4-dev lua-cjson-dev libcurl4-openssl-dev libmicrohttpd-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY mk/ mk/
COPY host/ host/
COPY scripts/ scripts/
COPY templates/ templates/
COPY tools/deps.sh tools/runtime-dir.sh tools/
ARG VERSION=0.0.0-dev
# CFLAGS from the environment keeps the Makefile's own flags (it appends).
# DEB_PKGS: the build needs only what was installed above.
RUN CFLAGS="-O2 -g -DENVOY_ROUTER_VERSION=\\\"${VERSION}\\\"" \
      make build DEB_PKGS="liblua5.4-dev lua-cjson-dev libcurl4-openssl-dev libmicrohttpd-dev libyaml-dev" \
 && ./build/envoy-router version \
 && ./build/envoy-router check \
 && tools/runtime-dir.sh build/envoy-router /rootfs

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/envoy-router"]
