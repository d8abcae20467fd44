#!/usr/bin/env bash
# The whole test suite, as CI runs it: static checks, unit tests, and integration tests
# against a real control plane started here and torn down afterwards, whatever happens.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

hack/ensure-deps.sh
# The Go programs of the tests (the clusters' etcd, API servers and controller managers,
# kubectl, helm) collect garbage at four times their live heap instead of twice: a sixth of
# the API server's CPU went to its collector, and the machine has memory to spare.
export GOGC=${GOGC:-400}
# Cargo's outputs beside the tools' cache, outside the checkout: a fresh clone (CI) compiles
# this crate and its tests, not every dependency again.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ce-operator/target}

# Three lanes in the background, beside the static checks and the test build: on a fresh
# machine each starts by building its tools (hack/build-tools.sh; a no-op once cached), and
# one lane's pauses (downloads, module resolution, links) are the others' CPU time.
#   - the Go tools, in one build (they share most of their packages), then both test
#     clusters: the shared one, and a second for the faults, which disturb the control plane
#     (they run there, beside the shared cluster's tests);
#   - the cargo tools of the static checks;
#   - the e2e's images (the release build, whole-program LTO: its last step, the link, is one
#     core's work for 3 to 4 minutes, which must not wait for the tests' end).
# None of this asserts a time that a busy core could break (performance is the benchmarks'
# business); only the e2e waits for the images.
# Each lane is a session of its own, so that an early exit stops it whole.
logs="$root/.local/test-logs"
mkdir -p "$logs"
cluster_dir="$root/.local/test-cluster"
alone_dir="$root/.local/test-cluster-alone"
alone_pid=""
lanes=()
stop_lanes() { for pid in "${lanes[@]}"; do kill -- -"$pid" 2>/dev/null || true; done; }
stop_clusters() {
  # The faults' run is a subshell: its test binary (and tee) are its children.
  [[ -n $alone_pid ]] && { pkill -P "$alone_pid" 2>/dev/null; kill "$alone_pid" 2>/dev/null || true; }
  hack/cluster.sh down --dir "$alone_dir" || true
  hack/cluster.sh down --dir "$cluster_dir" || true
}
trap 'stop_lanes; stop_clusters' EXIT INT TERM
# lane NAME SCRIPT ARGS...: the bash SCRIPT (its arguments $1...) in the background, its output
# in $logs/NAME.log.
lane() {
  local name=$1 script=$2; shift 2
  log "$name (in the background, log: .local/test-logs/$name.log)"
  setsid bash -c "set -euo pipefail; $script" "$name" "$@" >"$logs/$name.log" 2>&1 &
  lanes+=($!)
}
# joined PID NAME: waits for the lane; prints what it built, or its log if it failed.
joined() {
  if wait "$1"; then
    grep -E '^\[build-tools .*(building|built)' "$logs/$2.log" >&2 || true
    return
  fi
  tail -n 40 "$logs/$2.log" >&2
  log "$2 failed"
  exit 1
}
lane clusters 'hack/build-tools.sh etcd kubernetes kubernetes_node containerd helm promtool kstatus crane
  hack/cluster.sh up --dir "$2" >"$3" 2>&1 & alone=$!
  hack/cluster.sh up --dir "$1"
  wait "$alone" || { cat "$3"; exit 1; }' "$cluster_dir" "$alone_dir" "$logs/cluster-alone.log"
clusters_pid=${lanes[-1]}
lane tools 'hack/build-tools.sh cargo_deny cargo_machete'
tools_pid=${lanes[-1]}
lane images 'hack/e2e.sh images'
image_pid=${lanes[-1]}

log "cargo fmt --check"
cargo fmt --all -- --check
log "hadolint Dockerfile; base images pinned by digest"
hadolint Dockerfile
python3 hack/dockerfile.py pinned --dockerfile Dockerfile
# Clippy and the test build in one pass: cargo runs clippy-driver (rustc with Clippy's lints)
# on this crate's targets through the two variables `cargo clippy` sets, but builds instead of
# checking, so that the dependencies compile once, not twice (checked for Clippy, built for
# the tests); cold, 334 CPU-s instead of 422. Every cargo command below sees the same
# variables, so none rebuilds the crate.
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# CLIPPY_ARGS is cargo-clippy's word to clippy-driver, not a documented interface: a canary
# with two lint findings must fail, or a toolchain that reads it otherwise would lint nothing.
canary=$(mktemp -d)
printf 'pub fn empty(v: &Vec<u8>) -> bool { v.len() == 0 }\n' >"$canary/canary.rs"
if "$RUSTC_WORKSPACE_WRAPPER" --edition 2021 --crate-type lib --emit metadata --out-dir "$canary" \
  "$canary/canary.rs" >/dev/null 2>&1; then
  log "clippy-driver passed a canary with two lint findings: CLIPPY_ARGS is not read as cargo-clippy sets it"
  exit 1
