//! The registry of the operator's kinds: the one list from which every place that handles
//! each kind in turn is generated (the CRDs, the watches and their stores, the ready and
//! malformed tallies, the controllers, the webhook's dispatch). Adding a kind is a line here;
//! what is particular to it lives in its own files (README, "Adding a kind").
//!
//! `for_each_kind!(m)` expands to `m! { Kind => field, ... }`: `Kind` a type of `crate::api`
//! (and a variant of `cache::Watched`), `field` the name its store and controller take.

macro_rules! for_each_kind {
    ($then:ident) => {
        $then! {
            Organization => organizations,
            Account => accounts,
            CEUser => users,
            RoleBinding => role_bindings,
            ElementSafelist => safelists,
        }
    };
}
pub(crate) use for_each_kind;

macro_rules! names {
    ($($kind:ident => $field:ident,)*) => {
        /// The kinds, by name, in the registry's order.
        pub const NAMES: &[&str] = &[$(stringify!($kind)),*];
    };
}
for_each_kind!(names);

/// The registry's name of a kind, or None for a kind that is not the operator's: a label of
/// bounded values for the metrics.
pub fn name(kind: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|k| *k == kind)
}

#[cfg(test)]
mod tests {
    use super::NAMES;
    use crate::cache::Watched;

    /// The text of a Helm `define` of the chart's helpers.
    fn helm_define<'a>(helpers: &'a str, name: &str) -> &'a str {
        let start = helpers.find(&format!("define \"{name}\" -}}}}")).expect("the define") + name.len() + 13;
        let end = start + helpers[start..].find("{{- end").expect("its end");
        helpers[start..end].trim()
    }

    /// What the registry cannot generate (the chart, which says each kind by its resource
    /// name) agrees with it, and what it generates covers every kind: a kind added to one
    /// place and not another fails here.
    #[test]
    fn every_place_that_names_the_kinds_agrees_with_the_registry() {
        let crds = crate::api::crds();
        let kinds: Vec<&str> = crds.iter().map(|c| c.spec.names.kind.as_str()).collect();
        assert_eq!(kinds, NAMES, "api::crds()");
        let watched: Vec<String> = Watched::ALL.iter().map(|w| format!("{w:?}")).collect();
        assert_eq!(watched[..NAMES.len()], *NAMES, "cache::Watched");

        let plurals: Vec<&str> = crds.iter().map(|c| c.spec.names.plural.as_str()).collect();
        let helpers = include_str!("../charts/ce-operator/templates/_helpers.tpl");
        assert_eq!(
            helm_define(helpers, "ce-operator.kinds"),
            plurals.join(", "),
            "the chart's ce-operator.kinds (templates/_helpers.tpl)"
        );
        for template in ["rbac.yaml", "webhook.yaml", "restore.yaml", "tenant-roles.yaml"] {
            let text = std::fs::read_to_string(format!(
                "{}/charts/ce-operator/templates/{template}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            assert!(
                text.contains("include \"ce-operator.kind"),
                "templates/{template} names the kinds itself instead of including ce-operator.kinds"
            );
        }
    }
}
