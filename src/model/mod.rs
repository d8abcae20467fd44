//! The pure model: everything the operator decides, as functions of their inputs, with no
//! I/O, no clock and no randomness (the caller passes `now` and fresh random values).
//!
//! Each kind has a `decide(inputs) -> Decision`: the reconciler resolves the inputs from the
//! caches, calls it, carries out the actions and writes the status if it changed. The
//! admission webhook and the authorization endpoint call the same rules (`admission`,
//! `authz`), so the three enforcement points always agree, word for word.

pub mod account;
pub mod actor;
pub mod admission;
pub mod authz;
pub mod conditions;
pub mod deletion;
pub mod issuance;
pub mod names;
pub mod organization;
pub mod privileges;
pub mod role_binding;
pub mod safelist;
pub mod secrets;
pub mod super_organization;
pub mod tenancy;
pub mod user;

use std::time::Duration;

use conditions::Event;
pub use secrets::SecretPlan;

/// What a reconcile decided for one object.
#[derive(Debug, PartialEq)]
pub struct Decision<S> {
    /// The complete status to report (written only if it differs from what is reported).
    pub status: S,
    /// What to do, in order, before the status is written.
    pub actions: Vec<Action>,
    /// Events to publish once the actions succeeded.
    pub events: Vec<Event>,
    /// When to look again although nothing changed (grace periods).
    pub requeue_after: Option<Duration>,
}

impl<S> Decision<S> {
    pub fn status(status: S) -> Self {
        Self {
            status,
            actions: Vec::new(),
            events: Vec::new(),
            requeue_after: None,
        }
    }

    /// In a namespace being deleted the namespace controller removes everything: the
    /// operator creates nothing and writes nothing, and only lets go of its finalizer.
    pub fn in_terminating_namespace(status: S, has_finalizer: bool) -> Self {
        let mut decision = Self::status(status);
        if has_finalizer {
            decision.actions.push(Action::RemoveFinalizer);
        }
        decision
    }
}

/// Something the operator does to the cluster.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Add the children finalizer to the object.
    AddFinalizer,
    /// Remove the children finalizer, letting a deletion complete.
    RemoveFinalizer,
    /// Create the organization's default account ("Company Default Account").
    CreateDefaultAccount { name: String },
    /// Create the organization's owner user in the default account.
    CreateOwner {
        name: String,
        account: String,
        email: String,
        display_name: Option<String>,
    },
    /// Create the owner's org-admin RoleBinding.
    CreateOwnerBinding { name: String, user: String },
    /// Pin a RoleBinding to the CEUser it binds (an owner reference with its uid): it never
    /// grants to a later user of the same name, and goes with its user.
    PinToUser { user: String, uid: String },
    /// Delete a child object (cascading deletion, a superseded default account).
    Delete(Child),
    /// Carry out a secret plan on the object's generated Secret (`labels` for a new one).
    Secret {
        name: String,
        labels: std::collections::BTreeMap<String, String>,
        plan: SecretPlan,
    },
}

/// A child object, by kind and name (in the parent's namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Child {
    Account(String),
    User(String),
    RoleBinding(String),
    Safelist(String),
}

/// "a, b, c and 4 more": a short list of names for a condition message.
pub fn name_list<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    const SHOWN: usize = 5;
    let names: Vec<S> = names.into_iter().collect();
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// Whether an object carries the operator's children finalizer.
pub fn has_finalizer<K: kube::Resource>(obj: &K) -> bool {
    obj.meta().finalizers.iter().flatten().any(|f| f == names::FINALIZER)
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_lists_are_short() {
        assert_eq!(name_list(["a", "b"]), "a, b");
        assert_eq!(name_list((1..=8).map(|i| i.to_string())), "1, 2, 3, 4, 5 and 3 more");
    }

    /// A list of names shows five, and says how many more there are only when there are more.
    #[test]
    fn a_name_list_shows_five_and_counts_the_rest() {
        assert_eq!(name_list(["a", "b", "c", "d", "e"]), "a, b, c, d, e");
        assert_eq!(
            name_list(["a", "b", "c", "d", "e", "f", "g"]),
            "a, b, c, d, e and 2 more"
        );
    }
}
