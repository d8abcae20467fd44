#!/usr/bin/env bash
# `make negative-controls`: every control breaks the product on purpose and names the check
# that must then fail. A test that still passes against its control cannot tell a working
# operator from a broken one. Not part of `make test` (each control rebuilds the crate); the
# run time is printed at the end.
#
#   hack/negative-controls.sh [NAME...]     all controls, or those named
#
# Each control is applied to a scratch worktree of HEAD (the checkout is never touched): FILE
# gets one literal replacement (the control fails as stale if FILE no longer holds the
# text), then CHECK runs there against the shared test cluster, and must fail.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[negative-controls %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

work="$root/.local/negative-controls"
cluster_dir="$root/.local/test-cluster"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ce-operator/target}
export CE_TEST_KUBECONFIG="$cluster_dir/kubeconfig"
selected=" $* "
missed=()

# record_missed NAME WHY: records a control that proved nothing, with its log.
record_missed() {
  log "$1: $2 (.local/negative-control-$1.log)"
  cp "$work.log" "$root/.local/negative-control-$1.log" 2>/dev/null || true
  missed+=("$1")
}

# control NAME FILE TEXT REPLACEMENT CHECK
control() {
  local name=$1 file=$2 text=$3 replacement=$4 check=$5
  [[ $selected == "  " || $selected == *" $name "* ]] || return 0
  git worktree remove --force "$work" 2>/dev/null || rm -rf "$work"
  rm -f "$work.log"
  git worktree add --quiet --detach "$work" HEAD
  # The checkout's tools and test cluster.
  mkdir -p "$work/.local"
  ln -s "$root/.local/bin" "$work/.local/bin"
  ln -s "$cluster_dir" "$work/.local/test-cluster"
  if ! python3 - "$work/$file" "$text" "$replacement" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if old not in text:
    sys.exit(1)
open(path, "w").write(text.replace(old, new, 1))
PY
  then
    record_missed "$name" "STALE: $file no longer holds the text the control breaks"
    return 0
  fi
  log "$name: $file broken; must fail: $check"
  local began=$SECONDS
  # A control that does not build proves nothing: the build must pass, the check fail.
  if [[ $check == "cargo test "* ]] && ! (cd "$work" && eval "${check/cargo test/cargo test --no-run}") >"$work.log" 2>&1; then
    record_missed "$name" "BROKEN: the control does not build"
    return 0
  fi
  if (cd "$work" && eval "$check") >"$work.log" 2>&1; then
    record_missed "$name" "NOT CAUGHT: the check passed against the broken product"
  else
    log "$name: caught in $((SECONDS - began)) s (.local/negative-control-$name.log: check it failed where it should)"
    cp "$work.log" "$root/.local/negative-control-$name.log" 2>/dev/null || true
  fi
}

hack/cluster.sh up --dir "$cluster_dir"
started=$SECONDS

control denylist-fails-open src/model/safelist.rs \
  'Link::Refused { .. } => return (Visible::Only(BTreeSet::new()), Vec::new()),' \
  'Link::Refused { .. } => &[],' \
  'cargo test --test integration authz::changes_take_effect'
control link-unlocked src/model/super_organization.rs \
  '(new.spec.super_organization_ref.as_ref() != Some(reference)).then(' \
  'false.then(' \
  'cargo test --test integration webhook::each_rule_refuses'
control refusal-log-unbudgeted src/metrics.rs \
  'let allowed = self.budget.check().is_ok();' \
  'let allowed = true;' \
  'cargo test --test integration authz::a_refusal_tells'
control unsealed-secrets-vouch src/model/issuance.rs \
  'verifies(key, &holder, presented, seal).then(|| Vouched {' \
  '(verifies(key, &holder, presented, seal) || true).then(|| Vouched {' \
  'cargo test --test integration authz::a_planted_or_changed'
control restore-no-wait src/model/secrets.rs \
  'restored.then(|| created' \
  '(restored && false).then(|| created' \
  'cargo test --test integration gitops::stale'
