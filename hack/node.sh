#!/usr/bin/env bash
# A real worker node for the local cluster: containerd 2.x + runc, the CNI bridge, kubelet
# and kube-proxy (nftables), run as root on this machine. hack/cluster.sh calls it for
# `up --node` and `down`; it is not meant to be called on its own except `import`.
#
#   hack/node.sh network-up --dir DIR    the node's bridge (before the API server binds to it)
#   hack/node.sh up --dir DIR            containerd, kubelet, kube-proxy; waits for Ready
#   hack/node.sh import --dir DIR FILE   an image tarball into the node's containerd (k8s.io)
#   hack/node.sh down --dir DIR          everything the node made, and nothing else
#
# What it creates, and so what `down` removes (and the only host state it touches):
#   - the bridge ce0 (10.244.0.1/24, the pod network and the API server's address) and the
#     pods' veths (the CNI bridge plugin's, removed with their network namespaces);
#   - the cgroup /ce-node in each cgroup v1 hierarchy (the kubelet's cgroupRoot: every pod's
#     cgroup is below it);
#   - the nftables tables `ip kube-proxy` and `ip6 kube-proxy` (kube-proxy's nftables mode
#     keeps all its rules in them), and the kubelet's own iptables chains (KUBE-FIREWALL,
#     KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY, through iptables-nft): a table that did not
#     exist before `up` is deleted whole, from one that did only the KUBE-* chains and the
#     rules that jump to them go (no ipMasq, no portmap: the CNI plugins add none);
#   - mounts under DIR/node (secret volumes, container root filesystems) and the network
#     namespaces containerd made (/run/netns/cni-*);
#   - sysctls the kubelet and the bridge plugin set (vm.overcommit_memory, kernel.panic,
#     kernel.panic_on_oops, vm.panic_on_oom, net.ipv4.ip_forward): their values before
#     `up` are saved in DIR/node/sysctl.saved and written back by `down`.
# One node per machine (the bridge, the kube-proxy tables and the cgroup have fixed names):
# `up` refuses while another directory's node runs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}; shift || true
dir="$root/.local/cluster"
file=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    *) file=$1; shift ;;
  esac
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin="$root/.local/bin"
node="$dir/node"
pki="$dir/pki"
logs="$dir/logs"

NODE_NAME=ce-node
BRIDGE=ce0
GATEWAY=10.244.0.1
POD_SUBNET=10.244.0.0/24
CGROUP_ROOT=ce-node
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops vm.panic_on_oom net.ipv4.ip_forward)
OWNER_FILE=/run/ce-operator-node.owner
# shellcheck source=versions.env
source "$root/hack/versions.env"

