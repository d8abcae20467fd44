//! `can-i`: the authorization endpoint's decision for a user, on the tenancy objects read
//! with the caller's kubeconfig, printed like `kubectl auth can-i` (no secret needed or shown).

use kube::Api;

use super::{Error, KubeFlags, Result, list};
use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, Owner, Privilege, Role, RoleBinding, RoleCustomization},
    authz,
    cache::Snapshot,
    model::{
        actor::{self, Actor, Change},
        authz::{Decision, Instance, InstanceAction, Outcome, Request},
        privileges::Matrix,
    },
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The CEUser asking.
    #[arg(long)]
    pub user: String,
    /// A privilege the user must hold (repeat, or separate with commas), e.g. createElements.
    #[arg(long, value_delimiter = ',')]
    pub privilege: Vec<String>,
    /// An element that must be visible to the user's organization.
    #[arg(long)]
    pub element: Option<String>,
    /// The owner (a CEUser) of the element instance acted on.
    #[arg(long = "instance-owner", requires = "action")]
    pub instance_owner: Option<String>,
    /// What is done to that instance: view, use, edit or delete.
    #[arg(long, requires = "instance_owner")]
    pub action: Option<String>,
    /// Instead, may the user make this tenancy change (who may act, as the webhook judges
    /// `kubectl`): create, update or delete ...
    #[arg(long, requires = "kind", value_parser = ["create", "update", "delete"])]
    pub verb: Option<String>,
    /// ... of this kind.
    #[arg(long, requires = "verb", value_parser = ["Account", "CEUser", "RoleBinding", "ElementSafelist", "Organization"])]
    pub kind: Option<String>,
    /// The account it is in: a CEUser's, or a RoleBinding's user's.
    #[arg(long)]
    pub account: Option<String>,
    /// The role a RoleBinding grants: org-admin, admin, org or default-user.
    #[arg(long)]
    pub role: Option<String>,
    /// The setting an Organization update changes: roles, security, owner, displayName or
    /// elementDenylist.
    #[arg(long)]
    pub field: Option<String>,
}

impl Args {
    /// The checks asked for, as the endpoint's request.
    fn request(&self) -> Result<Request> {
        let mut request = Request::default();
        for key in &self.privilege {
            let privilege = Privilege::parse(key).ok_or_else(|| Error::Usage(format!("unknown privilege {key:?}")))?;
            request.privileges.push(privilege);
        }
        request.element = self.element.clone();
        if let (Some(owner), Some(action)) = (&self.instance_owner, &self.action) {
            let action = InstanceAction::parse(action)
                .ok_or_else(|| Error::Usage(format!("unknown action {action:?}: view, use, edit or delete")))?;
            request.instance = Some(Instance {
                owner: owner.clone(),
                action,
            });
        }
        Ok(request)
    }
}

/// The namespace's objects (and the super-organizations its organizations name).
async fn snapshot(kube: &KubeFlags) -> Result<(Snapshot, String)> {
    let (client, ns) = kube.connect().await?;
    let orgs: Vec<Organization> = list(&client, &ns).await?;
    let mut parents = Vec::new();
    for reference in orgs.iter().filter_map(|o| o.spec.super_organization_ref.as_ref()) {
        let api: Api<Organization> = Api::namespaced(client.clone(), &reference.namespace);
        if let Ok(Some(parent)) = api.get_opt(&reference.name).await {
            parents.push(parent);
        }
    }
    let mut snapshot = Snapshot::new(None);
    snapshot
        .apply(orgs)
        .apply(parents)
        .apply(list::<Account>(&client, &ns).await?)
        .apply(list::<CEUser>(&client, &ns).await?)
        .apply(list::<RoleBinding>(&client, &ns).await?)
        .apply(list::<ElementSafelist>(&client, &ns).await?);
    Ok((snapshot, ns))
}

/// The decision, from the namespace's objects.
pub async fn decide(kube: &KubeFlags, args: &Args) -> Result<Decision> {
    let request = args.request()?;
    let (snapshot, ns) = snapshot(kube).await?;
    Ok(match authz::named(&snapshot.cache, &ns, &args.user) {
        Ok(caller) => authz::authorize(&snapshot.cache, &authz::Derived::default(), &caller, &request),
        Err(refused) => refused,
    })
}

