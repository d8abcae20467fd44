#!/usr/bin/env bash
# Builds, from pinned Go modules, the binaries that tests and local runs need:
#   kube-apiserver, kube-controller-manager, kubectl (`kubernetes`), and for the real node
#   kube-scheduler, kubelet and kube-proxy (`kubernetes_node`) (k8s.io/kubernetes),
#   etcd, etcdctl and etcdutl (go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3), helm
#   (helm.sh/helm/v4) and promtool (github.com/prometheus/prometheus/cmd/promtool: checks and
#   unit-tests the chart's alerts),
#   kstatus (hack/kstatus against sigs.k8s.io/cli-utils: what Flux and Helm --wait conclude),
#   cargo-deny (crates.io; hack/deny.sh); cargo-machete (crates.io; make test);
#   and, for `make bench-authz` only (`hack/build-tools.sh opa vegeta`), Open Policy Agent
#   (github.com/open-policy-agent/opa) and vegeta (github.com/tsenart/vegeta).
# Binaries are cached per version under $CE_TOOLS_CACHE (outside the git tree, so a
# fresh clone reuses them) and linked into .local/bin. A tool is rebuilt only when
# its pinned version changes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/hack/versions.env"
cache=${CE_TOOLS_CACHE:-$HOME/.cache/ce-operator/tools}
bin_link_dir="$root/.local/bin"
mkdir -p "$cache" "$bin_link_dir"

