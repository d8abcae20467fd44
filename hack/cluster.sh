#!/usr/bin/env bash
# A real, throwaway Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC,
# TLS with a generated CA, service-account signing keys) and kube-controller-manager
# (garbage collector, namespace and service-account controllers).
#
#   hack/cluster.sh up   [--dir DIR] [--watch-pid PID] [--node]
#                                                        start (no-op if already running); with
#                                                        --node, also kube-scheduler and a real
#                                                        node (hack/node.sh: kubelet, containerd,
#                                                        kube-proxy) that runs Pods
#   hack/cluster.sh down [--dir DIR]                     stop and remove everything but logs
#   hack/cluster.sh status [--dir DIR]
#   hack/cluster.sh restart apiserver [--dir DIR]       stop and start the API server (fault tests)
#   hack/cluster.sh snapshot save FILE [--dir DIR]      etcdctl snapshot save, while all runs
#   hack/cluster.sh snapshot restore FILE [--dir DIR]   stop the control plane, etcdutl snapshot
#                                                        restore, start it again (backup tests)
#
# DIR defaults to .local/cluster; the admin kubeconfig is DIR/kubeconfig, the operator's
# (user ce-operator, also cluster-admin) DIR/operator.kubeconfig. Ports are chosen
# free at start, so several clusters can run side by side. With --watch-pid, a watchdog
# tears the cluster down when that process exits (used by test binaries, so an interrupted
# or failed run leaves no process behind).
#
# CE_APISERVER_PROFILING=true serves the API server's /debug/pprof (to see where its CPU goes
# during a benchmark: kubectl get --raw "/debug/pprof/profile?seconds=30").
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}; shift || true
dir="$root/.local/cluster"
watch_pid=""
component=""
snapshot_file=""
with_node=false
while [[ $# -gt 0 ]]; do
  case $1 in
    apiserver) component=$1; shift ;;
    save|restore) component=$1; snapshot_file=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --watch-pid) watch_pid=$2; shift 2 ;;
    --node) with_node=true; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin="$root/.local/bin"
pki="$dir/pki"
logs="$dir/logs"

log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# The node's bridge address (hack/node.sh), in the API server's certificate either way.
NODE_GATEWAY=10.244.0.1

# shellcheck source=cluster-lib.sh
source "$root/hack/cluster-lib.sh"
cluster_pids() { pids_of; }

