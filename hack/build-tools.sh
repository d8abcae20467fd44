#!/usr/bin/env bash
# Builds the binaries that tests and local runs need. From pinned Go modules, in one module
# (see go_tools_module): etcd, etcdctl and etcdutl; kube-apiserver, kube-controller-manager and
# kubectl (`kubernetes`), and for the real node kube-scheduler, kubelet and kube-proxy
# (`kubernetes_node`); containerd, ctr and the runc shim; helm; promtool; kstatus
# (hack/kstatus); crane. From crates.io: cargo-deny (hack/deny.sh), cargo-machete (make test),
# cargo-mutants (make mutants). For `make bench-authz` only (`hack/build-tools.sh opa vegeta`):
# Open Policy Agent and vegeta, each from its own module.
# Binaries are cached under $CE_TOOLS_CACHE (outside the git tree, so a fresh clone reuses
# them) and linked into .local/bin; they are rebuilt only when a pinned version changes.
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
  # A second's poll, not a 30 s sleep: the build's end is not kept waiting for the next beat.
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    (((SECONDS - start) % 30 == 0)) && kill -0 "$pid" 2>/dev/null && log "  still building $what ($((SECONDS - start)) s)"
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

# The Go tools of the tests, from one module. Kubernetes, etcd, containerd, helm, promtool,
# kstatus and crane share most of their dependencies (the Kubernetes libraries, gRPC, protobuf,
# OpenTelemetry): resolved together, each shared package is compiled once for all (cold: 663
# CPU-s, 366 s, for the sixteen binaries, against about 1,250 CPU-s when each tool had a
# module of its own).
# The module pins what Kubernetes pins: its staging modules at the release's own version (a
# dependent module ignores k8s.io/kubernetes's replaces to local paths, so ours are derived
# from its go.mod), and containerd is of the line built against that Kubernetes (containerd
# 2.3 and Kubernetes 1.36 share k8s.io/cri-api v0.36). A change of any version here is a new
# module and rebuilds them all, reusing Go's build cache for every package that did not change.
go_tools_id=$(printf '%s\n' "$KUBERNETES_VERSION" "$ETCD_VERSION" "$HELM_VERSION" "$PROMTOOL_VERSION" \
  "$CONTAINERD_VERSION" "$CRANE_VERSION" "$CLI_UTILS_VERSION" | cat - "$root/hack/kstatus/main.go" | sha256sum | cut -c1-12)
go_tools="$cache/go-tools-$go_tools_id"

# The binaries of each tool, and the packages they are built from.
declare -A go_tool_bins=(
  [etcd]="etcd etcdctl etcdutl"
  [kubernetes]="kube-apiserver kube-controller-manager kubectl"
  [kubernetes_node]="kube-scheduler kubelet kube-proxy"
  [containerd]="containerd ctr containerd-shim-runc-v2"
  [helm]=helm [promtool]=promtool [kstatus]=kstatus [crane]=crane
)
# etcd, etcdctl and etcdutl: an etcd snapshot saved and restored (the backup-and-restore test,
# `hack/cluster.sh snapshot`). The real node's container runtime (`hack/cluster.sh up --node`):
# containerd, its CLI (ctr imports the operator's image) and the runc shim; runc itself and the
# CNI plugins come from Debian's packages (hack/ensure-deps.sh). promtool checks and unit-tests
# the chart's alerts (tests/integration/observability.rs). kstatus is hack/kstatus/main.go: what
# Flux and Helm --wait conclude (tests/integration/gitops.rs). crane assembles the operator's
# OCI image (`make image`).
declare -A go_tool_pkgs=(
  [etcd]="go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3"
  [kubernetes]="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl"
  [kubernetes_node]="k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy"
  [containerd]="github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
  [helm]=helm.sh/helm/v4/cmd/helm
  [promtool]=github.com/prometheus/prometheus/cmd/promtool
  [kstatus]=./kstatus
  [crane]=github.com/google/go-containerregistry/cmd/crane
)
# Module paths at their pinned versions (`go get`), besides k8s.io/kubernetes itself. Prometheus
# 3.x is published as Go module v0.3xx.y: v0.316.0 is Prometheus 3.16.0.
go_tool_modules=(
  "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdutl/v3@$ETCD_VERSION"
  "github.com/containerd/containerd/v2@$CONTAINERD_VERSION" "helm.sh/helm/v4@$HELM_VERSION"
  "github.com/prometheus/prometheus@$PROMTOOL_VERSION" "sigs.k8s.io/cli-utils@$CLI_UTILS_VERSION"
  "github.com/google/go-containerregistry@$CRANE_VERSION"
)