log() { printf '[node %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# shellcheck source=cluster-lib.sh
source "$root/hack/cluster-lib.sh"
kubectl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
# ctr, without containerd's cgroup v1 deprecation warning on every call.
ctr() { "$bin/ctr" --address "$node/containerd/containerd.sock" --namespace k8s.io "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2); }

claim() {
  if [[ -f $OWNER_FILE ]]; then
    local owner
    owner=$(cat "$OWNER_FILE")
    if [[ "$owner" != "$dir" && -d "$owner/node" ]]; then
      log "a node of $owner is running on this machine: stop it first (hack/cluster.sh down --dir $owner)"
      exit 1
    fi
  fi
  echo "$dir" >"$OWNER_FILE"
}

network_up() {
  claim
  mkdir -p "$node"
  # The nftables tables that exist before the node: `down` deletes only the others.
  [[ -f "$node/nft.before" ]] || nft list tables >"$node/nft.before"
  # The network namespaces that exist before the node: `down` leaves exactly these.
  [[ -f "$node/netns.before" ]] || { ls /run/netns 2>/dev/null || true; } >"$node/netns.before"
  if [[ ! -f "$node/sysctl.saved" ]]; then
    for s in "${SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$node/sysctl.saved"
  fi
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    touch "$node/bridge.ours"
    ip addr add "$GATEWAY/24" dev "$BRIDGE"
  elif [[ ! -f "$node/bridge.ours" ]]; then
    log "an interface $BRIDGE exists that this node did not make: it is left alone, and no node starts"
    exit 1
  fi
  ip link set "$BRIDGE" up
}

# The kubelet's cgroupRoot, made in every v1 hierarchy (cpuset needs its cpus and mems set
# before a task may join).
cgroups_up() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h" ]] || continue
    mkdir -p "$h$CGROUP_ROOT"
    if [[ -f "${h}cpuset.cpus" ]]; then
      cat "${h}cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
      cat "${h}cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

pause_image() {
  # Kubernetes' own pause (build/pause/linux/pause.c in the k8s.io/kubernetes module),
  # compiled statically and wrapped by crane: the node cannot pull registry.k8s.io.
  local cache=${CE_TOOLS_CACHE:-$HOME/.cache/ce-operator/tools}
  local out="$cache/pause-$KUBERNETES_VERSION/pause.tar"
  if [[ ! -f $out ]]; then
    local src work
    # The module's source from Go's module cache (the tools' build has downloaded it already).
    src=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c
    [[ -f $src ]] || { echo "node: pause.c not found in k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; exit 1; }
    work=$(mktemp -d)
    mkdir -p "$work/rootfs" "$(dirname "$out")"
    gcc -Os -static -Wall -Werror -DVERSION="${PAUSE_IMAGE##*:}" -o "$work/rootfs/pause" "$src"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" pause
    local port pid
    port=$(free_port)
    "$bin/crane" registry serve --address "127.0.0.1:$port" >/dev/null 2>&1 &
    pid=$!
    wait_for "crane registry" 10 curl -fsS "http://127.0.0.1:$port/v2/"
    "$bin/crane" append --insecure --oci-empty-base -f "$work/layer.tar" -t "127.0.0.1:$port/pause:b" >/dev/null 2>"$work/crane.log" ||
      { cat "$work/crane.log" >&2; exit 1; }
    "$bin/crane" mutate --insecure "127.0.0.1:$port/pause:b" --set-platform linux/amd64 --user 65535:65535 \
      --entrypoint /pause -t "$PAUSE_IMAGE" -o "$out.tmp" >/dev/null
    kill "$pid" 2>/dev/null || true
    mv "$out.tmp" "$out"
    rm -rf "$work"
  fi
  ctr images import --no-unpack "$out" >/dev/null
}

node_pki() {
  cd "$pki"
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=system:nodes/CN=system:node:$NODE_NAME" -keyout kubelet-client.key -out kubelet-client.csr 2>/dev/null
  openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out kubelet-client.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=system:kube-proxy" -keyout kube-proxy.key -out kube-proxy.csr 2>/dev/null
  openssl x509 -req -in kube-proxy.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out kube-proxy.crt 2>/dev/null
  printf 'subjectAltName=IP:%s,DNS:%s\nextendedKeyUsage=serverAuth\n' "$GATEWAY" "$NODE_NAME" >kubelet.ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$NODE_NAME" -keyout kubelet.key -out kubelet.csr 2>/dev/null
  openssl x509 -req -in kubelet.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile kubelet.ext -out kubelet.crt 2>/dev/null
  cd - >/dev/null
}

node_kubeconfig() {
  local name=$1 cert=$2
  # shellcheck disable=SC1091
  source "$dir/env"
  cat >"$node/$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ce-local
  cluster: {server: "https://$API_HOST:$API_PORT", certificate-authority: "$pki/ca.crt"}
users:
- name: $name
  user: {client-certificate: "$pki/$cert.crt", client-key: "$pki/$cert.key"}
contexts:
- name: ce-local
  context: {cluster: ce-local, user: $name}
current-context: ce-local
KC
}

up() {
  for b in containerd containerd-shim-runc-v2 ctr kubelet kube-proxy crane; do
    [[ -x "$bin/$b" ]] || { log "$bin/$b is missing: run hack/build-tools.sh kubernetes containerd crane"; exit 1; }
  done
  for b in /usr/sbin/runc /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/sbin/nft gcc; do
    command -v "$b" >/dev/null || { log "$b is missing: run hack/ensure-deps.sh"; exit 1; }
  done
  network_up
  cgroups_up
  mkdir -p "$node"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs,runc} "$logs"
  node_pki
  node_kubeconfig kubelet kubelet-client
  node_kubeconfig kube-proxy kube-proxy

  cat >"$node/cni/net.d/10-ce-node.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "ce-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$node/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON
  cat >"$node/containerd/config.toml" <<TOML
version = 3
root = "$node/containerd/root"
state = "$node/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$node/containerd/containerd.sock"

[plugins.'io.containerd.internal.v1.opt']
  path = "$node/containerd/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  # This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its OOM score
  # below this one's (0): runc failed with "failed to update /proc/self/oom_score_adj:
  # Permission denied" for the sandbox's -998. Clamp to ours, as rootless setups do.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
      Root = "$node/runc"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$node/cni/net.d"
TOML
  log "starting containerd $CONTAINERD_VERSION"
  PATH="$bin:$PATH" spawn containerd --config "$node/containerd/config.toml"
  wait_for "containerd" 30 ctr version
  pause_image

  # shellcheck disable=SC1091
  source "$dir/env"
  local kubelet_port kubelet_healthz proxy_healthz proxy_metrics
  read -r kubelet_port kubelet_healthz proxy_healthz proxy_metrics < <(free_ports 4)
  cat >"$node/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines have cgroup v1 only (the cgroup2 hierarchy holds no controllers).
failCgroupV1: false
# No CAP_SYS_RESOURCE here (see containerd's restrict_oom_score_adj): keep our OOM score.
oomScoreAdj: 0
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
containerRuntimeEndpoint: unix://$node/containerd/containerd.sock
address: $GATEWAY
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $node/pod-logs
failSwapOn: false
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# A small disk or busy machine must not evict the operator under test.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 30
YAML
  log "starting kubelet (node $NODE_NAME, pods in $POD_SUBNET)"
  spawn kubelet --config="$node/kubelet/config.yaml" --kubeconfig="$node/kubelet.kubeconfig" \
    --root-dir="$node/kubelet" --cert-dir="$node/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$GATEWAY" --v=1

  cat >"$node/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
oomScoreAdj: 0
clientConnection: {kubeconfig: $node/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $GATEWAY
healthzBindAddress: 127.0.0.1:$proxy_healthz
metricsBindAddress: 127.0.0.1:$proxy_metrics
clusterCIDR: $POD_SUBNET
# NodePorts only on the bridge, never on this machine's own interface.
nodePortAddresses: ["$GATEWAY/32"]
# 0: leave the host's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
YAML
  log "starting kube-proxy (nftables)"
  spawn kube-proxy --config="$node/kube-proxy.yaml" --v=1
  wait_for "node $NODE_NAME Ready" 120 bash -c "[[ \$('$bin/kubectl' --kubeconfig '$dir/kubeconfig' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}') == True ]]"
  wait_for "kube-proxy healthz" 60 curl -fsS "http://127.0.0.1:$proxy_healthz/healthz"
  log "node $NODE_NAME ready"
}

import() {
  [[ -f $file ]] || { log "usage: $0 import --dir DIR FILE.tar"; exit 2; }
  ctr images import --no-unpack "$file" >/dev/null
}


# Every process whose cgroup is under /ce-node (containers, shims) or whose command line
# names the node's directory: the node's, and nothing else.
node_processes() {
  {
    grep -l -E "^[0-9]+:[^:]*:/$CGROUP_ROOT(/|$)" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3
    pgrep -f -- "$node/" 2>/dev/null
  } | sort -u | grep -v -x "$$" || true
}

# The tables the node created go whole; in one that was there before, the kubelet's KUBE-*
# chains and the rules jumping to them.
firewall_down() {
  local line family table
  while read -r line; do
    [[ $line == table* ]] || continue
    grep -qxF -- "$line" "$node/nft.before" 2>/dev/null && continue
    read -r _ family table <<<"$line"
    nft delete table "$family" "$table" 2>/dev/null || log "could not delete nftables table $family $table"
  done < <(nft list tables)
  local ipt t rule chain
  for ipt in iptables ip6tables; do
    for t in filter nat mangle; do
      grep -qx "table $([[ $ipt == iptables ]] && echo ip || echo ip6) $t" "$node/nft.before" 2>/dev/null || continue
      while read -r rule; do
        # shellcheck disable=SC2086
        $ipt -t "$t" ${rule/#-A/-D} 2>/dev/null || true
      done < <($ipt -t "$t" -S 2>/dev/null | grep -E '^-A .* -j KUBE-')
      while read -r _ chain; do
        $ipt -t "$t" -F "$chain" 2>/dev/null; $ipt -t "$t" -X "$chain" 2>/dev/null || true
      done < <($ipt -t "$t" -S 2>/dev/null | grep -E '^-N KUBE-')
    done
  done
}

down() {
  # Only a directory that made a node has anything to remove.
  [[ -d "$node" ]] || return 0
  stop kubelet
  stop kube-proxy
  # Containers first (the shims and their tasks), while containerd still answers.
  if [[ -S "$node/containerd/containerd.sock" ]] && [[ -n "$(pids_of containerd)" ]]; then
    local c
    for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  local pids
  for _ in 1 2 3; do
    pids=$(node_processes)
    [[ -z "$pids" ]] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  done
  # Mounts under the node's directory, deepest first.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$node/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  # The pods' network namespaces (containerd's cni-*) that were not there before `up`;
  # their veths go with them.
  for m in /run/netns/cni-*; do
    [[ -e $m ]] || continue
    grep -qx -- "$(basename "$m")" "$node/netns.before" 2>/dev/null && continue
    umount "$m" 2>/dev/null || true
    rm -f "$m"
  done
  firewall_down
  [[ -f "$node/bridge.ours" ]] && { ip link del "$BRIDGE" 2>/dev/null || true; }
  # Veths left by a pod whose namespace is gone were removed with it; any still attached
  # to the bridge went with the bridge.
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h$CGROUP_ROOT" ]] || continue
    find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d "$h$CGROUP_ROOT" ]] && log "cgroup $h$CGROUP_ROOT is still there"
  done
  if [[ -f "$node/sysctl.saved" ]]; then
    local line
    while read -r line; do sysctl -q -w "$line" >/dev/null || log "could not restore $line"; done <"$node/sysctl.saved"
  fi
  rm -rf "$node"
  [[ -f $OWNER_FILE && "$(cat "$OWNER_FILE")" == "$dir" ]] && rm -f "$OWNER_FILE"
  return 0
}

case $cmd in
  network-up) network_up ;;
  up) up ;;
  import) import ;;
  down) down ;;
  *) echo "usage: $0 network-up|up|import FILE|down [--dir DIR]" >&2; exit 2 ;;
esac
