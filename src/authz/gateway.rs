//! What a gateway sends and is answered: the route's `X-CE-*` headers read into a request
//! (an unreadable one is a 400, never an absent check), the decision on them, and the
//! identity headers forwarded upstream. Shared by the HTTP and the gRPC check.

use std::time::Instant;

use k8s_openapi::jiff::Timestamp;

use super::{AuthzState, Caller, check, record, synced};
use crate::{
    api::Privilege,
    model::authz::{self, Decision, Request},
};

/// A header of the request as the gateway forwarded it. Only `Value` is read; a check whose
/// header is there but cannot be read is refused (400), never taken as absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Header<'a> {
    Absent,
    Value(&'a str),
    /// Bytes that are not visible ASCII (or not UTF-8).
    Unreadable,
    /// Sent more than once: which one the route meant cannot be told.
    Repeated,
}

impl<'a> Header<'a> {
    /// A received value: readable only when it is visible ASCII (tabs and spaces allowed).
    pub(super) fn of_text(value: &'a str) -> Self {
        if value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            Header::Value(value)
        } else {
            Header::Unreadable
        }
    }

    /// The header among all of a request's (`values` of one name, in order).
    pub(super) fn of_values<I: Iterator<Item = Option<&'a str>>>(mut values: I) -> Self {
        match (values.next(), values.next()) {
            (None, _) => Header::Absent,
            (Some(_), Some(_)) => Header::Repeated,
            (Some(None), None) => Header::Unreadable,
            (Some(Some(value)), None) => Header::of_text(value),
        }
    }
}

/// A gateway header that could not be read: the route is misconfigured (400), not the
/// caller refused.
fn bad_header(name: &str, why: &str) -> Decision {
    Decision::invalid(format!("header {name}: {why}"))
}

/// The request a gateway describes with the `X-CE-*` headers of a route; `header` looks a
/// header up by its lower-case name.
pub(super) fn request_of<'a>(header: impl Fn(&str) -> Header<'a>) -> Result<Request, Decision> {
    let text = |name: &str, shown: &str| match header(name) {
        Header::Absent => Ok(None),
        Header::Value(value) => Ok(Some(value.trim()).filter(|v| !v.is_empty())),
        Header::Unreadable => Err(bad_header(
            shown,
            "not visible ASCII; a route must set it to a readable value",
        )),
        Header::Repeated => Err(bad_header(shown, "sent more than once; a route must set (replace) it")),
    };
    let mut request = Request::default();
    if let Some(keys) = text("x-ce-privilege", "X-CE-Privilege")? {
        for key in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let privilege: Privilege =
                Privilege::parse(key).ok_or_else(|| bad_header("X-CE-Privilege", &format!("cannot read {key:?}")))?;
            request.privileges.push(privilege);
        }
    }
    request.element = text("x-ce-element", "X-CE-Element")?.map(str::to_owned);
    let action = text("x-ce-instance-action", "X-CE-Instance-Action")?;
    match (text("x-ce-instance-owner", "X-CE-Instance-Owner")?, action) {
        (Some(owner), action) => {
            let action = action.unwrap_or("");
            let action = authz::InstanceAction::parse(action)
                .ok_or_else(|| bad_header("X-CE-Instance-Action", &format!("cannot read {action:?}")))?;
            request.instance = Some(authz::Instance {
                owner: owner.to_owned(),
                action,
            });
        }
        (None, Some(_)) => return Err(bad_header("X-CE-Instance-Action", "set without X-CE-Instance-Owner")),
        (None, None) => {}
    }
    Ok(request)
}

/// What a gateway's check is answered: the caches are not synced yet, or the decision on
/// the credentials and the route's checks (`header` as for `request_of`, plus
/// `authorization`). Counted in the metrics either way.
pub(super) enum Answer {
    Unavailable,
    Decided(Decision, Option<Caller>),
}

pub(super) fn gateway_answer<'a>(state: &AuthzState, header: impl Fn(&str) -> Header<'a>) -> Answer {
    let started = Instant::now();
    if !synced(state) {
        return Answer::Unavailable;
    }
    let (decision, caller) = match (request_of(&header), header("authorization")) {
        (Err(bad), _) => (bad, None),
        (Ok(_), Header::Unreadable | Header::Repeated) => (
            Decision::unauthenticated(
                "malformed_credentials",
                "malformed Authorization: one header of visible ASCII expected",
            ),
            None,
        ),
        (Ok(request), authorization) => {
            let authorization = match authorization {
                Header::Value(value) => Some(value),
                _ => None,
            };
            check(&state.cache, &state.derived, authorization, &request, Timestamp::now())
        }
    };
    record(&state.metrics, &decision, started);
    Answer::Decided(decision, caller)
}

