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

log "building the operator and the kubectl plugin"
cargo build --quiet --bin ce-operator --bin kubectl-ce
# kubectl finds plugins on the PATH by name: kubectl-ce answers `kubectl ce`.
ln -sfn "$root/target/debug/kubectl-ce" "$root/.local/bin/kubectl-ce"

log "installing the CRDs from crds/"
"$kubectl" apply --server-side --field-manager=ce-operator-dev -f crds/ >/dev/null
"$kubectl" wait --for condition=Established -f crds/ --timeout=60s >/dev/null

if [[ -f "$state/operator.pid" ]] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  log "stopping the previous operator"
  old=$(cat "$state/operator.pid")
  kill "$old" || true
  for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
fi
log "starting the operator (log: .local/dev/operator.log)"
# Its own identity (user ce-operator), so that the webhook exempts it and not you.
nohup "$root/target/debug/ce-operator" run --log-format text \
  --kubeconfig "$root/.local/cluster/operator.kubeconfig" \
  --webhook-addr 127.0.0.1:9443 --webhook-dns-name 127.0.0.1 \
  --webhook-secret-namespace default --webhook-config-name ce-operator-dev \
  --http-addr 127.0.0.1:8080 --authz-addr 127.0.0.1:8082 --authz-grpc-addr 127.0.0.1:8083 \
  >"$state/operator.log" 2>&1 </dev/null &
pid=$!
echo $pid >"$state/operator.pid"
# Ready means this operator answers: a port held by another process (its "Address already in
# use" exit) or any other failure at start stops `make dev` here, with the operator's words,
# instead of a banner over a webhook that some other process serves.
log "waiting for the operator's /readyz"
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    log "the operator exited at start:"
    grep -m 1 '^Error:' "$state/operator.log" >&2 || tail -n 1 "$state/operator.log" >&2
    rm -f "$state/operator.pid"
    exit 1
  fi
  curl -fsS --max-time 1 http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fsS --max-time 1 http://127.0.0.1:8080/readyz >/dev/null 2>&1; then
  log "the operator did not become ready within 120 s; its last log line:"
  tail -n 1 "$state/operator.log" >&2
  exit 1
fi

log "installing the chart's admission webhook configuration, pointed at the local operator"
"$root/.local/bin/helm" template ce charts/ce-operator --namespace ce-system --show-only templates/webhook.yaml |
  python3 "$root/hack/local-webhook.py" ce-operator-dev https://127.0.0.1:9443/validate ce-operator |
  "$kubectl" apply -f - >/dev/null
for _ in $(seq 1 100); do
  [[ -n "$("$kubectl" get validatingwebhookconfiguration ce-operator-dev -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]] && break
  sleep 0.2
done

log "applying examples/"
"$kubectl" apply -f examples/ >/dev/null
for kind in organizations accounts ceusers rolebindings.ce.tenancy.io elementsafelists; do
  "$kubectl" wait --for condition=Ready "$kind" --all -n tenants --timeout=120s >/dev/null
done
"$kubectl" wait --for condition=Ready organizations --all -n partners --timeout=120s >/dev/null

cat <<MSG

The local cluster runs ce-operator with the example tenant applied. Try:

  export KUBECONFIG=$KUBECONFIG
  export PATH=$root/.local/bin:\$PATH                # kubectl and the plugin kubectl-ce
  kubectl get ce -n tenants                      # every tenancy object, with READY
  kubectl -n tenants apply -f - <<<'{"apiVersion":"ce.tenancy.io/v1alpha1","kind":"RoleBinding","metadata":{"name":"x"},"spec":{"userRef":{"name":"jane"},"role":"org-admin"}}'
                                                 # refused by the webhook, with the reason
  kubectl get ceusers -n tenants -o wide         # roles and, if not ready, why
  kubectl describe organization acme -n tenants  # conditions and the activity (events)
  kubectl get secret acme-org-secret -n tenants -o jsonpath='{.data.secret}' | base64 -d
  kubectl ce tree -n tenants                     # organizations, accounts, users, roles, problems
  kubectl ce can-i -n tenants --user jane --privilege createElements
                                                 # the authorization decision, without a secret
  kubectl ce rotate ceuser jane -n tenants       # rotate and wait for the new fingerprint
  kubectl ce describe-secret ceuser jane -n tenants
  curl -s 127.0.0.1:8082/authz/check -H "Authorization: User \$(kubectl get secret jane-user-secret -n tenants -o jsonpath='{.data.secret}' | base64 -d), Organization \$(kubectl get secret acme-org-secret -n tenants -o jsonpath='{.data.secret}' | base64 -d)" -i
                                                 # what an API gateway asks (200 and jane's identity)
  tail -f $state/operator.log

Stop everything with: make cluster-down
MSG