# go_tools_module DIR: the module, resolved.
go_tools_module() {
  local mod=$1 v=$KUBERNETES_VERSION
  rm -rf "$mod"; mkdir -p "$mod/kstatus"
  local gomod
  gomod=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$gomod" ]] || { log "could not download k8s.io/kubernetes@$v"; exit 1; }
  local staging_version="v0.${v#v1.}"
  {
    echo "module ce-operator.local/go-tools"
    echo
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    grep -E '^[[:space:]]+k8s\.io/[^[:space:]]+ v0\.0\.0$' "$gomod" | awk -v sv="$staging_version" '{print "replace " $1 " => " $1 " " sv}'
  } >"$mod/go.mod"
  cp "$root/hack/kstatus/main.go" "$mod/kstatus/main.go"
  local pkgs=() t
  for t in "${!go_tool_pkgs[@]}"; do
    # shellcheck disable=SC2206 # a list of packages, split on purpose
    [[ $t == kstatus ]] || pkgs+=(${go_tool_pkgs[$t]})
  done
  # go mod tidy keeps what some package of the module imports: a file behind a build tag
  # imports the tools' main packages.
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "%s"\n' "${pkgs[@]}"
    printf ')\n'
  } >"$mod/tools.go"
  log "resolving the Go tools' module ($(grep -c '^replace' "$mod/go.mod") Kubernetes staging modules at $staging_version)"
  (cd "$mod" && go get "${go_tool_modules[@]}" && go mod tidy)
  touch "$mod/.resolved"
}

# build_go_tools TOOL...: the tools' binaries not yet built, in one `go build` (a tool is
# built once, whichever of two runs of this script asks first: the other waits for it, then
# finds it built).
build_go_tools() {
  local todo=() pkgs=() t lock
  mkdir -p "$go_tools/bin"
  exec {lock}>"$go_tools.lock"
  flock "$lock"
  for t in "$@"; do
    # shellcheck disable=SC2086
    if [[ -f "$go_tools/.done-$t" ]] && all_present "$go_tools/bin" ${go_tool_bins[$t]}; then continue; fi
    todo+=("$t")
    # shellcheck disable=SC2206
    pkgs+=(${go_tool_pkgs[$t]})
  done
  if ((${#todo[@]} > 0)); then
    log "building ${todo[*]}"
    [[ -f "$go_tools/mod/.resolved" ]] || go_tools_module "$go_tools/mod"
    local v=$KUBERNETES_VERSION minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    local p=${PROMTOOL_VERSION#v0.}
    p=${p%%.*}
    # One set of flags for every build, so that each package's compiled form is the same
    # whatever binary needs it. Static (no cgo), stripped; no btrfs, devmapper or ZFS
    # snapshotters in containerd (the node uses overlayfs); no service discovery in promtool
    # (Prometheus's `remove_all_sd`: no cloud SDKs; `check rules` and `test rules` do not use
    # it). The versions the binaries report.
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$v"
    ldflags+=" -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
    ldflags+=" -X github.com/prometheus/common/version.Version=${p:0:1}.$((10#${p:1})).${PROMTOOL_VERSION##*.}"
    (cd "$go_tools/mod" && with_heartbeat "${todo[*]}" env CGO_ENABLED=0 go build \
      -tags "tools no_btrfs no_devmapper no_zfs remove_all_sd" -ldflags "$ldflags" -o "$go_tools/bin/" "${pkgs[@]}")
    # go build names a package ending in a major version after the element before it.
    [[ -f "$go_tools/bin/server" ]] && mv "$go_tools/bin/server" "$go_tools/bin/etcd"
    for t in "${todo[@]}"; do touch "$go_tools/.done-$t"; done
    log "built ${todo[*]}"
  fi
  exec {lock}>&-
  for t in "$@"; do
    # shellcheck disable=SC2086
    link_bins "$go_tools/bin" ${go_tool_bins[$t]}
  done
}

# go_install_tool NAME VERSION PACKAGE: `go install PACKAGE@VERSION` (stripped) into the
# cache, once per version; the binary is NAME. For the benchmarks' tools, which share little
# with the tests'.
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

# Benchmark only (`make bench-authz`), never built by `make test`.
build_opa() { go_install_tool opa "$OPA_VERSION" github.com/open-policy-agent/opa; }
# Benchmark only: vegeta sends at a fixed rate whether or not earlier requests were answered
# (open loop), for latency free of coordinated omission.
build_vegeta() { go_install_tool vegeta "$VEGETA_VERSION" github.com/tsenart/vegeta/v12; }

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

# The Go tools asked for are built together; the others one by one. By default, every Go tool.
(($# > 0)) || set -- "${!go_tool_pkgs[@]}"
want=("$@")
go_wanted=()
for t in "${want[@]}"; do [[ -n ${go_tool_pkgs[$t]:-} ]] && go_wanted+=("$t"); done
((${#go_wanted[@]} == 0)) || build_go_tools "${go_wanted[@]}"
for t in "${want[@]}"; do [[ -n ${go_tool_pkgs[$t]:-} ]] || "build_$t"; done
log "tools ready in $bin_link_dir"
