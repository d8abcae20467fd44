//! The pure half of the webhook's certificates: what the Secret holds (`Material`), the next
//! step of the rotation the module's documentation describes (`next_step`), and the material
//! after it (`apply`). No I/O: the loops in `tls` read the Secret, call these, and write.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    jiff::{SignedDuration, Timestamp},
};
use kube::api::ObjectMeta;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use serde_json::json;

use super::Options;

const KEY_CA: &str = "ca.crt";
const KEY_CA_KEY: &str = "ca.key";
const KEY_CERT: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";
const KEY_NEXT_CA: &str = "ca-next.crt";
const KEY_NEXT_CA_KEY: &str = "ca-next.key";
const KEY_PREVIOUS_CA: &str = "ca-previous.crt";
const ANNOTATION_NEXT_SINCE: &str = "ce.tenancy.io/ca-next-since";
const ANNOTATION_PREVIOUS_UNTIL: &str = "ce.tenancy.io/ca-previous-until";

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Keyed {
    pub(super) cert: String,
    pub(super) key: String,
}

/// The certificate only: a private key never reaches a log line or a panic message.
impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The webhook's certificates, as the Secret holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Material {
    ca: Option<Keyed>,
    pub(super) serving: Option<Keyed>,
    next: Option<Keyed>,
    previous: Option<String>,
    next_since: Option<Timestamp>,
    previous_until: Option<Timestamp>,
}

impl Material {
    pub(super) fn of(secret: &Secret) -> Self {
        let text = |key: &str| {
            secret
                .data
                .as_ref()?
                .get(key)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let keyed = |cert: &str, key: &str| {
            Some(Keyed {
                cert: text(cert)?,
                key: text(key)?,
            })
        };
        let time = |key: &str| secret.metadata.annotations.as_ref()?.get(key)?.parse().ok();
        Self {
            ca: keyed(KEY_CA, KEY_CA_KEY),
            serving: keyed(KEY_CERT, KEY_KEY),
            next: keyed(KEY_NEXT_CA, KEY_NEXT_CA_KEY),
            previous: text(KEY_PREVIOUS_CA),
            next_since: time(ANNOTATION_NEXT_SINCE),
            previous_until: time(ANNOTATION_PREVIOUS_UNTIL),
        }
    }

    fn data(&self) -> BTreeMap<&'static str, Option<ByteString>> {
        let b64 = |text: Option<&String>| text.map(|t| ByteString(t.as_bytes().to_vec()));
        BTreeMap::from([
            (KEY_CA, b64(self.ca.as_ref().map(|k| &k.cert))),
            (KEY_CA_KEY, b64(self.ca.as_ref().map(|k| &k.key))),
            (KEY_CERT, b64(self.serving.as_ref().map(|k| &k.cert))),
            (KEY_KEY, b64(self.serving.as_ref().map(|k| &k.key))),
            (KEY_NEXT_CA, b64(self.next.as_ref().map(|k| &k.cert))),
            (KEY_NEXT_CA_KEY, b64(self.next.as_ref().map(|k| &k.key))),
            (KEY_PREVIOUS_CA, b64(self.previous.as_ref())),
        ])
    }

    fn annotations(&self) -> BTreeMap<&'static str, Option<String>> {
        BTreeMap::from([
            (ANNOTATION_NEXT_SINCE, self.next_since.map(|t| t.to_string())),
            (ANNOTATION_PREVIOUS_UNTIL, self.previous_until.map(|t| t.to_string())),
        ])
    }

    /// A new Secret holding these certificates.
    pub(super) fn secret(&self, name: &str) -> Secret {
        fn present<V>((k, v): (&str, Option<V>)) -> Option<(String, V)> {
            Some((k.to_owned(), v?))
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([(
                    crate::model::names::LABEL_COMPONENT.to_owned(),
                    "webhook-tls".to_owned(),
                )])),
                annotations: Some(self.annotations().into_iter().filter_map(present).collect()),
                ..Default::default()
            },
            data: Some(self.data().into_iter().filter_map(present).collect()),
            type_: Some("Opaque".into()),
            ..Default::default()
        }
    }

    /// A merge patch to these certificates: absent keys are null, so that they are removed.
    pub(super) fn patch(&self) -> serde_json::Value {
        json!({"metadata": {"annotations": self.annotations()}, "data": self.data()})
    }

    /// The CAs the API server must trust now: the previous, the current and the next.
    pub(super) fn bundle(&self) -> String {
        [
            self.previous.as_ref(),
            self.ca.as_ref().map(|k| &k.cert),
            self.next.as_ref().map(|k| &k.cert),
        ]
        .into_iter()
        .flatten()
        .map(|pem| pem.trim_end().to_owned() + "\n")
        .collect()
    }
}

