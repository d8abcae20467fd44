//! The queries the decisions make of the caches: one object, a kind's objects, and the
//! objects an index finds (each re-checked against the object, so a stale index entry is
//! never an answer).

#[cfg(test)]
use std::collections::BTreeSet;
use std::sync::Arc;

use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use super::{
    Cache, Cached, SecretEntry, Watched,
    index::{Key, key},
};
use crate::api::{Account, CEUser, ElementSafelist, Organization, Role, RoleBinding};

impl Cache {
    #[cfg(test)]
    fn note(&self, watched: Watched) {
        if let Some(reads) = self.reads.lock().unwrap().as_mut() {
            reads.insert(watched);
        }
    }

    #[cfg(not(test))]
    fn note(&self, _: Watched) {}

    /// Runs `f` and returns which kinds it read from the caches.
    #[cfg(test)]
    pub fn recording_reads<T>(&self, f: impl FnOnce() -> T) -> (T, BTreeSet<Watched>) {
        *self.reads.lock().unwrap() = Some(BTreeSet::new());
        let out = f();
        let reads = self.reads.lock().unwrap().take().unwrap_or_default();
        (out, reads)
    }

    /// One object by namespace and name.
    pub fn get<K: Cached>(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        self.note(K::WATCHED);
        K::slot(self).get(&ObjectRef::new(name).within(ns))
    }

    /// Every object of a kind: a scan, for a leader's first pass, the resync and rare changes
    /// (a namespace being deleted, an account appearing or going).
    pub fn all<K: Cached>(&self) -> Vec<Arc<K>> {
        K::slot(self).store.state()
    }

    /// The store of a kind, as a controller reads it.
    pub fn store<K: Cached>(&self) -> Store<K> {
        K::slot(self).store.clone()
    }

    fn resolve<K: Cached>(&self, names: Vec<Key>, still: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.note(K::WATCHED);
        let kind = K::slot(self);
        let mut found: Vec<Arc<K>> = names
            .iter()
            .filter_map(|(ns, name)| kind.get(&ObjectRef::new(name).within(ns)))
            .filter(|o| still(o))
            .collect();
        // A stable order, so that decisions (and the messages they write) do not flap;
        // compared borrowed (the authorization endpoint resolves on every request).
        found.sort_by(|a, b| {
            (a.meta().namespace.as_deref(), a.meta().name.as_deref())
                .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
        });
        found
    }

    pub fn organization(&self, ns: &str, name: &str) -> Option<Arc<Organization>> {
        self.get(ns, name)
    }

    pub fn account(&self, ns: &str, name: &str) -> Option<Arc<Account>> {
        self.get(ns, name)
    }

    pub fn user(&self, ns: &str, name: &str) -> Option<Arc<CEUser>> {
        self.get(ns, name)
    }

    pub fn accounts_of(&self, ns: &str, org: &str) -> Vec<Arc<Account>> {
        self.resolve(self.accounts_by_org.get(&key(ns, org)), |a: &Account| {
            a.spec.organization_ref.name == org
        })
    }

    /// The accounts of an organization that declare `default: true` (what
    /// `model::tenancy::default_account` chooses from).
    pub fn default_account_candidates(&self, ns: &str, org: &str) -> Vec<Arc<Account>> {
        self.resolve(self.default_accounts_by_org.get(&key(ns, org)), |a: &Account| {
            a.spec.default && a.spec.organization_ref.name == org
        })
    }

    pub fn users_of_account(&self, ns: &str, account: &str) -> Vec<Arc<CEUser>> {
        self.resolve(self.users_by_account.get(&key(ns, account)), |u: &CEUser| {
            u.spec.account_ref.name == account
        })
    }

    /// How many users account `account` has.
    pub fn user_count(&self, ns: &str, account: &str) -> usize {
        self.note(Watched::CEUser);
        let users = &self.stores.users;
        self.users_by_account
            .get(&key(ns, account))
            .iter()
            .filter(|(ns, name)| {
                users
                    .get(&ObjectRef::new(name).within(ns))
                    .is_some_and(|u| u.spec.account_ref.name == account)
            })
            .count()
    }