control restored-secret-not-traced src/cache/secrets.rs \
  '        names::secret_holder(name)' \
  '        names::secret_holder(name).filter(|_| false)' \
  'cargo test --test integration gitops::stale'
control restore-keeps-owner-references charts/ce-operator/templates/restore.yaml \
  "&& object.metadata.ownerReferences.exists(r, r.apiVersion.startsWith('ce.tenancy.io/'))" \
  '&& false' \
  'cargo test --test integration gitops::stale'
control anyone-may-act src/webhook/mod.rs \
  '.then(|| actor::refusal(cache, tenancy, request))' \
  '.then(|| None)' \
  'cargo test --test integration tenants::'
control org-admin-granted-by-anyone src/model/actor.rs \
  'if role == Role::OrgAdmin && !identity.roles.contains(&Role::OrgAdmin) {' \
  'if false {' \
  'cargo test --test integration tenants::'
control org-admin-granted-by-anyone-through-the-api src/model/actor.rs \
  'if role == Role::OrgAdmin && !identity.roles.contains(&Role::OrgAdmin) {' \
  'if false {' \
  'cargo test --test integration tenant_api::'
control tenant-api-writes-as-the-operator src/tenant_api/write.rs \
  'let headers = request.headers_mut();' \
  'let headers = &mut http::HeaderMap::new();' \
  'cargo test --test integration tenant_api::'
control tenant-api-shows-every-user src/model/actor.rs \
  '    me == user || identity.holds_in(Privilege::ManageUsers, account)' \
  '    let _ = (identity, me, user, account); true' \
  'cargo test --test integration tenant_api::'
control refused-binding-grants src/model/user.rs \
  'account_is_default: in_default,' \
  'account_is_default: true,' \
  'cargo test --test integration roles::each_role_is_assigned'
control a-kind-never-reconciled src/controller/mod.rs \
  '            ctx.metrics.record_reconcile(kind, started.elapsed());' \
  '            if kind != "ElementSafelist" { ctx.metrics.record_reconcile(kind, started.elapsed()); }' \
  'cargo test --test integration quiet::at_rest_and_across'
control etcd-restore-without-bump hack/cluster.sh \
  '--bump-revision 1000000000 --mark-compacted \' \
  '\' \
  'cargo test --test integration etcd_restore::'
control chart-grants-a-verb-too-many charts/ce-operator/templates/rbac.yaml \
  'verbs: [delete]' \
  'verbs: [delete, update]' \
  'cargo test --test integration chart::the_chart_installs'
control superseded-default-account-kept src/model/organization.rs \
  'actions.push(Action::Delete(Child::Account(superseded.name_any())));' \
  'if false { actions.push(Action::Delete(Child::Account(superseded.name_any()))); }' \
  'cargo test --test integration chart::the_chart_installs'
control chart-misses-a-kind charts/ce-operator/templates/_helpers.tpl \
  'organizations, accounts, ceusers, rolebindings, elementsafelists' \
  'organizations, accounts, ceusers, rolebindings' \
  'cargo test --lib kinds::'
control resolver-judges-the-stored-version src/cache/resolve.rs \
  '    list.push(Arc::new(candidate.clone()));' \
  '    let _ = candidate;' \
  'cargo test --lib cache::resolve::'
control a-reference-ahead-of-its-object-refused src/model/admission.rs \
  $'        | Reason::ChildrenExist => Treatment::Deny,\n        Reason::OrganizationNotFound' \
  $'        | Reason::ChildrenExist\n        | Reason::AccountNotFound => Treatment::Deny,\n        Reason::OrganizationNotFound' \
  'cargo test --test integration webhook::a_tenant_applied_as_a_folder'
control own-writes-know-only-the-latest src/cache/writes.rs \
  'write.resource_versions.push(rv.to_owned());' \
  'write.resource_versions = vec![rv.to_owned()];' \
  'cargo test --lib cache::writes::'
