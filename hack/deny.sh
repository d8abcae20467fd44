#!/usr/bin/env bash
# cargo-deny in `make test` (deny.toml says what is allowed):
#   - licences, bans and sources, always (offline: they read Cargo.lock and the crates' manifests);
#   - advisories against RustSec's database (github.com/rustsec/advisory-db). When GitHub cannot
#     be reached, against a snapshot of that repository: the one given by CE_ADVISORY_DB (a clone
#     or mirror), which is then kept in the tools cache for later runs. The snapshot's date is
#     printed; with neither, the advisories check is skipped and says so.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[deny %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

hack/build-tools.sh cargo_deny
deny=(.local/bin/cargo-deny deny)
cache=${CE_TOOLS_CACHE:-$HOME/.cache/ce-operator/tools}

log "licences, bans, sources"
"${deny[@]}" --offline check licenses bans sources

if timeout 60 "${deny[@]}" check advisories 2>/tmp/ce-deny-advisories.log; then
  log "advisories: none (RustSec's database fetched now)"
  exit 0
fi
if ! grep -qiE "fetch|clone|network|resolve|connect" /tmp/ce-deny-advisories.log; then
  cat /tmp/ce-deny-advisories.log >&2
  exit 1
fi
snapshot="$cache/advisory-db-snapshot"
if [[ -n ${CE_ADVISORY_DB:-} ]]; then
  log "GitHub is unreachable: keeping the snapshot $CE_ADVISORY_DB"
  rm -rf "$snapshot" && git clone --quiet --bare "$CE_ADVISORY_DB" "$snapshot"
fi
if [[ ! -d $snapshot ]]; then
  log "advisories NOT checked: GitHub is unreachable and no snapshot was given (CE_ADVISORY_DB)"
  exit 0
fi
dated=$(git -C "$snapshot" log -1 --format=%cs)
log "advisories, against the snapshot of RustSec's database of $dated (GitHub is unreachable)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The same policy, offline, reading the snapshot where cargo-deny keeps that database (the
# directory it names when it is missing). Its age is the date above: cargo-deny's staleness
# limit, which exists to say "fetch again", is lifted for a snapshot known to be old.
sed -e "s|^db-path = .*|db-path = \"$work/dbs\"|" deny.toml >"$work/deny.toml"
echo 'maximum-db-staleness = "P3650D"' >>"$work/deny.toml.advisories"
sed -i "/^\[advisories\]/r $work/deny.toml.advisories" "$work/deny.toml"
db=$("${deny[@]}" --offline --config "$work/deny.toml" check advisories 2>&1 | grep -o "$work/dbs/advisory-db-[0-9a-f]*" | head -1 || true)
[[ -n $db ]] || { log "cannot tell where cargo-deny reads the database"; exit 1; }
git clone --quiet "$snapshot" "$db"
"${deny[@]}" --offline --config "$work/deny.toml" check advisories
log "advisories: none known as of $dated"