    /// Whether account `account` has a user: the first one found ends the look (a default
    /// account's users decide its rank on every identity, `DefaultCandidates`).
    pub fn has_users(&self, ns: &str, account: &str) -> bool {
        self.note(Watched::CEUser);
        let users = &self.stores.users;
        self.users_by_account.any(&key(ns, account), |(ns, name)| {
            users
                .get(&ObjectRef::new(name).within(ns))
                .is_some_and(|u| u.spec.account_ref.name == account)
        })
    }

    /// The users whose account belongs to organization `org`.
    pub fn users_of(&self, ns: &str, org: &str) -> Vec<Arc<CEUser>> {
        self.accounts_of(ns, org)
            .iter()
            .flat_map(|a| self.users_of_account(ns, &a.name_any()))
            .collect()
    }

    pub fn bindings_of_user(&self, ns: &str, user: &str) -> Vec<Arc<RoleBinding>> {
        self.resolve(self.bindings_by_user.get(&key(ns, user)), |b: &RoleBinding| {
            b.spec.user_ref.name == user
        })
    }

    /// The org-admin RoleBindings of a namespace (to be judged by the caller).
    pub fn org_admin_bindings(&self, ns: &str) -> Vec<Arc<RoleBinding>> {
        self.resolve(self.org_admins_by_namespace.get(&key(ns, "")), |b: &RoleBinding| {
            b.spec.role == Role::OrgAdmin
        })
    }

    pub fn safelists_of(&self, ns: &str, org: &str) -> Vec<Arc<ElementSafelist>> {
        self.resolve(self.safelists_by_org.get(&key(ns, org)), |s: &ElementSafelist| {
            s.spec.organization_ref.name == org
        })
    }

    /// The organizations (in any watched namespace) that name `ns/name` as super-organization.
    pub fn members_of(&self, ns: &str, name: &str) -> Vec<Arc<Organization>> {
        self.resolve(self.members_by_super.get(&key(ns, name)), |o: &Organization| {
            o.spec
                .super_organization_ref
                .as_ref()
                .is_some_and(|r| r.namespace == ns && r.name == name)
        })
    }

    /// The users of a namespace with this e-mail (compared case-insensitively).
    pub fn users_with_email(&self, ns: &str, email: &str) -> Vec<Arc<CEUser>> {
        self.resolve(
            self.users_by_email.get(&key(ns, &email.to_ascii_lowercase())),
            |u: &CEUser| u.spec.email.eq_ignore_ascii_case(email),
        )
    }

    /// The organization a user belongs to, through its account.
    pub fn organization_of_user(&self, user: &CEUser) -> Option<String> {
        let ns = user.namespace()?;
        self.account(&ns, &user.spec.account_ref.name)
            .map(|a| a.spec.organization_ref.name.clone())
    }

    /// One of the operator's generated Secrets, without its values.
    pub fn secret(&self, ns: &str, name: &str) -> Option<Arc<SecretEntry>> {
        self.get(ns, name)
    }

    /// The generated Secrets holding a value with this digest.
    pub fn secrets_with_digest(&self, digest: &crate::model::secrets::Digest) -> Vec<Arc<SecretEntry>> {
        self.resolve(self.digests.get(digest), |s: &SecretEntry| {
            s.facts.current.as_ref() == Some(digest) || s.facts.previous.as_ref() == Some(digest)
        })
    }

    /// Whether namespace `ns` is being deleted, or was deleted (`namespace_deleted`).
    pub fn namespace_terminating(&self, ns: &str) -> bool {
        match self.stores.namespaces.get(&ObjectRef::new(ns)) {
            Some(namespace) => namespace.metadata.deletion_timestamp.is_some(),
            None => self.namespace_deleted(ns),
        }
    }

    /// Whether the namespace watch saw `ns` deleted, and no namespace of that name since:
    /// the objects of `ns` the caches still show are on their way out. (A namespace the
    /// caches never showed is not deleted: its objects' watches may be ahead of its own.)
    pub fn namespace_deleted(&self, ns: &str) -> bool {
        self.stores.namespaces.get(&ObjectRef::new(ns)).is_none()
            && self
                .deleted_namespaces
                .lock()
                .expect("deleted namespaces lock")
                .contains_key(ns)
    }
}