/// The identity a gateway forwards upstream.
pub(super) fn identity_headers(caller: &Caller) -> [(&'static str, String); 5] {
    [
        ("x-ce-organization", caller.identity.organization.clone()),
        ("x-ce-account", caller.identity.account.clone()),
        ("x-ce-user", caller.user.clone()),
        ("x-ce-roles", authz::role_list(&caller.identity)),
        ("x-ce-namespace", caller.namespace.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::authz::Outcome;

    #[test]
    fn a_route_header_that_cannot_be_read_is_refused_not_skipped() {
        let of = |headers: &[(&str, Header<'static>)]| {
            let headers = headers.to_vec();
            request_of(move |name| {
                headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(Header::Absent, |(_, h)| *h)
            })
        };
        let invalid = |result: Result<Request, Decision>| result.err().map(|d| d.outcome);
        assert_eq!(of(&[]), Ok(Request::default()));
        assert_eq!(
            of(&[("x-ce-element", Header::Value(" slack "))]).map(|r| r.element),
            Ok(Some("slack".to_owned()))
        );
        for headers in [
            vec![("x-ce-element", Header::Unreadable)],
            vec![("x-ce-element", Header::Repeated)],
            vec![("x-ce-privilege", Header::Repeated)],
            vec![
                ("x-ce-instance-owner", Header::Unreadable),
                ("x-ce-instance-action", Header::Value("view")),
            ],
            vec![("x-ce-instance-action", Header::Value("view"))],
            vec![
                ("x-ce-instance-owner", Header::Value("joe")),
                ("x-ce-instance-action", Header::Repeated),
            ],
        ] {
            assert_eq!(invalid(of(&headers)), Some(Outcome::Invalid), "{headers:?}");
        }
        // How a header is told from its values.
        assert_eq!(Header::of_values(std::iter::empty()), Header::Absent);
        assert_eq!(Header::of_values([Some("a")].into_iter()), Header::Value("a"));
        assert_eq!(Header::of_values([None].into_iter()), Header::Unreadable);
        assert_eq!(Header::of_values([Some("a"), Some("a")].into_iter()), Header::Repeated);
        assert_eq!(Header::of_text("sl\u{7f}ack"), Header::Unreadable);
        assert_eq!(Header::of_text("slack\u{e9}"), Header::Unreadable);
        assert_eq!(Header::of_text("a b\tc"), Header::Value("a b\tc"));
    }

    /// A header as a gateway may forward it: absent, repeated, unreadable, or any text.
    fn forwarded() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            ".{0,40}".prop_map(Some),
            "[a-zA-Z, -]{0,40}".prop_map(Some),
            Just(Some("viewActivity, manageUsers".to_owned())),
            Just(Some("view".to_owned())),
        ]
    }

    proptest::proptest! {
        /// Whatever a route sends: a request, or a 400 naming the header; never a panic, and
        /// never a check dropped (a header sent is in the request or refused).
        #[test]
        fn any_route_headers_give_a_request_or_a_400(
            privilege in forwarded(),
            element in forwarded(),
            owner in forwarded(),
            action in forwarded(),
        ) {
            let sent = [
                ("x-ce-privilege", &privilege),
                ("x-ce-element", &element),
                ("x-ce-instance-owner", &owner),
                ("x-ce-instance-action", &action),
            ];
            let result = request_of(|name| {
                sent.iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, v)| v.as_deref())
                    .map_or(Header::Absent, Header::of_text)
            });
            match result {
                Ok(request) => {
                    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
                    proptest::prop_assert_eq!(request.element.is_some(), given(&element));
                    proptest::prop_assert_eq!(request.instance.is_some(), given(&owner));
                    if given(&privilege) {
                        proptest::prop_assert!(!request.privileges.is_empty() || privilege.as_deref().is_some_and(|p| p.split(',').all(|k| k.trim().is_empty())));
                    }
                }
                Err(decision) => proptest::prop_assert_eq!(decision.outcome, Outcome::Invalid),
            }
        }

        /// Any Authorization header parses or is refused with a fixed reason that never
        /// repeats what was sent.
        #[test]
        fn any_authorization_header_is_parsed_or_refused_without_echo(
            header in ".{0,120}",
            secret in "[A-Za-z0-9_-]{16,64}",
        ) {
            let _ = authz::parse_credentials(&header);
            for shape in [
                format!("User {secret}"),
                format!("User {secret} {secret}, Organization {secret}"),
                format!("Bearer {secret}"),
                format!("User {secret}, User {secret}, Organization x"),
            ] {
                match authz::parse_credentials(&shape) {
                    Ok(_) => proptest::prop_assert!(false, "{shape} parsed"),
                    Err(why) => proptest::prop_assert!(!why.contains(&secret)),
                }
            }
        }
    }
}