/// The expiry of a PEM certificate.
pub(super) fn not_after(pem: &str) -> Option<Timestamp> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// What the certificates are due for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// None, unreadable or expired: issue a CA and a serving certificate.
    Create,
    /// Renewal due: add the next CA to the bundle.
    BeginRotation,
    /// The next CA has been in the bundle for the overlap: it signs the serving certificate.
    Switch,
    /// The previous CA has stayed in the bundle for the overlap: drop it.
    DropPrevious,
    /// Nothing until then.
    Wait(Duration),
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    at.duration_since(now).max(SignedDuration::ZERO).unsigned_abs()
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

pub(super) fn next_step(m: &Material, now: Timestamp, options: &Options) -> Step {
    let (Some(ca), Some(serving)) = (&m.ca, &m.serving) else {
        return Step::Create;
    };
    let (Some(ca_expires), Some(serving_expires)) = (not_after(&ca.cert), not_after(&serving.cert)) else {
        return Step::Create;
    };
    let expires = ca_expires.min(serving_expires);
    if now >= expires {
        return Step::Create;
    }
    if m.next.is_some() {
        let at = plus(m.next_since.unwrap_or(now), options.overlap());
        return if now >= at {
            Step::Switch
        } else {
            Step::Wait(until(now, at))
        };
    }
    if m.previous.is_some() {
        let at = m.previous_until.unwrap_or(now);
        return if now >= at {
            Step::DropPrevious
        } else {
            Step::Wait(until(now, at))
        };
    }
    let renew_at = plus(expires, Duration::ZERO) - SignedDuration::try_from(options.validity / 3).unwrap_or_default();
    if now >= renew_at {
        Step::BeginRotation
    } else {
        Step::Wait(until(now, renew_at))
    }
}

fn validity_window(validity: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    // A minute of slack for clocks a little behind.
    (now - time::Duration::minutes(1), now + validity)
}

