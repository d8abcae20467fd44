#!/usr/bin/env bash
# `make dev`: the local cluster (already started by `make cluster-up`), the CRDs, the
# operator running against it in the background, and examples/ applied. Prints what to
# look at next. Running it again restarts the operator with a fresh build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export KUBECONFIG="$root/.local/cluster/kubeconfig"
kubectl="$root/.local/bin/kubectl"
state="$root/.local/dev"
mkdir -p "$state"
log() { printf '[dev %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

log "building the operator"
cargo build --quiet --bin ce-operator

log "installing the CRDs from crds/"
"$kubectl" apply --server-side --field-manager=ce-operator-dev -f crds/ >/dev/null
"$kubectl" wait --for condition=Established -f crds/ --timeout=60s >/dev/null

if [[ -f "$state/operator.pid" ]] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  log "stopping the previous operator"
  kill "$(cat "$state/operator.pid")" || true
  sleep 1
fi
log "starting the operator (log: .local/dev/operator.log)"
nohup "$root/target/debug/ce-operator" run --log-format text --kubeconfig "$KUBECONFIG" \
  >"$state/operator.log" 2>&1 </dev/null &
echo $! >"$state/operator.pid"

log "applying examples/"
"$kubectl" apply -f examples/ >/dev/null
for kind in organizations accounts ceusers rolebindings.ce.tenancy.io elementsafelists; do
  "$kubectl" wait --for condition=Ready "$kind" --all -n tenants --timeout=120s >/dev/null
done
"$kubectl" wait --for condition=Ready organizations --all -n partners --timeout=120s >/dev/null

cat <<MSG

The local cluster runs ce-operator with the example tenant applied. Try:

  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$kubectl
  kubectl get ce -n tenants                      # every tenancy object, with READY
  kubectl get ceusers -n tenants -o wide         # roles and, if not ready, why
  kubectl describe organization acme -n tenants  # conditions and the activity (events)
  kubectl get secret acme-org-secret -n tenants -o jsonpath='{.data.secret}' | base64 -d
  tail -f $state/operator.log

Stop everything with: make cluster-down
MSG
