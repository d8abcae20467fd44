#!/usr/bin/env bash
# The whole test suite, as CI runs it: static checks, unit tests, and integration tests
# against a real control plane started here and torn down afterwards, whatever happens.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

hack/ensure-deps.sh
hack/build-tools.sh etcd etcd_tools kubernetes containerd crane helm promtool kstatus
# Cargo's outputs beside the tools' cache, outside the checkout: a fresh clone (CI) compiles
# this crate and its tests, not every dependency again.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ce-operator/target}

# The e2e's images: the release build (one core, whole-program LTO) runs beside clippy and
# the test build, and is waited for before any test runs, so that no timed test shares the
# machine with it.
images="$root/.local/e2e-cluster/work"
mkdir -p "$images"
log "make image (in the background, log: .local/e2e-cluster/work/image.log)"
# In a session of its own, so that an early exit stops the whole build with it.
setsid hack/e2e.sh images >"$images/image.log" 2>&1 &
image_pid=$!
trap 'kill -- -$image_pid 2>/dev/null || true' EXIT INT TERM

log "cargo fmt --check"
cargo fmt --all -- --check
log "hadolint Dockerfile; base images pinned by digest"
hadolint Dockerfile
python3 hack/dockerfile.py pinned --dockerfile Dockerfile
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "cargo deny (licences, bans, sources, advisories)"
hack/deny.sh
log "cargo test --no-run"
cargo test --locked --all-targets --no-run

cluster_dir="$root/.local/test-cluster"
cleanup() {
  [[ -n $image_pid ]] && { kill -- -"$image_pid" 2>/dev/null || true; }
  hack/cluster.sh down --dir "$cluster_dir" || true
}
trap cleanup EXIT INT TERM
hack/cluster.sh up --dir "$cluster_dir"
export CE_TEST_KUBECONFIG="$cluster_dir/kubeconfig"

# The tests that time nothing run while the image builds; every other test binary (each
# file of tests/ not named here, and each bench in test mode) runs after it, alone.
beside_the_build=(crd_drift crds observability plugin chart)
first=() after_the_build=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  if [[ " ${beside_the_build[*]} " == *" $name "* ]]; then first+=(--test "$name"); else after_the_build+=(--test "$name"); fi
done
for file in benches/*.rs; do after_the_build+=(--bench "$(basename "$file" .rs)"); done
# Each test binary's run time, for the slowest-first summary at the end.
timings="$root/.local/test-timings.log"
: >"$timings"
log "cargo test: the unit tests and ${beside_the_build[*]} (beside the image build)"
cargo test --locked --lib --bins "${first[@]}" --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee -a "$timings"
if ! wait "$image_pid"; then
  tail -n 30 "$images/image.log" >&2
  log "make image failed"
  exit 1
fi
image_pid=""
grep -E '^\[image|^image size' "$images/image.log" >&2
log "cargo test: the other test binaries and the benches"
cargo test --locked "${after_the_build[@]}" --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee -a "$timings"
log "the slowest test binaries (each runs its tests ${TEST_THREADS:-4} at a time):"
awk '/^     Running /{name=$2} /^test result:/{for(i=1;i<=NF;i++) if($i=="in") {t=$(i+1); sub("s$","",t); printf "%8.1f s  %s\n", t, name}}' "$timings" |
  sort -rn | head -10 >&2

trap - EXIT INT TERM
cleanup
# The teardown is part of the contract: no etcd or kube-* process of any test cluster of
# this checkout (the shared one, or one a test binary started), nor an NGINX of the gateway
# test, may survive the run.
left=$( (pgrep -a -f "^ce-cluster:($cluster_dir|$root/target/test-clusters/)"; pgrep -a -f "nginx.*$root/target/test-logs/") || true)
if [[ -n "$left" ]]; then
  log "processes left behind by the test clusters or the gateway test:"
  echo "$left" >&2
  exit 1
fi
log "cargo tests passed; no cluster process left behind"

# The chart as a user installs it: the image built here, a fresh cluster with a real node.
log "e2e (hack/e2e.sh, with the images built above)"
E2E_REUSE_IMAGES=1 hack/e2e.sh
left=$( (pgrep -a -f "^ce-cluster:$root/.local/e2e-cluster" ; ip -o link show ce0 2>/dev/null) || true)
if [[ -n "$left" ]]; then
  log "left behind by the e2e's node:"
  echo "$left" >&2
  exit 1
fi
log "all tests passed; nothing left behind"
