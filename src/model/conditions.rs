//! Status conditions: their types and reasons as typed values (each with its polarity),
//! merging them into what an object already reports, and which transitions deserve an event.
//! The one place condition handling lives.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// The condition types the operator reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// Every kind: whether the object is in effect.
    Ready,
    /// Organization, CEUser: whether the generated secret is issued.
    SecretReady,
    /// Organization: whether someone holds org-admin.
    AdminPresent,
    /// Organization: whether the role customisations are applied.
    RolesApplied,
    /// Super-organization: whether a member safelists what it denies (True is the problem).
    DenylistConflict,
    /// Organization, Account: whether children hold a deletion (True is the problem).
    DeletionBlocked,
    /// Every kind, only while True: the object waits for something that comes by itself (an
    /// object it names, a grace period). kstatus (Flux, Helm `--wait`, kpt) reads InProgress.
    Reconciling,
    /// Every kind, only while True: only a change by a person helps. kstatus reads Failed.
    Stalled,
}

impl ConditionType {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::SecretReady => "SecretReady",
            ConditionType::AdminPresent => "AdminPresent",
            ConditionType::RolesApplied => "RolesApplied",
            ConditionType::DenylistConflict => "DenylistConflict",
            ConditionType::DeletionBlocked => "DeletionBlocked",
            ConditionType::Reconciling => "Reconciling",
            ConditionType::Stalled => "Stalled",
        }
    }

    /// Whether status True reports a problem ("negative polarity"), as for DeletionBlocked.
    pub const fn true_is_problem(self) -> bool {
        matches!(
            self,
            ConditionType::DenylistConflict
                | ConditionType::DeletionBlocked
                | ConditionType::Reconciling
                | ConditionType::Stalled
        )
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reason says about the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// All is well.
    Healthy,
    /// Accepted, but discouraged: announced once with a Warning event.
    Discouraged,
    /// A problem a person must act on: announced once with a Warning event. The object is
    /// Stalled.
    Problem,
    /// A problem that ends when an object it names appears (GitOps tools apply a folder in
    /// any order): announced once with a Warning event. The object is Reconciling.
    Waiting,
    /// A problem that resolves by itself within seconds: no event. The object is Reconciling.
    Transient,
    /// Not a condition: the reason of an activity event (Normal).
    Activity,
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident: $severity:ident,)*) => {
        /// Every condition and event reason, with its severity. The doc line of each names the
        /// one function that decides it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }

            pub const fn severity(self) -> Severity {
                match self {
                    $(Reason::$name => Severity::$severity,)*
                }
            }
        }
    };
}

