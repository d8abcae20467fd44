#!/usr/bin/env bash
# The scale benchmark (benches/scale.rs), RUNS times (default 1), each on a fresh local
# cluster; with RUNS > 1 it ends with each run's convergence, floor and ratio and their
# medians. One run's ratio is a ratio of two CPU-bound phases on two shared cores, and the
# same phase's time varies between runs of the same code (the floor, a bare client making the
# same requests, took 40 to 53 s at 10k), so the median of several runs says more than one.
#
# Usage: RUNS=3 ARGS="--users 10000" hack/bench.sh   (make bench RUNS=3 ARGS=...)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${RUNS:-1}
figures=()
for ((i = 1; i <= runs; i++)); do
  hack/cluster.sh down
  hack/cluster.sh up
  out=$(mktemp)
  # shellcheck disable=SC2086 # ARGS is a list of flags
  cargo bench --bench scale -- ${ARGS:-} | tee "$out"
  figures+=("$(sed -n 's/^figures: //p' "$out")")
  rm -f "$out"
done
((runs > 1)) || exit 0

python3 - "${figures[@]}" <<'EOF'
import json, statistics, sys

runs = [json.load(open(path)) for path in sys.argv[1:]]
print()
print("| run | convergence | honest floor | ratio | API server CPU converging / floor |")
print("|---|---|---|---|---|")
for path, r in zip(sys.argv[1:], runs):
    cpu = f"{r['cpu_converging']['apiserver']:.1f} / {r['cpu_floor']['apiserver']:.1f}"
    print(f"| {path} | {r['convergence_secs']:.1f} s | {r['floor_secs']:.1f} s | {r['ratio']:.2f} | {cpu} |")
median = lambda key: statistics.median(r[key] for r in runs)
print(
    f"| median of {len(runs)} | {median('convergence_secs'):.1f} s | {median('floor_secs'):.1f} s "
    f"| {median('ratio'):.2f} | |"
)
EOF
