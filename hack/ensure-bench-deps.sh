#!/usr/bin/env bash
# What only `make bench-authz` needs (never `make test`): wrk (Debian package) as the load
# generator for saturated runs, vegeta (open loop) for paced ones, and Open Policy Agent, both
# built from their pinned Go modules (hack/build-tools.sh, cached like the control plane).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v wrk >/dev/null 2>&1; then
  echo "[ensure-bench-deps] installing wrk" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
"$root/hack/build-tools.sh" opa vegeta