reasons! {
    /// Ready=True of most kinds: `model::{organization,account,user,safelist}::decide`.
    Ready: Healthy,
    /// RoleBinding Ready=True: `model::role_binding::decide`.
    Bound: Healthy,
    /// A bound system role with overrideSystemRole: `model::tenancy::judge_binding`.
    SystemRoleOverridden: Discouraged,
    /// The referenced organization is missing: `model::account::decide`, `model::user::identity`,
    /// `model::safelist::decide`.
    OrganizationNotFound: Waiting,
    /// The referenced account is missing: `model::user::identity`, `model::tenancy::judge_binding`.
    AccountNotFound: Waiting,
    /// The referenced user is missing: `model::tenancy::judge_binding`.
    UserNotFound: Waiting,
    /// No default account yet, within the grace period: `model::organization::default_account`.
    DefaultAccountPending: Transient,
    /// The default account's name is taken: `model::organization::default_account`.
    DefaultAccountNameTaken: Problem,
    /// A second declared default account: `model::account::decide`.
    DuplicateDefaultAccount: Problem,
    /// An older user of the organization holds the e-mail: `model::user::identity`.
    DuplicateEmail: Problem,
    /// The `<org>-owner` user exists and is not the declared owner: `model::organization::owner`.
    OwnerConflict: Problem,
    /// SecretReady=True: `model::secrets::plan`.
    SecretIssued: Healthy,
    /// A restored object waits (`secrets::RESTORE_WAIT`) for its Secret to be restored too:
    /// `model::secrets::plan`.
    SecretAwaitingRestore: Transient,
    /// A Secret of the generated name is not this object's: `model::secrets::plan`.
    SecretConflict: Problem,
    /// The owned Secret lacks the `secret` key: `model::secrets::plan`.
    SecretInvalid: Problem,
    /// The owned Secret holds a value the operator did not issue (no valid seal):
    /// `model::secrets::plan`.
    SecretUnverified: Problem,
    /// org-admin bound outside the default account: `model::tenancy::judge_binding`.
    OrgAdminRequiresDefaultAccount: Problem,
    /// The binding was made for an earlier, deleted user of that name:
    /// `model::tenancy::judge_binding`.
    UserReplaced: Problem,
    /// The binding is owned by something other than its user or organization:
    /// `model::tenancy::judge_binding`.
    ForeignOwner: Problem,
    /// org/default-user bound by hand without overrideSystemRole: `model::tenancy::judge_binding`.
    SystemAssignedRole: Problem,
    /// overrideSystemRole in an organization that does not allow it:
    /// `model::tenancy::judge_binding`.
    SystemRoleOverrideNotAllowed: Problem,
    /// AdminPresent=True: `model::organization::admin_present`.
    OrgAdminPresent: Healthy,
    /// AdminPresent=False: `model::organization::admin_present`.
    NoOrgAdmin: Waiting,
    /// RolesApplied=True: `model::organization::roles_applied`.
    RolesApplied: Healthy,
    /// org-admin would lose a protected privilege: `model::organization::roles_applied`.
    ProtectedPrivilegeRevoked: Problem,
    /// A second safelist of an organization: `model::safelist::decide`.
    DuplicateSafelist: Problem,
    /// Safelisted elements denied by the super-organization: `model::safelist::decide`.
    DeniedBySuperOrganization: Problem,
    /// DenylistConflict=False: `model::organization::denylist_conflicts`.
    NoConflict: Healthy,
    /// DenylistConflict=True: `model::organization::denylist_conflicts`.
    SafelistedDeniedElements: Problem,
    /// The super-organization does not exist: `model::super_organization::judge_link`.
    SuperOrganizationNotFound: Waiting,
    /// The super-organization refuses the link: `model::super_organization::judge_link`.
    SuperOrganizationRejected: Problem,
    /// The super-organization is in a namespace this operator does not watch:
    /// `model::super_organization::judge_link`.
    SuperOrganizationNotWatched: Problem,
    /// Changing a super-organization link in effect: `model::super_organization::link_change`
    /// (admission only).
    SuperOrganizationLinkLocked: Problem,
    /// DeletionBlocked=True, children remain: `model::organization::finalize`, `model::account::finalize`.
    ChildrenExist: Problem,
    /// DeletionBlocked=True while cascading: `model::organization::finalize`, `model::account::finalize`.
    DeletingChildren: Transient,
    /// Activity: the operator created the default account.
    DefaultAccountCreated: Activity,
    /// Activity: a declared default account superseded the generated one.
    DefaultAccountSuperseded: Activity,
    /// Activity: the operator created the owner user.
    OwnerCreated: Activity,
    /// Activity: a secret was rotated (`model::secrets::rotated_event`).
    SecretRotated: Activity,
    /// A deleted Secret was issued again (a Warning): `model::secrets::plan`.
    SecretRecreated: Discouraged,
    /// Activity: the previous secret's grace period ended.
    PreviousSecretRemoved: Activity,
    /// Activity: a restored Secret holding a value issued for the object was adopted.
    SecretAdopted: Activity,
}

impl Reason {
    /// Whether this reason reports a problem (the condition is then not in its good state).
    pub const fn is_problem(self) -> bool {
        matches!(
            self.severity(),
            Severity::Problem | Severity::Waiting | Severity::Transient
        )
    }

    /// The kstatus condition this reason raises, if any: Reconciling for what comes by
    /// itself, Stalled for what only a person can fix.
    pub const fn progress(self) -> Option<ConditionType> {
        match self.severity() {
            Severity::Waiting | Severity::Transient => Some(ConditionType::Reconciling),
            Severity::Problem => Some(ConditionType::Stalled),
            Severity::Healthy | Severity::Discouraged | Severity::Activity => None,
        }
    }