fn new_ca(validity: Duration) -> Result<Keyed, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "ce-operator webhook CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    (params.not_before, params.not_after) = validity_window(validity);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Keyed {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn new_serving(ca: &Keyed, names: &[String], validity: Duration) -> Result<Keyed, rcgen::Error> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key)?)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (params.not_before, params.not_after) = validity_window(validity);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Keyed {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The certificates after `step`.
pub(super) fn apply(step: &Step, m: &Material, now: Timestamp, options: &Options) -> Result<Material, rcgen::Error> {
    let serving = |ca: &Keyed| new_serving(ca, &options.names, options.validity);
    Ok(match step {
        Step::Create => {
            let ca = new_ca(options.validity)?;
            Material {
                serving: Some(serving(&ca)?),
                ca: Some(ca),
                ..Material::default()
            }
        }
        Step::BeginRotation => Material {
            next: Some(new_ca(options.validity)?),
            next_since: Some(now),
            ..m.clone()
        },
        Step::Switch => {
            let next = m.next.clone().expect("a switch has a next CA");
            Material {
                serving: Some(serving(&next)?),
                ca: Some(next),
                previous: m.ca.as_ref().map(|k| k.cert.clone()),
                previous_until: Some(plus(now, options.overlap())),
                next: None,
                next_since: None,
            }
        }
        Step::DropPrevious => Material {
            previous: None,
            previous_until: None,
            ..m.clone()
        },
        Step::Wait(_) => m.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::ServingCert;

    #[test]
    fn debug_never_shows_a_private_key() {
        let keyed = Keyed {
            cert: "-----BEGIN CERTIFICATE-----".into(),
            key: "-----BEGIN PRIVATE KEY-----secret".into(),
        };
        let material = Material {
            ca: Some(keyed.clone()),
            serving: Some(keyed),
            ..Material::default()
        };
        let shown = format!("{material:?}");
        assert!(
            shown.contains("BEGIN CERTIFICATE") && !shown.contains("PRIVATE KEY"),
            "{shown}"
        );
    }

    fn options(validity: u64) -> Options {
        Options {
            namespace: "ce-system".into(),
            secret: "tls".into(),
            config: "ce-operator".into(),
            names: vec!["ce-operator.ce-system.svc".into(), "127.0.0.1".into()],
            validity: Duration::from_secs(validity),
            managed: true,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(Timestamp::now().as_second()).unwrap()
    }

    #[test]
    fn a_full_rotation_keeps_a_trusted_ca_for_every_certificate_served() {
        let o = options(60);
        let t0 = now();
        assert_eq!(next_step(&Material::default(), t0, &o), Step::Create);
        let created = apply(&Step::Create, &Material::default(), t0, &o).unwrap();
        let ca1 = created.ca.clone().unwrap().cert;
        assert_eq!(created.bundle(), ca1.trim_end().to_owned() + "\n");
        // Renewal is due with a third of the validity left.
        match next_step(&created, t0, &o) {
            Step::Wait(wait) => assert!(
                (Duration::from_secs(35)..=Duration::from_secs(40)).contains(&wait),
                "{wait:?}"
            ),
            other => panic!("{other:?}"),
        }
        let t1 = plus(t0, Duration::from_secs(41));
        assert_eq!(next_step(&created, t1, &o), Step::BeginRotation);
        let begun = apply(&Step::BeginRotation, &created, t1, &o).unwrap();
        assert_eq!(begun.serving, created.serving, "still serving the old certificate");
        assert!(begun.bundle().contains(&ca1) && begun.bundle().contains(&begun.next.clone().unwrap().cert));
        assert_eq!(next_step(&begun, t1, &o), Step::Wait(o.overlap()));
        let t2 = plus(t1, o.overlap());
        assert_eq!(next_step(&begun, t2, &o), Step::Switch);
        let switched = apply(&Step::Switch, &begun, t2, &o).unwrap();
        assert_eq!(switched.ca, begun.next);
        assert_ne!(switched.serving, created.serving);
        assert!(
            switched.bundle().contains(&ca1),
            "the old CA stays while replicas reload"
        );
        let t3 = plus(t2, o.overlap());
        assert_eq!(next_step(&switched, t3, &o), Step::DropPrevious);
        let done = apply(&Step::DropPrevious, &switched, t3, &o).unwrap();
        assert!(!done.bundle().contains(&ca1));
        // The new certificates were made just now (real time): nothing is due for a while.
        assert!(matches!(next_step(&done, now(), &o), Step::Wait(_)));
    }

    #[test]
    fn the_serving_certificate_is_signed_by_the_ca_for_its_names_and_loads() {
        let o = options(3600);
        let m = apply(&Step::Create, &Material::default(), now(), &o).unwrap();
        let serving = m.serving.clone().unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(serving.cert.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let names = format!(
            "{:?}",
            cert.subject_alternative_name().unwrap().unwrap().value.general_names
        );
        assert!(
            names.contains("127.0.0.1") || names.contains("[127, 0, 0, 1]"),
            "{names}"
        );
        assert!(names.contains("ce-operator.ce-system.svc"), "{names}");
        let loaded = ServingCert::default();
        assert!(loaded.load(&serving.cert, &serving.key));
        assert!(!loaded.load("not a cert", &serving.key));
        // Round trip through the Secret.
        assert_eq!(Material::of(&m.secret("tls")), m);
        // An expired pair is replaced at once.
        assert_eq!(next_step(&m, plus(now(), Duration::from_secs(7200)), &o), Step::Create);
    }
}