log() { printf '[build-tools %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

command -v go >/dev/null || { log "go is required (Go >= 1.26)"; exit 1; }
# No DWARF from the compiler: the links strip it anyway (-ldflags -w), and making it costs 13 %
# of the compile's CPU (etcd's three binaries: 81 CPU-s with it, 71 without; the same sizes).
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-gcflags=all=-dwarf=false"

# Prints progress every 30 s while a long build runs, so a cold build is not silent.
with_heartbeat() {
  local what=$1; shift
  local start=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30 & wait $! || true
    kill -0 "$pid" 2>/dev/null && log "  still building $what ($((SECONDS - start)) s)"
  done
  wait "$pid"
}

all_present() {
  local dir=$1; shift
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

link_bins() {
  local dir=$1; shift
  for b in "$@"; do ln -sfn "$dir/$b" "$bin_link_dir/$b"; done
}

# kubernetes_module DIR: the wrapper module the Kubernetes binaries are built in.
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
# paths; a dependent module ignores those replaces, so ours are derived from its go.mod.
kubernetes_module() {
  local mod=$1 v=$KUBERNETES_VERSION
  rm -rf "$mod"; mkdir -p "$mod"
  local gomod
  gomod=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$gomod" ]] || { log "could not download k8s.io/kubernetes@$v"; exit 1; }
  local staging_version="v0.${v#v1.}"
  {
    echo "module ce-operator.local/kubernetes-tools"
    echo
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    grep -E '^[[:space:]]+k8s\.io/[^[:space:]]+ v0\.0\.0$' "$gomod" | awk -v sv="$staging_version" '{print "replace " $1 " => " $1 " " sv}'
  } >"$mod/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${kubernetes_control_plane[@]}" "${kubernetes_node[@]}"
    printf ')\n'
  } >"$mod/tools.go"
  log "resolving modules ($(grep -c '^replace' "$mod/go.mod") staging replaces at $staging_version)"
  (cd "$mod" && go mod tidy)
  touch "$mod/.resolved"
}

# The Kubernetes binaries, in two builds of one module: the control plane the tests need, and
# the real node's, which only the e2e needs (hack/test.sh builds them at a low priority, in the
# time the tests leave). One at a time (a lock): the second build reuses the first's module
# and compiled packages.
kubernetes_control_plane=(kube-apiserver kube-controller-manager kubectl)
kubernetes_node=(kube-scheduler kubelet kube-proxy)
build_kubernetes() { kubernetes_binaries control-plane "${kubernetes_control_plane[@]}"; }
build_kubernetes_node() { kubernetes_binaries node "${kubernetes_node[@]}"; }
# kubernetes_binaries GROUP BINARY...
kubernetes_binaries() {
  local group=$1; shift
  local v=$KUBERNETES_VERSION dir="$cache/kubernetes-$KUBERNETES_VERSION" lock
  mkdir -p "$dir/bin"
  exec {lock}>"$dir.lock"
  flock "$lock"
  if [[ -f "$dir/.done-$group" ]] && all_present "$dir/bin" "$@"; then link_bins "$dir/bin" "$@"; exec {lock}>&-; return; fi
  log "building kubernetes $v: $*"
  [[ -f "$dir/mod/.resolved" ]] || kubernetes_module "$dir/mod"
  local minor=${v#v1.}; minor=${minor%%.*}
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$v"
  (cd "$dir/mod" && with_heartbeat "kubernetes ($group)" go build -tags tools -ldflags "$ldflags" -o "$dir/bin/" "${@/#/k8s.io/kubernetes/cmd/}")
  touch "$dir/.done-$group"
  exec {lock}>&-
  link_bins "$dir/bin" "$@"
  log "kubernetes $v built: $*"
}

# wrapper_module DIR NAME "MODULE@VERSION..." PACKAGE...: a module in DIR that requires each
# MODULE at its VERSION and imports the PACKAGEs, resolved (`go install pkg@version` refuses
# modules with replace directives, so the tools are built inside such a wrapper).
wrapper_module() {
  local mod=$1 name=$2 required=$3; shift 3
  printf 'module ce-operator.local/%s-tools\n\ngo 1.24\n' "$name" >"$mod/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "%s"\n' "$@"
    printf ')\n'
  } >"$mod/tools.go"
  # shellcheck disable=SC2086 # several MODULE@VERSIONs, split on purpose
  (cd "$mod" && go get $required && go mod tidy)
}

# etcd, and etcdctl and etcdutl of the same release (an etcd snapshot saved and restored: the
# backup-and-restore test, `hack/cluster.sh snapshot`): one wrapper module and one build, so
# that the three share one module resolution and their common packages compile once.
build_etcd() {
  local v=$ETCD_VERSION dir="$cache/etcd-$ETCD_VERSION"
  local bins=(etcd etcdctl etcdutl)
  if [[ -f "$dir/.done" ]] && all_present "$dir/bin" "${bins[@]}"; then link_bins "$dir/bin" "${bins[@]}"; return; fi
  log "building etcd, etcdctl and etcdutl $v"
  local mod="$dir/mod"
  rm -rf "$dir"; mkdir -p "$mod" "$dir/bin"
  local pkgs=(go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3)
  wrapper_module "$mod" etcd "${pkgs[*]/%/@$v}" "${pkgs[@]}"
  # go build names a package ending in a major version after the element before it: the
  # server's binary is "server".
  (cd "$mod" && with_heartbeat etcd go build -tags tools -ldflags "-s -w" -o "$dir/bin/" "${pkgs[@]}")
  mv "$dir/bin/server" "$dir/bin/etcd"
  touch "$dir/.done"
  link_bins "$dir/bin" "${bins[@]}"
  log "etcd, etcdctl and etcdutl $v built"
}

# go_install_tool NAME VERSION PACKAGE: `go install PACKAGE@VERSION` (stripped) into the
# cache, once per version; the binary is NAME.
go_install_tool() {
  local name=$1 v=$2 pkg=$3 dir="$cache/$1-$2"
  if [[ -f "$dir/.done" ]]; then link_bins "$dir/bin" "$name"; return; fi
  log "building $name $v"
  rm -rf "$dir"; mkdir -p "$dir/bin"
  with_heartbeat "$name" env GOBIN="$dir/bin" go install -ldflags "-s -w" "$pkg@$v"
  touch "$dir/.done"
  link_bins "$dir/bin" "$name"
  log "$name $v built"
}

build_helm() { go_install_tool helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm; }

# The real node's container runtime (`hack/cluster.sh up --node`): containerd 2.x, its CLI
# (ctr, which imports the operator's image) and the runc shim. runc itself and the CNI
# plugins come from Debian's packages (hack/ensure-deps.sh).
build_containerd() {
  local v=$CONTAINERD_VERSION dir="$cache/containerd-$CONTAINERD_VERSION"
  local bins=(containerd ctr containerd-shim-runc-v2)
  if [[ -f "$dir/.done" ]]; then link_bins "$dir/bin" "${bins[@]}"; return; fi
  log "building containerd $v"
  local mod="$dir/mod"
  rm -rf "$dir"; mkdir -p "$mod" "$dir/bin"
  local cmds=(github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
    github.com/containerd/containerd/v2/cmd/ctr)
  wrapper_module "$mod" containerd "github.com/containerd/containerd/v2@$v" "${cmds[@]}"
  # Static and without the btrfs snapshotter (cgo); the node uses overlayfs.
  (cd "$mod" && with_heartbeat containerd env CGO_ENABLED=0 go build -tags "tools no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" -o "$dir/bin/" "${cmds[@]}")
  touch "$dir/.done"
  link_bins "$dir/bin" "${bins[@]}"
  log "containerd $v built"
}

# go-containerregistry's crane: `make image` assembles the operator's OCI image with it.
build_crane() { go_install_tool crane "$CRANE_VERSION" github.com/google/go-containerregistry/cmd/crane; }

# Benchmark only (`make bench-authz`), never built by `make test`.
build_opa() { go_install_tool opa "$OPA_VERSION" github.com/open-policy-agent/opa; }
# Benchmark only: vegeta sends at a fixed rate whether or not earlier requests were answered
# (open loop), for latency free of coordinated omission.
build_vegeta() { go_install_tool vegeta "$VEGETA_VERSION" github.com/tsenart/vegeta/v12; }

# Checks and unit-tests the chart's alert rules (tests/integration/observability.rs). Prometheus 3.x is
# published as Go module v0.3xx.y: v0.316.0 is Prometheus 3.16.0, which `--version` reports.
# Built without service discovery (Prometheus's `remove_all_sd` tag: no cloud SDKs, 93 s
# instead of 216 s), which `promtool check rules` and `promtool test rules` do not use.
build_promtool() {
  local v=$PROMTOOL_VERSION dir="$cache/promtool-$PROMTOOL_VERSION-nosd"
  if [[ -f "$dir/.done" ]]; then link_bins "$dir/bin" promtool; return; fi
  log "building promtool $v"
  rm -rf "$dir"; mkdir -p "$dir/bin"
  local minor=${v#v0.}; minor=${minor%%.*}
  local release="${minor:0:1}.$((10#${minor:1})).${v##*.}"
  with_heartbeat promtool env GOBIN="$dir/bin" GOFLAGS="$GOFLAGS -mod=mod" CGO_ENABLED=0 go install -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
    "github.com/prometheus/prometheus/cmd/promtool@$v"
  touch "$dir/.done"
  link_bins "$dir/bin" promtool
  log "promtool $v built"
}

# kstatus as GitOps tools compute it (tests/integration/gitops.rs): hack/kstatus/main.go built against
# sigs.k8s.io/cli-utils, in a wrapper module made here (the repository holds no go.mod).
build_kstatus() {
  local v=$CLI_UTILS_VERSION src="$root/hack/kstatus/main.go"
  local dir="$cache/kstatus-$v-$(sha256sum "$src" | cut -c1-12)"
  if [[ -f "$dir/.done" ]]; then link_bins "$dir/bin" kstatus; return; fi
  log "building kstatus (cli-utils $v)"
  rm -rf "$dir"; mkdir -p "$dir/mod" "$dir/bin"
  cp "$src" "$dir/mod/main.go"
  printf 'module ce-operator.local/kstatus\n\ngo 1.24\n' >"$dir/mod/go.mod"
  (cd "$dir/mod" && go get "sigs.k8s.io/cli-utils@$v" && go mod tidy &&
    with_heartbeat kstatus go build -ldflags "-s -w" -o "$dir/bin/kstatus" .)
  touch "$dir/.done"
  link_bins "$dir/bin" kstatus
  log "kstatus built"
}

# cargo_tool NAME VERSION: a cargo subcommand from crates.io, with its own lock file. Built
# for build time, not run time (they read a lock file and a few manifests in under a second):
# without cargo-deny's whole-program LTO and one codegen unit, at opt-level 1, and in one
# target directory for all that one run of this script builds, so that their common
# dependencies compile once (cold: cargo-deny 3 min 31 s -> 1 min 21 s, cargo-machete after
# it 2 min 1 s -> 49 s).
cargo_tools_build="$cache/cargo-tools-build.$$"
cargo_tool() {
  local name=$1 v=$2 dir="$cache/$1-$2"
  if [[ -x "$dir/bin/$name" ]]; then link_bins "$dir/bin" "$name"; return; fi
  log "building $name $v (a minute or two, once)"
  trap 'rm -rf "$cargo_tools_build"' EXIT
  with_heartbeat "$name" env CARGO_TARGET_DIR="$cargo_tools_build" CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    cargo install "$name" --version "$v" --locked --root "$dir" --quiet
  link_bins "$dir/bin" "$name"
  log "$name built"
}

# cargo-deny (hack/deny.sh): licences, bans, sources, advisories.
build_cargo_deny() { cargo_tool cargo-deny "$CARGO_DENY_VERSION"; }

# cargo-machete (make test): dependencies declared and never used.
build_cargo_machete() { cargo_tool cargo-machete "$CARGO_MACHETE_VERSION"; }

# cargo-mutants (make mutants): mutation testing of the model.
build_cargo_mutants() { cargo_tool cargo-mutants "$CARGO_MUTANTS_VERSION"; }

want=${*:-etcd kubernetes kubernetes_node containerd crane helm promtool kstatus}
for t in $want; do "build_$t"; done
log "tools ready in $bin_link_dir"