/// Whether the user may make the tenancy change the flags describe (`model::actor`, as the
/// webhook judges it): Ok, or the refusal.
pub async fn may_act(kube: &KubeFlags, args: &Args, verb: &str, kind: &str) -> Result<std::result::Result<(), String>> {
    let (snapshot, ns) = snapshot(kube).await?;
    let cache = &snapshot.cache;
    let caller = match authz::named(cache, &ns, &args.user) {
        Ok(caller) => caller,
        Err(refused) => return Ok(Err(refused.reason)),
    };
    let org = caller.identity.organization.as_str();
    let usage = |what: &str| Error::Usage(format!("--kind {kind} needs {what}"));
    let account = || args.account.as_deref().ok_or_else(|| usage("--account"));
    let current = cache.organization(&ns, org).map(|o| (*o).clone());
    let matrix = Matrix::new(&current.as_ref().map(|o| o.spec.roles.clone()).unwrap_or_default());
    let changed = match (verb, current.clone()) {
        ("update", Some(mut new)) => {
            let field = args.field.as_deref().ok_or_else(|| usage("--field"))?;
            change_setting(&mut new, field)?;
            Some(new)
        }
        _ => None,
    };
    let change = match kind {
        "Account" => Change::Account { organization: org },
        "ElementSafelist" => Change::ElementSafelist { organization: org },
        "CEUser" => Change::CEUser {
            organization: org,
            accounts: (account()?, account()?),
        },
        "RoleBinding" => Change::RoleBinding {
            organization: org,
            account: account()?,
            role: serde_json::from_value(serde_json::Value::from(
                args.role.as_deref().ok_or_else(|| usage("--role"))?,
            ))
            .map_err(|_| Error::Usage("--role: org-admin, admin, org or default-user".into()))?,
            matrix: &matrix,
        },
        _ => Change::Organization {
            old: current.as_ref().filter(|_| verb != "create"),
            new: if verb == "update" {
                changed.as_ref()
            } else {
                current.as_ref().filter(|_| verb == "create")
            },
        },
    };
    let actor = Actor::Tenant {
        user: &args.user,
        identity: &caller.identity,
    };
    Ok(actor::judge(&actor, &change).map_err(|denied| denied.0))
}

/// Changes `field` of `org` somehow: what is judged is which setting changes.
fn change_setting(org: &mut Organization, field: &str) -> Result<()> {
    let spec = &mut org.spec;
    match field {
        "roles" => spec.roles.push(RoleCustomization {
            role: Role::Admin,
            grant: vec![Privilege::ViewActivity],
            revoke: Vec::new(),
        }),
        "security" => spec.security.allow_system_role_override ^= true,
        "owner" => {
            spec.owner = Some(Owner {
                email: "someone-else@example.invalid".into(),
                display_name: None,
            })
        }
        "displayName" => spec.display_name.push_str(" (renamed)"),
        "elementDenylist" => spec
            .whitelabel
            .get_or_insert_with(Default::default)
            .element_denylist
            .push("an-element".into()),
        other => {
            return Err(Error::Usage(format!(
                "--field {other:?}: roles, security, owner, displayName or elementDenylist"
            )));
        }
    }
    Ok(())
}

/// Prints yes or no and the reason; true when allowed.
pub async fn run(kube: &KubeFlags, args: &Args) -> Result<bool> {
    if let (Some(verb), Some(kind)) = (&args.verb, &args.kind) {
        let judged = may_act(kube, args, verb, kind).await?;
        match &judged {
            Ok(()) => println!("yes - user {} may {verb} this {kind}", args.user),
            Err(why) => println!("no - {why}"),
        }
        return Ok(judged.is_ok());
    }
    let decision = decide(kube, args).await?;
    let allowed = decision.outcome == Outcome::Allowed;
    println!("{} - {}", if allowed { "yes" } else { "no" }, decision.reason);
    Ok(allowed)
}
