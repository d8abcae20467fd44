#!/usr/bin/env bash
# `make e2e` (part of `make test`): the chart as a user installs it, on a fresh local
# cluster with a real node (kubelet, containerd, kube-proxy), with the image `make image`
# builds. Every check counts; the run ends with "N passed, M failed" and the figures.
#
#   hack/e2e.sh          the whole run
#   hack/e2e.sh images   only the two images it installs (hack/test.sh builds them beside the
#                        test build, then runs the e2e with E2E_REUSE_IMAGES=1)
#
# E2E_KEEP=1 leaves the cluster running afterwards (.local/e2e-cluster/kubeconfig);
# E2E_REUSE_IMAGES=1 takes the images in .local/e2e-cluster/work instead of building them.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$root/.local/bin"
dir="$root/.local/e2e-cluster"
work="$dir/work"
export KUBECONFIG="$dir/kubeconfig"
export PATH="$bin:${CARGO_TARGET_DIR:-$root/target}/debug:$PATH"  # kubectl, helm, kubectl-ce
ns=ce-system
release=ce-operator
version_a=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/ce-operator/Chart.yaml)
version_b="$version_a-e2e.2"
image_a="$work/ce-operator-a.tar"
image_b="$work/ce-operator-b.tar"

log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
passed=0 failed=0
failures=()
pass() { passed=$((passed + 1)); log "ok: $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); log "FAIL: $1"; }
# check NAME COMMAND...: passes when the command succeeds.
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
# eventually NAME TIMEOUT COMMAND...: passes once the command succeeds within TIMEOUT s.
eventually() {
  local name=$1 timeout=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start > timeout)); then fail "$name (not within ${timeout}s)"; return 1; fi
    sleep 0.2
  done
  pass "$name"
}
figures=()
figure() { figures+=("$1: $2"); log "figure: $1: $2"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# The chart's default image, and the upgrade's: the same layer, another version label.
build_images() {
  mkdir -p "$work"
  rm -f "$image_a" "$image_b"
  hack/image.sh --out "$image_a" --also "ghcr.io/ce-tenancy/ce-operator:$version_b,$version_b,$image_b"
}
if [[ ${1:-} == images ]]; then
  build_images
  exit
fi

cleanup() {
  local pids
  pids=$(jobs -p)
  # shellcheck disable=SC2086
  [[ -n $pids ]] && kill $pids 2>/dev/null
  if [[ ${E2E_KEEP:-} != 1 ]]; then hack/cluster.sh down --dir "$dir" >/dev/null 2>&1 || log "cluster down failed"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image and the cluster -------------------------------------------------------
mkdir -p "$work"
rm -f "$work"/*.log "$work"/*.failures "$work"/*.result
if [[ ${E2E_REUSE_IMAGES:-} == 1 && -f $image_a && -f $image_b ]]; then
  log "taking the images in $work"
else
  log "building the image (make image), and a second one for the upgrade"
  build_images || { fail "make image"; exit 1; }
fi
figure "image size (MiB)" "$(python3 -c "print(round($(stat -c %s "$image_a") / 1048576, 1))")"

log "checking the image's config against the Dockerfile"
check "the image's user, entrypoint, command, labels and ports are the Dockerfile's" \
  python3 hack/dockerfile.py config --dockerfile Dockerfile --image "$image_a" --version "$version_a"

hack/cluster.sh down --dir "$dir" >/dev/null 2>&1
hack/cluster.sh up --dir "$dir" --node || { fail "cluster with a real node"; exit 1; }
hack/node.sh import --dir "$dir" "$image_a"
hack/node.sh import --dir "$dir" "$image_b"

kubectl create namespace "$ns" >/dev/null
# The API server itself enforces the restricted Pod Security profile on the release's namespace.
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null

# --- helm install, default values ------------------------------------------------------
helm_install() {
  # As the README's install section says.
  helm install "$release" charts/ce-operator -n "$ns" --wait --rollback-on-failure --timeout 180s "$@"
}
log "helm install (default values: the image reference is the chart's own)"
t0=$(now)
if helm_install >"$work/install.log" 2>&1; then pass "helm install --wait"; else fail "helm install --wait: $(tail -n 3 "$work/install.log")"; fi
figure "helm install to all Pods Ready (s)" "$(since "$t0")"

ready_replicas() { kubectl -n "$ns" get deploy "$release" -o jsonpath='{.status.readyReplicas}'; }
check "both replicas Ready" test "$(ready_replicas)" = 2
# The release's Running pods that are not terminating.
pods() {
  kubectl -n "$ns" get pods -l app.kubernetes.io/instance="$release" --field-selector=status.phase=Running \
    -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}} {{end}}{{end}}'
}
pod_ip() { kubectl -n "$ns" get pod "$1" -o jsonpath='{.status.podIP}'; }
holder() { kubectl -n "$ns" get lease "$release" -o jsonpath='{.spec.holderIdentity}'; }
# pod_of IDENTITY: the pod a lease identity (the pod's name and a suffix of its own) names.
pod_of() {
  local p
  for p in $(pods); do [[ $1 == "$p"-* ]] && { echo "$p"; return; }; done
}
# leaders: how many of the Running pods report ce_operator_leader 1 on their own /metrics.
leaders() {
  local n=0 p
  for p in $(pods); do
    curl -fsS --max-time 3 "http://$(pod_ip "$p"):8080/metrics" | grep -x 'ce_operator_leader 1' >/dev/null && n=$((n + 1))
  done
  echo "$n"
}
exactly_one_leader() {
  [[ $(leaders) == 1 && -n $(pod_of "$(holder)") ]]
}
eventually "exactly one replica holds the Lease (its holder is a Running pod, one leader gauge at 1)" 30 exactly_one_leader

# The webhook: the operator's own CA in the caBundle, reached by the API server through its Service.
ca_in_secret() { kubectl -n "$ns" get secret "$release-webhook-tls" -o jsonpath='{.data.ca\.crt}'; }
ca_in_config() { kubectl get validatingwebhookconfiguration "$release" -o jsonpath='{.webhooks[0].clientConfig.caBundle}'; }
ca_matches() { [[ -n $(ca_in_secret) && $(ca_in_secret) == "$(ca_in_config)" ]]; }
eventually "the webhook's caBundle is the operator's own CA" 30 ca_matches
check "the webhook configuration points at the Service, not a URL" \
  test "$(kubectl get validatingwebhookconfiguration "$release" -o jsonpath='{.webhooks[0].clientConfig.service.name}')" = "$release-webhook"

log "applying examples/"
t0=$(now)
kubectl apply -f examples/ >"$work/examples.log" 2>&1 || fail "kubectl apply -f examples/: $(tail -n 3 "$work/examples.log")"
tenant_ready() {
  # kubectl wait takes about 0.1 s an object: its timeout is for all of them, not each.
  local kind
  for kind in organizations accounts ceusers rolebindings.ce.tenancy.io elementsafelists; do
    kubectl wait --for condition=Ready "$kind" --all -n tenants --timeout=10s >/dev/null 2>&1 || return 1
  done
}
eventually "the example tenant converges (every object Ready)" 120 tenant_ready
figure "examples applied to tenant Ready (s)" "$(since "$t0")"

violation='{"apiVersion":"ce.tenancy.io/v1alpha1","kind":"RoleBinding","metadata":{"name":"jane-org-admin","namespace":"tenants"},"spec":{"userRef":{"name":"jane"},"role":"org-admin"}}'
refused() {
  local out
  out=$(kubectl apply -f - <<<"$violation" 2>&1) && return 1
  [[ $out == *'denied the request'* && $out == *org-admin* ]]
}
check "a violation applied with kubectl is refused by the webhook, through its Service" refused

# The authorization Service's ClusterIP, as a gateway in the cluster reaches it.
secret_of() { kubectl -n tenants get secret "$1" -o jsonpath='{.data.secret}' | base64 -d; }
authz_ip=$(kubectl -n "$ns" get svc "$release-authz" -o jsonpath='{.spec.clusterIP}')
metrics_ip=$(kubectl -n "$ns" get svc "$release-metrics" -o jsonpath='{.spec.clusterIP}')
jane=$(secret_of jane-user-secret)
acme=$(secret_of acme-org-secret)
authz_check() { # USER_SECRET ORG_SECRET -> status code; headers in $work/authz.headers
  curl -sS --max-time 5 -o /dev/null -D "$work/authz.headers" -w '%{http_code}' \
    -H "Authorization: User $1, Organization $2" "http://$authz_ip:8082/authz/check"
}
check "a gateway check through the authorization Service answers 200 for jane's secrets" test "$(authz_check "$jane" "$acme")" = 200
check "... with jane's identity headers" grep -qi '^x-ce-user: jane' "$work/authz.headers"
check "... and 401 for a wrong user secret" test "$(authz_check "not-$jane" "$acme")" = 401
check "the metrics Service is scraped" bash -c "curl -fsS --max-time 5 http://$metrics_ip:8080/metrics | grep -q '^ce_operator_objects'"
check "kubectl ce tree shows the tenant" bash -c "kubectl ce tree -n tenants 2>&1 | grep -q acme"
# memory LABEL: each running operator Pod's resident set (VmRSS of its operator process,
# found on this node by the pod's cgroup) and its cgroup's working set, as the kubelet reports.
memory() {
  local p uid pid rss ws
  for p in $(pods); do
    uid=$(kubectl -n "$ns" get pod "$p" -o jsonpath='{.metadata.uid}' | tr - _)
    pid=$(grep -l -E "pod(${uid}|${uid//_/-})" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 |
      while read -r q; do [[ $(cat "/proc/$q/comm" 2>/dev/null) == ce-operator ]] && echo "$q"; done | sed -n 1p)
    rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null)
    ws=$(kubectl get --raw /api/v1/nodes/ce-node/proxy/stats/summary |
      python3 -c 'import json,sys; print(next(round(c["memory"]["workingSetBytes"] / 1048576, 1) for q in json.load(sys.stdin)["pods"] if q["podRef"]["name"] == sys.argv[1] for c in q["containers"]))' "$p")
    figure "memory of $p $1" "RSS ${rss:-?} MiB, cgroup working set ${ws:-?} MiB"
  done
}
memory "after install"

# --- day two: upgrade under load ------------------------------------------------------
# One client applies CE objects in a loop (every apply valid: none may be refused), another
# asks the authorization Service in a loop (every answer must be 200).
apply_loop() {
  local i=0 ok=0 bad=0
  while [[ ! -f "$work/stop" ]]; do
    i=$((i + 1))
    if kubectl apply -f - >/dev/null 2>"$work/apply.err" <<<"{\"apiVersion\":\"ce.tenancy.io/v1alpha1\",\"kind\":\"CEUser\",\"metadata\":{\"name\":\"loop-$((i % 5))\",\"namespace\":\"tenants\",\"labels\":{\"round\":\"r$i\"}},\"spec\":{\"email\":\"loop-$((i % 5))@acme.example\",\"accountRef\":{\"name\":\"acme-us\"}}}"; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1)); cat "$work/apply.err" >>"$work/apply.failures"
    fi
  done
  echo "$ok $bad" >"$work/apply.result"
}
check_loop() {
  local ok=0 bad=0 code
  while [[ ! -f "$work/stop" ]]; do
    code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H "Authorization: User $jane, Organization $acme" "http://$authz_ip:8082/authz/check" 2>>"$work/check.failures")
    if [[ $code == 200 ]]; then ok=$((ok + 1)); else bad=$((bad + 1)); echo "status $code" >>"$work/check.failures"; fi
  done
  echo "$ok $bad" >"$work/check.result"
}
run_loops() { rm -f "$work/stop" "$work"/{apply,check}.{result,failures}; apply_loop & check_loop & }
stop_loops() {
  touch "$work/stop"; wait
  read -r apply_ok apply_bad <"$work/apply.result"; read -r check_ok check_bad <"$work/check.result"
}

log "helm upgrade to $version_b under load"
run_loops
sleep 2 # the loops are in flight before the rollout starts
t0=$(now)
# The upgrade also turns the tenant API on (checked below, through its Service).
if helm upgrade "$release" charts/ce-operator -n "$ns" --wait --timeout 180s --set image.tag="$version_b" --set tenantApi.enabled=true >"$work/upgrade.log" 2>&1; then
  pass "helm upgrade --wait"
else
  fail "helm upgrade --wait: $(tail -n 3 "$work/upgrade.log")"
fi
figure "rollout (s)" "$(since "$t0")"
# The loops go on until the old Pods are gone: their preStop delay, then their shutdown.
only_new_pods() {
  [[ $(kubectl -n "$ns" get pods -l app.kubernetes.io/instance="$release" -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort | uniq -c | awk '{print $1, $2}') == "2 ghcr.io/ce-tenancy/ce-operator:$version_b" ]]
}
eventually "the old Pods are gone" 90 only_new_pods
figure "rollout until the old Pods are gone (s)" "$(since "$t0")"
sleep 1
stop_loops
figure "applies during the rollout (ok/failed)" "$apply_ok/$apply_bad"
figure "authorization checks during the rollout (ok/failed)" "$check_ok/$check_bad"
check "no apply failed during the rollout ($apply_bad of $((apply_ok + apply_bad)); $(head -c 300 "$work/apply.failures" 2>/dev/null))" test "$apply_bad" = 0
check "no authorization check failed during the rollout ($check_bad of $((check_ok + check_bad)); $(sort "$work/check.failures" 2>/dev/null | uniq -c | head -c 300))" test "$check_bad" = 0
check "the loops ran during the rollout" test "$apply_ok" -gt 0 -a "$check_ok" -gt 0
running_versions() {
  local p
  for p in $(pods); do
    kubectl -n "$ns" get pod "$p" -o jsonpath='{.spec.containers[0].image}{"\n"}'
  done | sort -u
}
check "every Running pod runs the second image" test "$(running_versions)" = "ghcr.io/ce-tenancy/ce-operator:$version_b"
eventually "exactly one leader after the upgrade" 30 exactly_one_leader

# The tenant API, through its Service: the operator's ServiceAccount impersonates the tenant
# with the chart's RBAC, and the webhook (which exempts only the operator) judges the write.
tenant_api_ip=$(kubectl -n "$ns" get svc "$release-tenant-api" -o jsonpath='{.spec.clusterIP}')
tenant_api() { # METHOD PATH [BODY] -> status code; the body in $work/tenant-api.body
  curl -sS --max-time 10 -o "$work/tenant-api.body" -w '%{http_code}' -X "$1" \
    -H "Authorization: User $jane, Organization $acme" -H 'content-type: application/json' \
    ${3:+--data-binary "$3"} "http://$tenant_api_ip:8084$2"
}
check "the tenant API serves its OpenAPI document" test "$(tenant_api GET /openapi.json)" = 200
code=$(tenant_api POST /accounts/acme-eu/users '{"id": "e2e-ann", "email": "e2e-ann@acme.example"}')
check "an account admin adds a user to its account through the tenant API ($code $(head -c 300 "$work/tenant-api.body" 2>/dev/null))" test "$code" = 201
check "... which kubectl shows, made by the route's field manager" \
  bash -c "kubectl -n tenants get ceuser e2e-ann -o jsonpath='{.metadata.managedFields[*].manager}' | grep -q ce-tenant-api/account-users"
check "... and may not create an account (403)" test "$(tenant_api POST /accounts '{"id": "e2e-apac"}')" = 403

# --- day two: the leader lost ---------------------------------------------------------
leader=$(pod_of "$(holder)")
lease_secs=$(kubectl -n "$ns" get lease "$release" -o jsonpath='{.spec.leaseDurationSeconds}')
log "deleting the leader $leader with --grace-period=0 --force (lease ${lease_secs}s)"
webhook_answers=0 webhook_failures=0
t0=$(now)
kubectl -n "$ns" delete pod "$leader" --grace-period=0 --force >/dev/null 2>&1
new_leader=""
while (($(python3 -c "print(int(float('$(since "$t0")') < $lease_secs + 5))"))); do
  h=$(holder)
  if [[ -n $h && $h != "$leader" && -n $(pod_of "$h") ]]; then new_leader=$h; break; fi
  # The webhook keeps answering: a dry-run violation is refused by it, not failed.
  out=$(kubectl apply --dry-run=server -f - <<<"$violation" 2>&1)
  if [[ $out == *'denied the request'* ]]; then webhook_answers=$((webhook_answers + 1)); else webhook_failures=$((webhook_failures + 1)); echo "$out" >>"$work/webhook.failures"; fi
done
takeover=$(since "$t0")
figure "leader takeover after a forced delete (s)" "$takeover"
check "another replica leads within the lease plus 5 s ($takeover s)" test -n "$new_leader"
check "the webhook kept answering while the leader was gone ($webhook_answers answers, $webhook_failures failures)" test "$webhook_failures" = 0
eventually "both replicas Ready again" 90 bash -c "[[ \$(kubectl -n $ns get deploy $release -o jsonpath='{.status.readyReplicas}') == 2 ]]"

# --- helm uninstall and install again -------------------------------------------------
digest() { printf '%s' "$1" | sha256sum | cut -c1-16; }
jane_before=$(digest "$(secret_of jane-user-secret)")
acme_before=$(digest "$(secret_of acme-org-secret)")
fingerprint_before=$(kubectl -n tenants get ceuser jane -o jsonpath='{.status.secretFingerprint}')
log "helm uninstall"
helm uninstall "$release" -n "$ns" --wait --timeout 120s >"$work/uninstall.log" 2>&1 || fail "helm uninstall: $(tail -n 3 "$work/uninstall.log")"
check "no webhook configuration is left" bash -c "! kubectl get validatingwebhookconfigurations -o name | grep -q ."
check "a CE write is admitted with the operator gone" bash -c "kubectl -n tenants label ceuser jane e2e=after-uninstall --overwrite >/dev/null"
check "the CRDs stay" kubectl get crd ceusers.ce.tenancy.io organizations.ce.tenancy.io
check "the tenants' Secrets stay" kubectl -n tenants get secret jane-user-secret acme-org-secret
log "helm install again, the webhook answering only the API server (its client certificate, signed by the cluster CA)"
helm_install --set webhook.clientAuth.caConfigMap=kube-root-ca.crt --set 'webhook.clientAuth.names={ce-webhook-client}' \
  >"$work/reinstall.log" 2>&1 && pass "helm install again" || fail "helm install again: $(tail -n 3 "$work/reinstall.log")"
eventually "the tenant is Ready again" 120 tenant_ready
# The reinstalled configuration starts without a caBundle: the new leader writes it.
eventually "the webhook's caBundle is the operator's own CA again" 30 ca_matches
eventually "a violation applied with kubectl is refused by the webhook, which admits only the API server" 30 refused
webhook_ip=$(kubectl -n "$ns" get svc "$release-webhook" -o jsonpath='{.spec.clusterIP}')
# review_code [CERT]: the HTTP status of an empty review POSTed to the webhook's Service from
# this machine, with the test cluster's client certificate CERT (000: no answer at all).
review_code() {
  local cert=()
  [[ -n ${1:-} ]] && cert=(--cert "$dir/pki/$1.crt" --key "$dir/pki/$1.key")
  curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "${cert[@]}" -H 'content-type: application/json' \
    --data '{}' "https://$webhook_ip/validate" || true
}
check "a review from elsewhere gets no answer (no client certificate)" test "$(review_code)" = 000
check "... nor with a cluster user's certificate" test "$(review_code admin)" = 000
api_server_answered() { [[ $(review_code webhook-client) != 000 ]]; }
check "... but the API server's certificate is" api_server_answered
check "jane's secret was not re-issued" test "$(digest "$(secret_of jane-user-secret)")" = "$jane_before"
check "acme's secret was not re-issued" test "$(digest "$(secret_of acme-org-secret)")" = "$acme_before"
check "jane's fingerprint is unchanged" test "$(kubectl -n tenants get ceuser jane -o jsonpath='{.status.secretFingerprint}')" = "$fingerprint_before"
authz_ip=$(kubectl -n "$ns" get svc "$release-authz" -o jsonpath='{.spec.clusterIP}')
eventually "the same user secrets still authenticate" 30 bash -c "[[ \$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Authorization: User $jane, Organization $acme' http://$authz_ip:8082/authz/check) == 200 ]]"
memory "at the end"

# --- an image that does not exist -----------------------------------------------------
log "helm install of an image that does not exist"
kubectl create namespace ce-bad >/dev/null
kubectl label namespace ce-bad pod-security.kubernetes.io/enforce=restricted >/dev/null
helm uninstall "$release" -n "$ns" --wait --timeout 120s >/dev/null 2>&1
t0=$(now)
pull_errors() { kubectl -n ce-bad get events --field-selector involvedObject.kind=Pod -o jsonpath='{.items[*].message}' | grep -oE 'Failed to pull image[^:]*|ErrImagePull|ImagePullBackOff|Back-off pulling image[^,]*' | sed -n 1p; }
if helm install bad charts/ce-operator -n ce-bad --wait --rollback-on-failure --timeout 20s --set image.tag=does-not-exist >"$work/bad.log" 2>&1; then
  fail "helm install --wait of a missing image must fail"
else
  pass "helm install --wait of a missing image fails ($(since "$t0") s)"
fi
log "helm said: $(tail -n 2 "$work/bad.log" | tr '\n' ' ')"
check "the Pods' image pull error is on record (events): $(pull_errors)" test -n "$(pull_errors)"
check "nothing left blocks CE writes" bash -c "kubectl -n tenants label ceuser jane e2e=after-bad-install --overwrite >/dev/null"

# --- the end ---------------------------------------------------------------------------
echo
echo "e2e figures:"
printf '  %s\n' "${figures[@]}"
if ((failed)); then
  echo "e2e failures:"
  printf '  %s\n' "${failures[@]}"
  for f in "$dir"/logs/*.log; do echo "--- last lines of $f"; tail -n 5 "$f"; done
fi
echo "e2e: $passed passed, $failed failed"
((failed == 0))