control a-relist-keeps-writes-it-did-not-find src/cache/watch.rs \
  'if !relist.seen.contains(&key) && kind.forget(&key, &written) {' \
  'if false && kind.forget(&key, &written) {' \
  'cargo test --lib cache::watch::'
control indexes-behind-the-store src/cache/watch.rs \
  '                        K::index_ahead(cache, &obj);' \
  '' \
  'cargo test --lib cache::watch::'
control terminating-namespaces-unseen src/cache/queries.rs \
  '            .is_some_and(|n| n.metadata.deletion_timestamp.is_some())' \
  '            .is_some_and(|n| n.metadata.deletion_timestamp.is_some() && false)' \
  'cargo test --test integration faults::a_terminating_namespace'
control a-write-the-watch-passed-is-expected src/cache/kind.rs \
  'if version(written.meta().resource_version.as_deref()).is_some_and(|at| at <= watched) {' \
  'if false {' \
  'cargo test --lib cache::watch::'
control a-hot-loop-from-the-caches src/controller/mod.rs \
  $'            result\n        }\n        .instrument(span)' \
  $'            result.map(|_| Action::requeue(Duration::from_millis(20)))\n        }\n        .instrument(span)' \
  'cargo test --test integration faults::etcd_paused'
control a-requeue-every-second src/controller/mod.rs \
  $'            result\n        }\n        .instrument(span)' \
  $'            result.map(|_| Action::requeue(Duration::from_secs(1)))\n        }\n        .instrument(span)' \
  'cargo test --test integration faults::etcd_paused'
control a-status-write-to-a-deleted-object-fails src/controller/error.rs \
  'Error::AddFinalizer { source, .. } | Error::WriteStatus { source, .. } => not_found(source),' \
  'Error::AddFinalizer { source, .. } | Error::WriteStatus { source, .. } => not_found(source) && false,' \
  'cargo test --test integration operator::an_object_gone_before_it_is_written_to'
control a-create-in-a-deleted-namespace-fails src/controller/error.rs \
  '_ => self.api_error().is_some_and(namespace_not_found),' \
  '_ => self.api_error().is_some_and(namespace_not_found) && false,' \
  'cargo test --test integration operator::an_object_gone_before_it_is_written_to'
control deleted-namespaces-forgotten src/cache/mod.rs \
  'deleted.insert(change.name(), now);' \
  'let _ = now;' \
  'cargo test --lib a_deleted_namespace_is_terminating'
control decided-from-the-stale-cached-status src/cache/writes.rs \
  'Ok(status) if newer =>' \
  'Ok(status) if newer && false =>' \
  'cargo test --lib a_reconcile_decides_from_the_status_written'
control metrics-read-without-their-labels tests/integration/support/metrics.rs \
  'with.iter().all(|(k, v)| s.labels.get(k) == Some(*v))' \
  'with.iter().all(|(k, _)| s.labels.get(k).is_some())' \
  'cargo test --test integration observability::the_metrics_text_is_read'
control retry-every-2-s-without-backoff src/controller/backoff.rs \
  'delay(*n, rand::random_range(0.8..1.2))' \
  '{ let _ = delay(*n, 1.0); Duration::from_secs(2) }' \
  'cargo test --test integration faults::writes_refused'
control an-unused-dependency Cargo.toml \
  $'json-patch = "4"\n' \
  $'json-patch = "4"\neither = "1"\n' \
  '.local/bin/cargo-machete'
control unpinned-base-image Dockerfile \
  ':nonroot@sha256:' ':nonroot#sha256:' \
  'python3 hack/dockerfile.py pinned --dockerfile Dockerfile'
control copyleft-licence deny.toml \
  '  "MIT",' '  "GPL-3.0-only",' \
  'hack/deny.sh'

git worktree remove --force "$work" 2>/dev/null || true
log "ran in $((SECONDS - started)) s"
if [[ ${#missed[@]} -gt 0 ]]; then
  log "controls not caught: ${missed[*]}"
  exit 1
fi
log "every control was caught"
