#!/usr/bin/env bash
# `make image`: the operator's OCI image, built here without a Docker engine.
#
#   hack/image.sh [--tag REF] [--version V] [--out FILE] [--also REF,VERSION,FILE]
#
# 1. The Dockerfile's build stage is run as written (hack/dockerfile.py runs its ENV,
#    COPY and RUN steps in a staging directory kept in the tools cache, so the dependency
#    layer is built once per Cargo.lock, as Docker's layer cache would): the stub stage that
#    must parse every target Cargo.toml declares is exercised on every `make image`.
# 2. The distroless/static layout is assembled: the static binary, /etc/passwd and
#    /etc/group naming root and nonroot (65532), Debian's CA certificates, /tmp, the
#    nonroot home. No shell, no libc: the binary is statically linked.
# 3. go-containerregistry's crane turns the layer into an image in a registry it serves on
#    loopback for the duration of the build, sets the config (user, entrypoint, command,
#    labels, exposed ports: the Dockerfile's final stage), and writes a tarball that
#    `ctr images import` (the real node) and `docker load` read.
#
# REF defaults to the chart's default image reference (ghcr.io/ce-tenancy/ce-operator:<appVersion>),
# so that `helm install` with default values runs the image built here; FILE defaults to
# .local/image/ce-operator.tar. --also writes a second image of the same layer with another
# reference and version label (the e2e's upgrade target) without building again. Prints
# the image's size.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/ce-operator/Chart.yaml)
version=$app_version
tag=""
out="$root/.local/image/ce-operator.tar"
also=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --also) also=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
tag=${tag:-ghcr.io/ce-tenancy/ce-operator:$app_version}
cache=${CE_TOOLS_CACHE:-$HOME/.cache/ce-operator/tools}
crane="$root/.local/bin/crane"
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || { log "Debian's ca-certificates is missing (hack/ensure-deps.sh)"; exit 1; }

# 1. The build stage, as the Dockerfile writes it: in its own target/ (Docker knows no other),
# whatever target directory the caller's cargo uses.
unset CARGO_TARGET_DIR
stage="$cache/image-build"
# One build at a time in the shared staging directory (two checkouts on one machine).
mkdir -p "$stage"
exec 9>"$stage.lock"
flock 9
log "running the Dockerfile's build stage in $stage"
python3 hack/dockerfile.py stage --dockerfile Dockerfile --stage build --context "$root" --workdir "$stage"
binary="$stage/out/ce-operator"
# A dynamic executable names its loader (INTERP) and its libraries (NEEDED); distroless
# static has neither.
if readelf -ld "$binary" | grep -E 'INTERP|\(NEEDED\)' >/dev/null; then
  log "$binary is dynamically linked: the image has no libc"; exit 1
fi

# 2. The root filesystem, owned as distroless/static's is.
work=$(mktemp -d)
registry_pid=""
cleanup() {
  [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home/nonroot"
install -m 0755 "$binary" "$rootfs/ce-operator"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$rootfs/etc/group"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$rootfs/tmp"
chown 65532:65532 "$rootfs/home/nonroot"
chmod 0700 "$rootfs/home/nonroot"
# Reproducible: sorted, numeric owners, a fixed time.
tar --sort=name --numeric-owner --mtime=@0 --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$rootfs" -cf "$work/layer.tar" .

# crane only now: beside `make test`'s other lanes it is built with the other Go tools, which
# this build stage need not wait for.
hack/build-tools.sh crane
# 3. The image: crane against a registry it serves on loopback, for this build only.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
staging_ref="127.0.0.1:$port/ce-operator:build"
"$crane" append --insecure --oci-empty-base -f "$work/layer.tar" -t "$staging_ref" >/dev/null 2>"$work/crane.log" ||
  { cat "$work/crane.log" >&2; exit 1; }

# emit REF VERSION FILE: the image's config is the Dockerfile's final stage (hack/e2e.sh
# compares the two).
emit() {
  mkdir -p "$(dirname "$3")"
  "$crane" mutate --insecure "$staging_ref" \
    --set-platform linux/amd64 \
    --user 65532:65532 \
    --entrypoint /ce-operator --cmd run \
    --exposed-ports 8080/tcp,9443/tcp,8082/tcp,8083/tcp \
    -l org.opencontainers.image.title=ce-operator \
    -l "org.opencontainers.image.description=Kubernetes operator for the Cloud Elements tenancy model" \
    -l "org.opencontainers.image.version=$2" \
    -l org.opencontainers.image.licenses=Apache-2.0 \
    -l org.opencontainers.image.source=https://github.com/ce-tenancy/ce-operator \
    -t "$1" -o "$3" >/dev/null
  local size
  size=$(stat -c %s "$3")
  log "image $1 (version label $2): $3, $((size / 1024 / 1024)) MiB ($size bytes)"
}
emit "$tag" "$version" "$out"
if [[ -n $also ]]; then
  IFS=, read -r also_tag also_version also_out <<<"$also"
  emit "$also_tag" "$also_version" "$also_out"
fi
log "binary: $(($(stat -c %s "$binary") / 1024 / 1024)) MiB, statically linked"
echo "image size: $(stat -c %s "$out") bytes"