    /// Parses a reason as the API spells it.
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition as the operator wants it, before timestamps. Its status follows from the
/// type's polarity and whether the reason is a problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: ConditionType,
    pub reason: Reason,
    pub message: String,
}

impl Desired {
    pub fn new(type_: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            type_,
            reason,
            message: message.into(),
        }
    }

    /// The condition's status: True or False.
    pub fn status(&self) -> bool {
        self.type_.true_is_problem() == self.reason.is_problem()
    }

    pub fn is_problem(&self) -> bool {
        self.reason.is_problem()
    }

    /// The same reason and message reported under another type (Ready mirrors a problem).
    pub fn mirrored_as(&self, type_: ConditionType) -> Desired {
        Desired::new(type_, self.reason, self.message.clone())
    }
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The conditions to report: `desired`, in order, then the kstatus conditions they raise
/// (`progress`), each keeping its previous `lastTransitionTime` unless its status changed.
/// Conditions not desired are dropped.
pub fn merge(previous: &[Condition], desired: &[Desired], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let raised = progress(desired.iter().map(|d| (d.reason, d.message.as_str())));
    desired
        .iter()
        .chain(&raised)
        .map(|d| condition(previous, d, generation, now))
        .collect()
}

/// `desired` as a condition, keeping its previous `lastTransitionTime` unless its status
/// changed.
fn condition(previous: &[Condition], desired: &Desired, generation: Option<i64>, now: Timestamp) -> Condition {
    let status = status_str(desired.status());
    let since = previous
        .iter()
        .find(|c| c.type_ == desired.type_.as_str() && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: desired.type_.as_str().to_owned(),
        status: status.to_owned(),
        reason: desired.reason.as_str().to_owned(),
        message: desired.message.clone(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The kstatus conditions that conditions with these reasons and messages raise: Stalled=True
/// with the first reason only a person can fix, Reconciling=True with the first that comes by
/// itself; neither when there is none (as Flux's own kinds do: kstatus reads an absent one
/// as False).
fn progress<'a>(reasons: impl Iterator<Item = (Reason, &'a str)> + Clone) -> Vec<Desired> {
    [ConditionType::Stalled, ConditionType::Reconciling]
        .into_iter()
        .filter_map(|type_| {
            reasons
                .clone()
                .find(|(reason, _)| reason.progress() == Some(type_))
                .map(|(reason, message)| Desired::new(type_, reason, message))
        })
        .collect()
}

/// The conditions with `desired` set and every other type kept as it is, the kstatus
/// conditions raised again from the result (merged as above).
pub fn upsert(previous: &[Condition], desired: &Desired, generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let kstatus = [ConditionType::Reconciling.as_str(), ConditionType::Stalled.as_str()];
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != desired.type_.as_str() && !kstatus.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let kept = conditions
        .iter()
        .filter_map(|c| Some((Reason::parse(&c.reason)?, c.message.as_str())));
    let raised = progress(kept.chain([(desired.reason, desired.message.as_str())]));
    let updated: Vec<Condition> = std::iter::once(desired)
        .chain(&raised)
        .map(|d| condition(previous, d, generation, now))
        .collect();
    conditions.extend(updated);
    conditions
}

/// An event the operator publishes about an object: the activity log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: Reason,
    pub note: String,
}

impl Event {
    pub fn normal(reason: Reason, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            note: note.into(),
        }
    }

    pub fn warning(reason: Reason, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            note: note.into(),
        }
    }
}

/// The Warning event `desired` deserves: one when a condition newly reports a problem (or a
/// discouraged state) with a reason it did not have before, so that a violation is announced
/// once, not on every reconcile.
pub fn warning_for(previous: &[Condition], desired: &Desired) -> Option<Event> {
    let announce = matches!(
        desired.reason.severity(),
        Severity::Problem | Severity::Waiting | Severity::Discouraged
    );
    let status = status_str(desired.status());
    let reported = previous
        .iter()
        .any(|c| c.type_ == desired.type_.as_str() && c.status == status && c.reason == desired.reason.as_str());
    (announce && !reported).then(|| Event::warning(desired.reason, desired.message.clone()))
}

