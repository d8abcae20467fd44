#!/usr/bin/env bash
# The scale benchmark (benches/scale.rs), RUNS times (default 1). Each run measures the
# converging operator and the honest floor (`--floor`: the same creates and the writes the
# operator must make, by a bare client at the same concurrency), each phase on a fresh local
# cluster of its own, so that neither runs on a cluster holding the other's objects. The
# floor writes what a converging run wrote, so the first run converges first; later runs
# alternate the order, so that neither phase always runs first. It ends with each run's
# convergence, floor and ratio, and their median and spread: one run's ratio is a ratio of
# two CPU-bound phases on two shared cores, and the same phase's time varies between runs.
#
# Usage: RUNS=3 ARGS="--users 10000" hack/bench.sh   (make bench RUNS=3 ARGS=...)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${RUNS:-1}
pairs=()
written=""

# phase converge|floor: one phase on a fresh cluster; prints the path of its figures. (It runs
# in a command substitution, which does not inherit `set -e`: a failure exits explicitly.)
phase() {
  local out
  out=$(mktemp)
  hack/cluster.sh down >&2
  hack/cluster.sh up >&2
  if [[ $1 == converge ]]; then
    # shellcheck disable=SC2086 # ARGS is a list of flags
    cargo bench --bench scale -- ${ARGS:-} | tee "$out" >&2 || exit 1
  else
    # shellcheck disable=SC2086
    cargo bench --bench scale -- ${ARGS:-} --floor "$written" | tee "$out" >&2 || exit 1
  fi
  sed -n 's/^figures: //p' "$out"
  rm -f "$out"
}

for ((i = 1; i <= runs; i++)); do
  if ((i % 2 == 1)); then
    converged=$(phase converge)
    written=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["written"])' "$converged")
    floor=$(phase floor)
  else
    floor=$(phase floor)
    converged=$(phase converge)
    written=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["written"])' "$converged")
  fi
  pairs+=("$converged" "$floor")
done

python3 - "${pairs[@]}" <<'EOF'
import json, statistics, sys

paths = sys.argv[1:]
runs = [(json.load(open(c)), json.load(open(f))) for c, f in zip(paths[::2], paths[1::2])]
print()
print("| run | first | convergence | honest floor | ratio | API server CPU converging / floor |")
print("|---|---|---|---|---|---|")
ratios = []
for i, (c, f) in enumerate(runs, 1):
    ratio = c["convergence_secs"] / f["floor_secs"]
    ratios.append(ratio)
    cpu = f"{c['cpu_converging']['apiserver']:.1f} / {f['cpu_floor']['apiserver']:.1f}"
    first = "operator" if i % 2 == 1 else "floor"
    print(f"| {i} | {first} | {c['convergence_secs']:.1f} s | {f['floor_secs']:.1f} s | {ratio:.2f} | {cpu} |")
median = lambda xs: statistics.median(xs)
conv = [c["convergence_secs"] for c, _ in runs]
floor = [f["floor_secs"] for _, f in runs]
print(
    f"| median (lowest-highest) of {len(runs)} | | {median(conv):.1f} s ({min(conv):.1f}-{max(conv):.1f}) "
    f"| {median(floor):.1f} s ({min(floor):.1f}-{max(floor):.1f}) "
    f"| {median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | |"
)
print()
print("| CPU seconds, last run (2 cores) | operator | kube-apiserver | etcd | kube-controller-manager | load client |")
print("|---|---|---|---|---|---|")
c, f = runs[-1]
for phase, cpu in [("converging", c["cpu_converging"]), ("honest floor", f["cpu_floor"])]:
    print(f"| {phase} | {cpu['operator']:.1f} | {cpu['apiserver']:.1f} | {cpu['etcd']:.1f} | {cpu['controller_manager']:.1f} | {cpu['load_client']:.1f} |")
print()
print("| the API server's etcd requests, last run | converging | honest floor |")
print("|---|---|---|")
converging = {(r, o): n for r, o, n in c["etcd_requests"]}
floored = {(r, o): n for r, o, n in f["etcd_requests"]}
for key in sorted(set(converging) | set(floored)):
    print(f"| {key[1]} {key[0]} | {converging.get(key, 0)} | {floored.get(key, 0)} |")
EOF