running() {
  [[ -f "$dir/kubeconfig" ]] && [[ -n "$(cluster_pids)" ]] &&
    "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

gen_pki() {
  mkdir -p "$pki"
  cd "$pki"
  # ECDSA P-256 keys: a hundredth of an RSA key's generation time (the test suite makes
  # clusters and identities by the dozen).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj "/CN=ce-operator-test-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  # API server serving certificate for loopback and the in-cluster service names.
  cat >apiserver.ext <<EXT
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_GATEWAY,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EXT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile apiserver.ext -out apiserver.crt 2>/dev/null
  # Client certificates: the admin (system:masters) and the controller manager, whose user
  # name the RBAC bootstrap policy binds.
  client_cert admin "/O=system:masters/CN=ce-admin"
  # The identity the operator runs with locally: distinct from the admin's, so that the
  # admission webhook's matchConditions can exempt the operator and still see kubectl.
  client_cert operator "/O=system:masters/CN=ce-operator"
  client_cert controller-manager "/CN=system:kube-controller-manager"
  client_cert scheduler "/CN=system:kube-scheduler"
  # The API server's identity towards admission webhooks (its admission configuration presents
  # it to every webhook): the operator's webhook answers only this name (--webhook-client-name).
  client_cert webhook-client "/CN=ce-webhook-client"
  cat >admission-kubeconfig.yaml <<YAML
apiVersion: v1
kind: Config
users:
- name: "*"
  user: {client-certificate: $pki/webhook-client.crt, client-key: $pki/webhook-client.key}
YAML
  cat >admission.yaml <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $pki/admission-kubeconfig.yaml
YAML
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

client_cert() {
  local name=$1 subj=$2
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" -keyout "$name.key" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile client.ext -out "$name.crt" 2>/dev/null
}

write_kubeconfig() {
  local file=$1 user=$2 port=$3 host=$4
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ce-local
  cluster:
    server: https://$host:$port
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: ce-local
  context: {cluster: ce-local, user: $user, namespace: default}
current-context: ce-local
KC
}

# start_etcd CLIENT_PORT PEER_PORT: the one member, on the data in $dir/etcd.
start_etcd() {
  log "starting etcd on 127.0.0.1:$1"
  spawn etcd --name=ce-test --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$1" --advertise-client-urls="http://127.0.0.1:$1" \
    --listen-peer-urls="http://127.0.0.1:$2" --initial-advertise-peer-urls="http://127.0.0.1:$2" \
    --initial-cluster="ce-test=http://127.0.0.1:$2" \
    --unsafe-no-fsync --quota-backend-bytes=4294967296 --log-level=warn
  wait_for "etcd" 30 curl -fsS "http://127.0.0.1:$1/health"
}

# start_kcm PORT NODE: kube-controller-manager. With a node, also what runs workloads:
# Deployments, ReplicaSets, EndpointSlices for kube-proxy, PodDisruptionBudgets, the
# kube-root-ca.crt ConfigMap every projected ServiceAccount token needs, the garbage
# collection of orphaned Pods, and the node lifecycle (it lifts the not-ready taint a new
# node registers with).
start_kcm() {
  local controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller
  [[ $2 == true ]] && controllers=$controllers,deployment-controller,replicaset-controller,endpointslice-controller,disruption-controller,root-ca-certificate-publisher-controller,pod-garbage-collector-controller,node-lifecycle-controller
  log "starting kube-controller-manager"
  spawn kube-controller-manager \
    --kubeconfig="$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$1" \
    --controllers="$controllers" \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=true --leader-elect=false \
    --concurrent-gc-syncs=10
}

# snapshot save|restore FILE: an etcd snapshot taken while everything runs; restored the way
# etcd's disaster-recovery guide says (stop the control plane, restore into a new data
# directory, start etcd, the API server and the controller manager again).
snapshot() {
  [[ -f "$dir/env" && -n $snapshot_file ]] || { echo "usage: $0 snapshot save|restore FILE [--dir DIR]" >&2; exit 2; }
  # shellcheck disable=SC1091
  source "$dir/env"
  case $1 in
    save)
      log "etcd snapshot save $snapshot_file"
      "$bin/etcdctl" --endpoints="http://127.0.0.1:$ETCD_PORT" snapshot save "$snapshot_file" >>"$logs/etcd-snapshot.log" 2>&1 ;;
    restore)
      log "etcd snapshot restore $snapshot_file: stopping the control plane"
      for name in kube-controller-manager kube-apiserver etcd; do stop "$name"; done
      rm -rf "$dir/etcd.restored"
      # Revisions bumped past any the clients saw, and marked compacted, as the Kubernetes
      # guide says: every watch then ends with 410 Gone and its client lists again, instead
      # of resuming at a revision the restored history reuses (and keeping what it lost).
      "$bin/etcdutl" snapshot restore "$snapshot_file" --data-dir "$dir/etcd.restored" --name ce-test \
        --bump-revision 1000000000 --mark-compacted \
        --initial-cluster "ce-test=http://127.0.0.1:$ETCD_PEER" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" >>"$logs/etcd-snapshot.log" 2>&1
      rm -rf "$dir/etcd" && mv "$dir/etcd.restored" "$dir/etcd"
      start_etcd "$ETCD_PORT" "$ETCD_PEER"
      start_apiserver "$ETCD_PORT" "$API_PORT" "$API_HOST" "$NODE"
      wait_for "kube-apiserver /readyz" 90 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=5s get --raw /readyz
      start_kcm "$KCM_PORT" "$NODE" ;;
    *) echo "usage: $0 snapshot save|restore FILE [--dir DIR]" >&2; exit 2 ;;
  esac
}

# start_apiserver ETCD_PORT API_PORT API_HOST NODE
# With a node, the API server listens on the node's bridge address instead of loopback:
# Pods reach it there (the `kubernetes` Service's endpoint), and so does this machine.
# The Node authorizer and NodeRestriction confine the kubelet to its own node and Pods.
start_apiserver() {
  local authz=RBAC admission=OwnerReferencesPermissionEnforcement kubelet=()
  if [[ $4 == true ]]; then
    authz=Node,RBAC admission=$admission,NodeRestriction
    # `kubectl logs` and the kubelet's stats through the API server, verified both ways.
    kubelet=(--kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key"
      --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP)
  fi
  log "starting kube-apiserver on $3:$2"
  spawn kube-apiserver \
    --etcd-servers="http://127.0.0.1:$1" \
    --bind-address="$3" --advertise-address="$3" --secure-port="$2" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --authorization-mode="$authz" \
    --enable-admission-plugins="$admission" \
    --admission-control-config-file="$pki/admission.yaml" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --profiling="${CE_APISERVER_PROFILING:-false}" --enable-garbage-collector=true \
    --etcd-prefix="/registry" \
    --cert-dir="$pki" "${kubelet[@]}"
}

# restart apiserver: stops the API server and starts it again on the same port and etcd,
# for the fault tests (clients see their watches and connections drop).
restart() {
  [[ ${1:-} == apiserver ]] || { echo "usage: $0 restart apiserver [--dir DIR]" >&2; exit 2; }
  [[ -f "$dir/env" ]] || { log "no cluster in $dir"; exit 1; }
  # shellcheck disable=SC1091
  source "$dir/env"
  log "restarting kube-apiserver"
  stop kube-apiserver
  start_apiserver "$ETCD_PORT" "$API_PORT" "$API_HOST" "$NODE"
  wait_for "kube-apiserver /readyz" 90 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=5s get --raw /readyz
}

