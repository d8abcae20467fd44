# Process helpers shared by hack/cluster.sh and hack/node.sh (sourced, not run). The caller
# sets `dir` (the cluster's directory), `bin` (.local/bin), `logs` and `log()`.
#
# Every process of a cluster runs under the argv[0] "ce-cluster:DIR:NAME", which is how
# `down` and the leak checks find them, whatever state the directory is in.
tag="ce-cluster:$dir:"

# free_ports N: N distinct free ports on 127.0.0.1, for the components to listen on. Not from
# the kernel's ephemeral range (32768-60999): a port picked there by binding port 0 can be
# handed out again, to another cluster starting at the same moment (two clusters' etcd on one
# port) or to any process's outgoing connection, before the component binds it. Instead,
# random ports in 20000-32767 that bind now and that no other start took in the last two
# minutes (a file of recent picks, under a lock, shared by every checkout on this machine).
free_ports() {
  python3 - "$1" <<'PY'
import fcntl, json, os, random, socket, sys, time
n, now, path = int(sys.argv[1]), time.time(), "/tmp/ce-cluster-ports.json"
with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        recent = {int(p): t for p, t in json.load(open(path)).items() if now - t < 120}
    except (OSError, ValueError):
        recent = {}
    picked = []
    while len(picked) < n:
        port = random.randint(20000, 32767)
        if port in recent or port in picked:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        picked.append(port)
    recent.update({p: now for p in picked})
    with open(path + ".tmp", "w") as f:
        json.dump(recent, f)
    os.replace(path + ".tmp", path)
print(" ".join(map(str, picked)))
PY
}
free_port() { free_ports 1; }

# pids_of [NAME]: the processes of this cluster (of one component, if NAME is given).
pids_of() {
  pgrep -f -- "^$(printf '%s' "$tag${1:-}" | sed 's/[.[\*^$]/\\&/g')" 2>/dev/null || true
}

# spawn NAME ARGS...: starts .local/bin/NAME detached, logging to logs/NAME.log.
spawn() {
  local name=$1; shift
  setsid bash -c 'exec -a "$0" "$@"' "$tag$name" "$bin/$name" "$@" >"$logs/$name.log" 2>&1 </dev/null &
}

# stop NAME: TERM, then KILL after 10 s.
stop() {
  local name=$1 pids
  pids=$(pids_of "$name")
  [[ -z "$pids" ]] && return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    [[ -z "$(pids_of "$name")" ]] && return 0
    sleep 0.2
  done
  pids=$(pids_of "$name")
  # shellcheck disable=SC2086
  [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
  return 0
}

# wait_for WHAT TIMEOUT COMMAND...: until the command succeeds; on time-out, the logs' last lines.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start > timeout)); then
      log "timed out after ${timeout}s waiting for $what; last log lines:"
      tail -n 20 "$logs"/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}
