//! `can-i`: the authorization endpoint's decision for a user, on the tenancy objects read
//! with the caller's kubeconfig, printed like `kubectl auth can-i` (no secret needed or shown).

use kube::Api;

use super::{Error, KubeFlags, Result, list};
use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, RoleBinding},
    authz,
    cache::Snapshot,
    model::authz::{Decision, Instance, InstanceAction, Outcome, Request, parse_privilege},
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
}

impl Args {
    /// The checks asked for, as the endpoint's request.
    fn request(&self) -> Result<Request> {
        let mut request = Request::default();
        for key in &self.privilege {
            let privilege = parse_privilege(key).ok_or_else(|| Error::Usage(format!("unknown privilege {key:?}")))?;
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

/// The decision, from the namespace's objects (and the super-organizations its
/// organizations name).
pub async fn decide(kube: &KubeFlags, args: &Args) -> Result<Decision> {
    let request = args.request()?;
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
    Ok(match authz::named(&snapshot.cache, &ns, &args.user) {
        Ok(caller) => authz::authorize(&snapshot.cache, &authz::Derived::default(), &caller, &request),
        Err(refused) => refused,
    })
}

/// Prints yes or no and the reason; true when allowed.
pub async fn run(kube: &KubeFlags, args: &Args) -> Result<bool> {
    let decision = decide(kube, args).await?;
    let allowed = decision.outcome == Outcome::Allowed;
    println!("{} - {}", if allowed { "yes" } else { "no" }, decision.reason);
    Ok(allowed)
}