up() {
  if running; then
    if $with_node && [[ ! -d "$dir/node" ]]; then
      log "cluster in $dir runs without a node: stop it first (hack/cluster.sh down) to start one with --node"
      exit 1
    fi
    log "cluster already running ($dir/kubeconfig)"
    return
  fi
  for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [[ -x "$bin/$b" ]] || { log "$bin/$b is missing: run hack/build-tools.sh first"; exit 1; }
  done
  down_quiet
  "$root/hack/node.sh" down --dir "$dir"
  # A start that fails half-way (a component that does not come up) leaves nothing of this
  # cluster running: the caller has no cluster to stop.
  trap 'failed=$?; log "start failed: stopping what was started"; "$root/hack/node.sh" down --dir "$dir" || true; down_quiet; exit "$failed"' EXIT
  rm -rf "$dir/etcd" "$pki" "$dir/kubeconfig"
  mkdir -p "$logs" "$dir/etcd"
  gen_pki
  local api_host=127.0.0.1
  if $with_node; then
    for b in kube-scheduler kubelet kube-proxy containerd; do
      [[ -x "$bin/$b" ]] || { log "$bin/$b is missing: run hack/build-tools.sh kubernetes containerd crane first"; exit 1; }
    done
    "$root/hack/node.sh" network-up --dir "$dir"
    api_host=$NODE_GATEWAY
  fi

  local etcd_port etcd_peer api_port kcm_port
  read -r etcd_port etcd_peer api_port kcm_port < <(free_ports 4)
  start_etcd "$etcd_port" "$etcd_peer"

  start_apiserver "$etcd_port" "$api_port" "$api_host" "$with_node"
  write_kubeconfig "$dir/kubeconfig" admin "$api_port" "$api_host"
  write_kubeconfig "$dir/controller-manager.kubeconfig" controller-manager "$api_port" "$api_host"
  write_kubeconfig "$dir/operator.kubeconfig" operator "$api_port" "$api_host"
  wait_for "kube-apiserver /readyz" 90 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=5s get --raw /readyz

  start_kcm "$kcm_port" "$with_node"
  # The service-account controller creating `default` shows the controller manager works.
  wait_for "kube-controller-manager (default ServiceAccount)" 60 \
    "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get serviceaccount default -n default

  cat >"$dir/env" <<ENV
ETCD_PORT=$etcd_port
ETCD_PEER=$etcd_peer
API_PORT=$api_port
API_HOST=$api_host
NODE=$with_node
KCM_PORT=$kcm_port
ENV
  if $with_node; then
    write_kubeconfig "$dir/scheduler.kubeconfig" scheduler "$api_port" "$api_host"
    log "starting kube-scheduler"
    spawn kube-scheduler --kubeconfig="$dir/scheduler.kubeconfig" \
      --authentication-kubeconfig="$dir/scheduler.kubeconfig" --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$(free_port)" --leader-elect=false
    "$root/hack/node.sh" up --dir "$dir"
  fi
  if [[ -n "$watch_pid" ]]; then
    # Detached watchdog: tears the cluster down once the watched process is gone.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down --dir "$3"' \
      "ce-watchdog:$dir" "$watch_pid" "$root/hack/cluster.sh" "$dir" >"$logs/watchdog.log" 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"
  fi
  trap - EXIT
  log "cluster ready: export KUBECONFIG=$dir/kubeconfig"
}

# Stops the components in reverse dependency order (the API server shuts down quickly only
# while etcd is still there), each with TERM, then KILL after 10 s.
down_quiet() {
  local name pids
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop "$name"
  done
  # Anything else carrying the tag (should be nothing).
  pids=$(cluster_pids)
  # shellcheck disable=SC2086
  [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
  return 0
}

down() {
  # A watchdog that is not this very process (it execs `down` itself) is no longer needed.
  if [[ -f "$dir/watchdog.pid" ]]; then
    local wd
    wd=$(cat "$dir/watchdog.pid")
    [[ "$wd" != "$$" ]] && kill "$wd" 2>/dev/null || true
    rm -f "$dir/watchdog.pid"
  fi
  # The node first: the kubelet stops its Pods, containerd its containers, and everything
  # the node made on this machine goes (hack/node.sh down says what).
  "$root/hack/node.sh" down --dir "$dir"
  down_quiet
  rm -rf "$dir/etcd" "$dir/etcd.restored" "$pki" "$dir/kubeconfig" "$dir/controller-manager.kubeconfig" "$dir/operator.kubeconfig" \
    "$dir/scheduler.kubeconfig" "$dir/env"
  if [[ -n "$(cluster_pids)" ]]; then
    log "processes of $dir still running: $(cluster_pids)"
    exit 1
  fi
  log "cluster in $dir stopped"
}

case $cmd in
  up) up ;;
  down) down ;;
  restart) restart "$component" ;;
  snapshot) snapshot "$component" ;;
  status)
    if running; then echo "running: $dir/kubeconfig"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 up|down|status|restart apiserver|snapshot save|restore FILE [--dir DIR] [--watch-pid PID]" >&2; exit 2 ;;
esac
