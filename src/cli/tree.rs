//! `kubectl ce tree`: the organizations of a namespace with their accounts and users, each
//! with what the operator reports (Ready and its reason, roles, the default account), the
//! super-organization and its denylist, and the effective safelist. Like `kubectl hns tree`.

use serde::Serialize;

use super::{Error, Format, KubeFlags, Paint, Result, list, print_data};
use crate::{
    api::{Account, CEUser, ElementSafelist, HasConditions, Organization},
    model::conditions::{Reason, Severity},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this organization (default: every organization of the namespace).
    pub organization: Option<String>,
    /// Print the tree as data (json or yaml) instead of text.
    #[arg(short = 'o', long = "output")]
    pub output: Option<Format>,
}

/// The Ready condition as the operator reports it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// "True", "False" or "Unknown" (not reconciled yet).
    pub ready: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Readiness {
    fn of(obj: &impl HasConditions) -> Self {
        Self::from_condition(obj.condition("Ready"))
    }

    pub fn from_condition(condition: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>) -> Self {
        match condition {
            Some(c) => Self {
                ready: c.status.clone(),
                reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(c.message.clone()).filter(|m| !m.is_empty()),
            },
            None => Self {
                ready: "Unknown".into(),
                reason: None,
                message: None,
            },
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Tree {
    pub namespace: String,
    pub organizations: Vec<OrganizationNode>,
    /// Accounts whose organization does not exist in the namespace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts_without_organization: Vec<AccountNode>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationNode {
    pub name: String,
    #[serde(flatten)]
    pub status: Readiness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub super_organization: Option<SuperOrganization>,
    /// The safelist in effect (the operator's choice when there are several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safelist: Option<Safelist>,
    /// The elements the super-organization denies this organization (its status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied_elements: Vec<String>,
    /// No element is visible: the super-organization link is not accepted (its status).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
    pub accounts: Vec<AccountNode>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SuperOrganization {
    pub namespace: String,
    pub name: String,
    /// Whether it exists (and could be read).
    pub found: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denylist: Vec<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Safelist {
    pub name: String,
    /// The elements visible through it (its status; its spec before the first reconcile).
    pub elements: Vec<String>,
    /// Safelisted elements the super-organization denies (not visible).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AccountNode {
    pub name: String,
    pub default: bool,
    #[serde(flatten)]
    pub status: Readiness,
    pub users: Vec<UserNode>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct UserNode {
    pub name: String,
    pub email: String,
    #[serde(flatten)]
    pub status: Readiness,
    /// Every role held (the system role and bound ones), as status reports them.
    pub roles: Vec<String>,
}

/// Reads the namespace and builds the tree.
pub async fn read(kube: &KubeFlags, args: &Args) -> Result<Tree> {
    let (client, ns) = kube.connect().await?;
    let mut orgs: Vec<Organization> = list(&client, &ns).await?;
    if let Some(only) = &args.organization {
        orgs.retain(|o| o.metadata.name.as_deref() == Some(only.as_str()));
        if orgs.is_empty() {
            return Err(Error::NotFound {
                kind: "organization",
                name: only.clone(),
                namespace: ns,
            });
        }
    }
    let accounts: Vec<Account> = list(&client, &ns).await?;
    let users: Vec<CEUser> = list(&client, &ns).await?;
    let safelists: Vec<ElementSafelist> = list(&client, &ns).await?;
    let mut parents = Vec::new();
    for org in &orgs {
        let parent = match &org.spec.super_organization_ref {
            Some(r) => {
                let api: kube::Api<Organization> = kube::Api::namespaced(client.clone(), &r.namespace);
                api.get_opt(&r.name).await.ok().flatten()
            }
            None => None,
        };
        parents.push(parent);
    }
    Ok(build(
        ns,
        &orgs,
        &parents,
        &accounts,
        &users,
        &safelists,
        args.organization.is_none(),
    ))
}

/// The tree of what was read (pure: `parents[i]` is the super-organization of `orgs[i]`, if
/// it names one and it was found).
pub fn build(
    namespace: String,
    orgs: &[Organization],
    parents: &[Option<Organization>],
    accounts: &[Account],
    users: &[CEUser],
    safelists: &[ElementSafelist],
    with_orphans: bool,
) -> Tree {
    let name = |meta: &kube::api::ObjectMeta| meta.name.clone().unwrap_or_default();
    let account_node = |account: &Account, default_name: Option<&str>| {
        let account_name = name(&account.metadata);
        let mut members: Vec<UserNode> = users
            .iter()
            .filter(|u| u.spec.account_ref.name == account_name)
            .map(|u| UserNode {
                name: name(&u.metadata),
                email: u.spec.email.clone(),
                status: Readiness::of(u),
                roles: u
                    .status
                    .as_ref()
                    .map(|s| s.roles.iter().map(|r| r.key().to_owned()).collect())
                    .unwrap_or_default(),
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        AccountNode {
            default: default_name.map_or(account.spec.default, |d| d == account_name),
            name: account_name,
            status: Readiness::of(account),
            users: members,
        }
    };
    let mut organizations: Vec<OrganizationNode> = orgs
        .iter()
        .zip(parents)
        .map(|(org, parent)| {
            let org_name = name(&org.metadata);
            let status = org.status.as_ref();
            let default_name = status.and_then(|s| s.default_account.as_deref());
            let mut children: Vec<AccountNode> = accounts
                .iter()
                .filter(|a| a.spec.organization_ref.name == org_name)
                .map(|a| account_node(a, default_name))
                .collect();
            children.sort_by(|a, b| (!a.default, &a.name).cmp(&(!b.default, &b.name)));
            let visibility = status.and_then(|s| s.element_visibility.as_ref());
            let safelist = visibility.and_then(|v| v.safelist.as_deref()).map(|list| {
                let found = safelists.iter().find(|s| s.metadata.name.as_deref() == Some(list));
                let status = found.and_then(|s| s.status.as_ref());
                Safelist {
                    name: list.to_owned(),
                    elements: match (status, found) {
                        (Some(status), _) => status.effective_elements.clone(),
                        (None, Some(found)) => found.spec.elements.clone(),
                        (None, None) => Vec::new(),
                    },
                    conflicts: status.map(|s| s.conflicts.clone()).unwrap_or_default(),
                }
            });
            OrganizationNode {
                status: Readiness::of(org),
                super_organization: org.spec.super_organization_ref.as_ref().map(|r| SuperOrganization {
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    found: parent.is_some(),
                    denylist: parent
                        .as_ref()
                        .and_then(|p| p.spec.whitelabel.as_ref())
                        .map(|w| w.element_denylist.clone())
                        .unwrap_or_default(),
                }),
                safelist,
                denied_elements: visibility.map(|v| v.denied_elements.clone()).unwrap_or_default(),
                withheld: visibility.is_some_and(|v| v.withheld),
                accounts: children,
                name: org_name,
            }
        })
        .collect();
    organizations.sort_by(|a, b| a.name.cmp(&b.name));
    let known = |org: &str| orgs.iter().any(|o| o.metadata.name.as_deref() == Some(org));
    let mut accounts_without_organization: Vec<AccountNode> = if with_orphans {
        accounts
            .iter()
            .filter(|a| !known(&a.spec.organization_ref.name))
            .map(|a| account_node(a, None))
            .collect()
    } else {
        Vec::new()
    };
    accounts_without_organization.sort_by(|a, b| a.name.cmp(&b.name));
    Tree {
        namespace,
        organizations,
        accounts_without_organization,
    }
}

/// The tree as text, problems highlighted when `paint` is on.
pub fn render(tree: &Tree, paint: Paint) -> String {
    let state = |s: &Readiness| -> String {
        match (s.ready.as_str(), s.reason.as_deref()) {
            ("True", _) => paint.good("Ready"),
            ("False", reason) => {
                // A reason that resolves by itself (e.g. DefaultAccountPending) is not a problem.
                let transient = reason
                    .and_then(Reason::parse)
                    .is_some_and(|r| r.severity() == Severity::Transient);
                let reason = reason.unwrap_or("NotReady");
                let what = if transient {
                    paint.pending(reason)
                } else {
                    paint.problem(reason)
                };
                match &s.message {
                    Some(message) => format!("{what}: {message}"),
                    None => what,
                }
            }
            (_, _) => paint.pending("Pending (not reconciled yet)"),
        }
    };
    let mut out = String::new();
    if tree.organizations.is_empty() && tree.accounts_without_organization.is_empty() {
        out.push_str(&format!("No organizations in namespace {}.\n", tree.namespace));
    }
    for org in &tree.organizations {
        out.push_str(&format!("Organization {}  {}\n", org.name, state(&org.status)));
        if let Some(parent) = &org.super_organization {
            let line = if !parent.found {
                paint.problem("not found")
            } else if parent.denylist.is_empty() {
                "denies nothing".to_owned()
            } else {
                format!("denies {}", parent.denylist.join(", "))
            };
            out.push_str(&format!(
                "│ super-organization {}/{}: {line}\n",
                parent.namespace, parent.name
            ));
        }
        if org.withheld {
            out.push_str(&format!(
                "│ {}\n",
                paint.problem("no element is visible until the super-organization accepts the link")
            ));
        }
        match &org.safelist {
            Some(list) => {
                let visible = if list.elements.is_empty() {
                    "(nothing visible)".to_owned()
                } else {
                    list.elements.join(", ")
                };
                out.push_str(&format!("│ safelist {}: {visible}\n", list.name));
                if !list.conflicts.is_empty() {
                    out.push_str(&format!(
                        "│ {} {}\n",
                        paint.problem("safelisted but denied by the super-organization:"),
                        list.conflicts.join(", ")
                    ));
                }
            }
            None => out.push_str(&format!(
                "│ safelist: {}\n",
                paint.dim("none (every element not denied is visible)")
            )),
        }
        accounts(&mut out, &org.accounts, paint, &state);
    }
    if !tree.accounts_without_organization.is_empty() {
        out.push_str(&format!("{}\n", paint.problem("Accounts of no existing organization")));
        accounts(&mut out, &tree.accounts_without_organization, paint, &state);
    }
    out
}

fn accounts(out: &mut String, accounts: &[AccountNode], paint: Paint, state: &dyn Fn(&Readiness) -> String) {
    if accounts.is_empty() {
        out.push_str(&format!("└── {}\n", paint.dim("(no accounts)")));
    }
    for (i, account) in accounts.iter().enumerate() {
        let last = i + 1 == accounts.len();
        let default = if account.default { " (default)" } else { "" };
        out.push_str(&format!(
            "{} Account {}{default}  {}\n",
            if last { "└──" } else { "├──" },
            account.name,
            state(&account.status)
        ));
        let indent = if last { "    " } else { "│   " };
        for (j, user) in account.users.iter().enumerate() {
            let branch = if j + 1 == account.users.len() {
                "└──"
            } else {
                "├──"
            };
            let roles = if user.roles.is_empty() {
                String::new()
            } else {
                format!("  roles: {}", user.roles.join(", "))
            };
            out.push_str(&format!(
                "{indent}{branch} {} <{}>  {}{roles}\n",
                user.name,
                user.email,
                state(&user.status)
            ));
        }
    }
}

pub async fn run(kube: &KubeFlags, args: &Args) -> Result<()> {
    let tree = read(kube, args).await?;
    match args.output {
        Some(format) => print_data(&tree, format),
        None => {
            print!("{}", render(&tree, Paint::for_stdout()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness(ready: &str, reason: Option<&str>) -> Readiness {
        Readiness {
            ready: ready.into(),
            reason: reason.map(Into::into),
            message: None,
        }
    }

    fn tree() -> Tree {
        let user = |name: &str, status| UserNode {
            name: name.into(),
            email: format!("{name}@acme.example"),
            status,
            roles: vec!["org".into()],
        };
        Tree {
            namespace: "t".into(),
            organizations: vec![OrganizationNode {
                name: "acme".into(),
                status: readiness("False", Some("DefaultAccountPending")),
                super_organization: None,
                safelist: None,
                denied_elements: Vec::new(),
                withheld: false,
                accounts: vec![AccountNode {
                    name: "hq".into(),
                    default: true,
                    status: readiness("True", Some("Ready")),
                    users: vec![
                        user("jane", readiness("False", Some("DuplicateEmail"))),
                        user("sam", readiness("Unknown", None)),
                    ],
                }],
            }],
            accounts_without_organization: Vec::new(),
        }
    }

    #[test]
    fn problems_are_red_and_what_resolves_by_itself_yellow_on_a_terminal_only() {
        let coloured = render(&tree(), Paint { enabled: true });
        assert!(coloured.contains("\x1b[1;31mDuplicateEmail\x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[33mDefaultAccountPending\x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[32mReady\x1b[0m"), "{coloured}");
        let plain = render(&tree(), Paint { enabled: false });
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("└── Account hq (default)  Ready\n"), "{plain}");
        assert!(
            plain.contains("    ├── jane <jane@acme.example>  DuplicateEmail  roles: org\n"),
            "{plain}"
        );
        assert!(
            plain.contains("    └── sam <sam@acme.example>  Pending (not reconciled yet)  roles: org\n"),
            "{plain}"
        );
    }
}