fi
rm -rf "$canary"
log "cargo clippy -D warnings, and the test build (cargo test --no-run), in one pass"
cargo test --locked --all-targets --no-run
joined "$tools_pid" tools
log "cargo deny (licences, bans, sources, advisories)"
hack/deny.sh
log "cargo machete (dependencies declared and never used)"
.local/bin/cargo-machete
joined "$clusters_pid" clusters
export CE_TEST_KUBECONFIG="$cluster_dir/kubeconfig"

# The integration tests are one binary (tests/integration/), run directly so that libtest
# reports each test's time (`--report-time`, behind RUSTC_BOOTSTRAP for the binary only: set
# for cargo, it would rebuild the crate).
integration=$(cargo test --locked --test integration --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
print(next(m["executable"] for m in map(json.loads, sys.stdin)
           if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "integration" and m.get("executable")))')
# Each lane's output, for the slowest-first summary at the end: a file per lane, since lines
# of two lanes written to one file interleave and pair one test's name with another's time.
timings="$root/.local/test-timings.log"
alone_timings="$root/.local/test-timings-alone.log"
: >"$timings"
: >"$alone_timings"
failed=()
# run LABEL THREADS ARGS...: the integration binary with libtest ARGS (name filters), THREADS
# tests at a time, on the cluster of $CE_TEST_KUBECONFIG; a failure is recorded, and the other
# runs go on. Modules whose tests take a lock to run one at a time run with one thread, so
# that the time each test reports is its own, not its wait for the lock.
run() {
  local label=$1 threads=$2
  shift 2
  log "integration tests: $label"
  RUSTC_BOOTSTRAP=1 "$integration" -Z unstable-options --report-time --test-threads="$threads" "$@" 2>&1 |
    tee -a "$timings" || failed+=("$label")
}
threads=${TEST_THREADS:-4}
# Modules by where they may run. Every other module works only in namespaces of its own, with
# operators watching only those, and runs side by side with the rest.
alone_on_the_shared_cluster=(chart safelist etcd_restore quiet) # an operator over every
                                                                # namespace, an etcd restore,
                                                                # the API server's counters
on_a_cluster_of_their_own=(faults)                              # faults to the control plane
skip=()
for module in "${alone_on_the_shared_cluster[@]}" "${on_a_cluster_of_their_own[@]}"; do
  skip+=(--skip "$module::")
done

rm -f "$logs/alone.failed"
# The faults, on the second cluster, in the background (their output is printed when they
# end, so that it does not interleave with the shared cluster's).
(
  export CE_TEST_KUBECONFIG="$alone_dir/kubeconfig"
  timings=$alone_timings
  for module in "${on_a_cluster_of_their_own[@]}"; do run "$module (on a cluster of its own)" 1 "$module::"; done
  ((${#failed[@]} == 0)) || { echo "failed: ${failed[*]}" >"$logs/alone.failed"; exit 1; }
) >"$logs/alone.log" 2>&1 &
alone_pid=$!
log "cargo test: the unit tests"
cargo test --locked --lib --bins --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee -a "$timings" || failed+=(unit)
run "chart (alone)" 1 chart::
run "every other module, side by side" "$threads" "${skip[@]}"
for module in safelist etcd_restore quiet; do run "$module (alone)" "$threads" "$module::"; done
log "cargo test: the benches, in test mode"
cargo test --locked --benches --no-fail-fast 2>&1 | tee -a "$timings" || failed+=(benches)
wait "$alone_pid" || true
alone_pid=""
cat "$logs/alone.log"
[[ -f $logs/alone.failed ]] && failed+=("$(cat "$logs/alone.failed")")
log "the slowest tests (up to $threads at a time; faults and chart one at a time):"
sed -nE 's/^test (.*) \.\.\. (ok|FAILED) <([0-9.]+)s>$/\3 \1/p' "$timings" "$alone_timings" | sort -rn |
  awk 'NR <= 10 {printf "%8.1f s  %s\n", $1, $2}' >&2
if ((${#failed[@]} > 0)); then
  log "failed: ${failed[*]}"
  exit 1
fi

trap stop_lanes EXIT INT TERM
stop_clusters
# The teardown is part of the contract: no etcd or kube-* process of any test cluster of
# this checkout (the shared one, or one a test binary started), nor an NGINX of the gateway
# test, may survive the run.
left=$( (pgrep -a -f "^ce-cluster:($cluster_dir|$alone_dir|$root/target/test-clusters/)"; pgrep -a -f "nginx.*$root/target/test-logs/") || true)
if [[ -n "$left" ]]; then
  log "processes left behind by the test clusters or the gateway test:"
  echo "$left" >&2
  exit 1
fi
log "cargo tests passed; no cluster process left behind"

# The chart as a user installs it: the image built beside the tests, a fresh cluster with a
# real node.
joined "$image_pid" images
grep -E '^\[image|^image size' "$logs/images.log" >&2
log "e2e (hack/e2e.sh, with the images built above)"
E2E_REUSE_IMAGES=1 hack/e2e.sh
left=$( (pgrep -a -f "^ce-cluster:$root/.local/e2e-cluster" ; ip -o link show ce0 2>/dev/null) || true)
if [[ -n "$left" ]]; then
  log "left behind by the e2e's node:"
  echo "$left" >&2
  exit 1
fi
log "all tests passed; nothing left behind"