/// The Warning events of every condition in `desired` that newly reports a problem.
pub fn warnings(previous: &[Condition], desired: &[Desired]) -> Vec<Event> {
    desired.iter().filter_map(|d| warning_for(previous, d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConditionType::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn status_follows_polarity_and_reason() {
        let cases = [
            (Ready, Reason::Ready, true),
            (Ready, Reason::AccountNotFound, false),
            (Ready, Reason::SystemRoleOverridden, true),
            (Ready, Reason::DefaultAccountPending, false),
            (DeletionBlocked, Reason::ChildrenExist, true),
            (DeletionBlocked, Reason::DeletingChildren, true),
            (DenylistConflict, Reason::SafelistedDeniedElements, true),
            (DenylistConflict, Reason::NoConflict, false),
            (AdminPresent, Reason::NoOrgAdmin, false),
            (AdminPresent, Reason::OrgAdminPresent, true),
        ];
        for (type_, reason, status) in cases {
            assert_eq!(Desired::new(type_, reason, "").status(), status, "{type_} {reason}");
        }
    }

    #[test]
    fn reasons_parse_back() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
        }
        assert_eq!(Reason::parse("Nonsense"), None);
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let first = merge(&[], &[Desired::new(Ready, Reason::Ready, "fine")], Some(1), at(100));
        let again = merge(
            &first,
            &[Desired::new(Ready, Reason::Ready, "still fine")],
            Some(2),
            at(200),
        );
        assert_eq!(again[0].last_transition_time, Time(at(100)));
        assert_eq!(again[0].message, "still fine");
        assert_eq!(again[0].observed_generation, Some(2));
    }

    #[test]
    fn a_changed_status_gets_a_new_transition_time() {
        let first = merge(&[], &[Desired::new(Ready, Reason::Ready, "fine")], Some(1), at(100));
        let failed = merge(
            &first,
            &[Desired::new(Ready, Reason::AccountNotFound, "no")],
            Some(1),
            at(200),
        );
        assert_eq!(failed[0].status, "False");
        assert_eq!(failed[0].reason, "AccountNotFound");
        assert_eq!(failed[0].last_transition_time, Time(at(200)));
    }

    #[test]
    fn merging_the_same_thing_twice_is_equal() {
        let desired = [
            Desired::new(Ready, Reason::Ready, "fine"),
            Desired::new(SecretReady, Reason::SecretConflict, "x"),
        ];
        let first = merge(&[], &desired, Some(3), at(100));
        assert_eq!(merge(&first, &desired, Some(3), at(999)), first);
    }

    #[test]
    fn upsert_replaces_one_type_and_keeps_the_others() {
        let first = merge(
            &[],
            &[
                Desired::new(Ready, Reason::Ready, "fine"),
                Desired::new(SecretReady, Reason::SecretIssued, "s"),
            ],
            Some(1),
            at(1),
        );
        let blocked = Desired::new(DeletionBlocked, Reason::ChildrenExist, "x");
        let with_blocked = upsert(&first, &blocked, Some(2), at(5));
        assert_eq!(with_blocked.len(), 4, "and Stalled, which children left by hand raise");
        assert_eq!(with_blocked[0], first[0]);
        assert_eq!(with_blocked[2].status, "True");
        assert_eq!(
            (with_blocked[3].type_.as_str(), with_blocked[3].status.as_str()),
            ("Stalled", "True")
        );
        assert_eq!(upsert(&with_blocked, &blocked, Some(2), at(9)), with_blocked);
        // Cascading: Reconciling instead, the Stalled of before gone.
        let cascading = Desired::new(DeletionBlocked, Reason::DeletingChildren, "y");
        let types: Vec<_> = upsert(&with_blocked, &cascading, Some(3), at(10))
            .into_iter()
            .map(|c| (c.type_, c.status))
            .collect();
        assert!(types.contains(&("Reconciling".into(), "True".into())), "{types:?}");
        assert!(!types.iter().any(|(t, _)| t == "Stalled"), "{types:?}");
    }

    /// kstatus (Flux, Helm `--wait`, kpt): Reconciling=True reads InProgress, Stalled=True
    /// Failed, neither Current. Which reasons raise which is their severity.
    #[test]
    fn problems_raise_stalled_and_what_comes_by_itself_raises_reconciling() {
        let kinds_of = |desired: &[Desired]| -> Vec<(String, String, String)> {
            merge(&[], desired, Some(1), at(1))
                .into_iter()
                .skip(desired.len())
                .map(|c| (c.type_, c.status, c.reason))
                .collect()
        };
        let row = |t: &str, r: Reason| (t.to_owned(), "True".to_owned(), r.as_str().to_owned());
        assert_eq!(kinds_of(&[Desired::new(Ready, Reason::Ready, "ok")]), vec![]);
        assert_eq!(
            kinds_of(&[Desired::new(Ready, Reason::SystemRoleOverridden, "discouraged")]),
            vec![]
        );
        assert_eq!(
            kinds_of(&[Desired::new(Ready, Reason::DuplicateEmail, "a person")]),
            vec![row("Stalled", Reason::DuplicateEmail)]
        );
        assert_eq!(
            kinds_of(&[Desired::new(Ready, Reason::AccountNotFound, "comes with the folder")]),
            vec![row("Reconciling", Reason::AccountNotFound)]
        );
        assert_eq!(
            kinds_of(&[
                Desired::new(Ready, Reason::DefaultAccountPending, "seconds"),
                Desired::new(SecretReady, Reason::SecretUnverified, "a person"),
                Desired::new(AdminPresent, Reason::NoOrgAdmin, "a binding may come"),
            ]),
            vec![
                row("Stalled", Reason::SecretUnverified),
                row("Reconciling", Reason::DefaultAccountPending)
            ]
        );
        // Every problem raises one of the two; nothing else raises any.
        for reason in Reason::ALL {
            assert_eq!(reason.is_problem(), reason.progress().is_some(), "{reason}");
        }
        for waiting in [
            Reason::OrganizationNotFound,
            Reason::AccountNotFound,
            Reason::UserNotFound,
            Reason::SuperOrganizationNotFound,
            Reason::NoOrgAdmin,
        ] {
            assert_eq!(waiting.progress(), Some(Reconciling), "{waiting}");
        }
    }

    #[test]
    fn warnings_are_announced_once_per_reason() {
        let failed = Desired::new(Ready, Reason::DuplicateEmail, "dup");
        assert!(warning_for(&[], &failed).is_some_and(|e| e.warning && e.reason == Reason::DuplicateEmail));
        let reported = merge(&[], std::slice::from_ref(&failed), None, at(1));
        assert_eq!(warning_for(&reported, &failed), None);
        assert!(warning_for(&reported, &Desired::new(Ready, Reason::AccountNotFound, "gone")).is_some());
        assert_eq!(warning_for(&[], &Desired::new(Ready, Reason::Ready, "ok")), None);
        assert_eq!(
            warning_for(&[], &Desired::new(Ready, Reason::DefaultAccountPending, "soon")),
            None
        );
        // Negative conditions report a problem when True.
        assert!(
            warning_for(
                &[],
                &Desired::new(DenylistConflict, Reason::SafelistedDeniedElements, "x")
            )
            .is_some()
        );
        assert_eq!(
            warning_for(&[], &Desired::new(DenylistConflict, Reason::NoConflict, "x")),
            None
        );
        // Discouraged but accepted: warned once as well.
        let overridden = Desired::new(Ready, Reason::SystemRoleOverridden, "o");
        assert!(warning_for(&[], &overridden).is_some());
        let reported = merge(&[], std::slice::from_ref(&overridden), None, at(1));
        assert_eq!(warning_for(&reported, &overridden), None);
    }

    /// Condition types and reasons print as the API spells them (messages and logs use it).
    #[test]
    fn types_and_reasons_print_as_the_api_spells_them() {
        assert_eq!(ConditionType::Ready.to_string(), "Ready");
        assert_eq!(Reason::DuplicateEmail.to_string(), "DuplicateEmail");
        assert_eq!(format!("{}/{}", ConditionType::Ready, Reason::Ready), "Ready/Ready");
    }
}
