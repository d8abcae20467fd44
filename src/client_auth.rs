//! Client certificates, for the listeners that ask for them: the admission webhook (only the
//! API server may get answers) and the authorization endpoint (mutual TLS with a gateway).
//! A client's certificate must chain to one of the CA certificates given and, when names are
//! given, name one of them (subject common name or DNS subject alternative name): a cluster
//! CA signs every user's client certificate, and only the API server's may ask the webhook.

use std::sync::Arc;

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};

/// A verifier of client certificates signed by a CA of `ca_pem` (PEM) and, when `names` is
/// not empty, naming one of them. The error says what is wrong with the CA bundle.
pub fn verifier(
    ca_pem: &str,
    names: &[String],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let chained = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    if names.is_empty() {
        return Ok(chained);
    }
    Ok(Arc::new(Named {
        chained,
        names: names.to_vec(),
    }))
}

/// The names a certificate goes by: its subject common names and DNS alternative names.
pub fn names_of(cert: &[u8]) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Vec::new();
    };
    let common = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned));
    let alternative = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .into_iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        });
    common.chain(alternative).collect()
}

#[derive(Debug)]
struct Named {
    chained: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

impl ClientCertVerifier for Named {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chained.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.chained.verify_client_cert(end_entity, intermediates, now)?;
        if names_of(end_entity).iter().any(|n| self.names.contains(n)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chained.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chained.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chained.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA (PEM) and a client certificate it signs for `name`.
    fn signed(name: &str) -> (String, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (ca, cert.der().clone())
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn only_a_named_client_signed_by_the_ca_passes() {
        let (ca, apiserver) = signed("ce-webhook-client");
        let names = vec!["ce-webhook-client".to_owned()];
        let now = UnixTime::now();
        let named = verifier(&ca, &names, provider()).unwrap();
        assert!(named.verify_client_cert(&apiserver, &[], now).is_ok());
        // Without names, any certificate of the CA; with others, not this one.
        let any = verifier(&ca, &[], provider()).unwrap();
        assert!(any.verify_client_cert(&apiserver, &[], now).is_ok());
        let pinned_elsewhere = verifier(&ca, &["someone-else".to_owned()], provider()).unwrap();
        assert!(pinned_elsewhere.verify_client_cert(&apiserver, &[], now).is_err());
        // Signed by another CA.
        let (unrelated_ca, _) = signed("ce-webhook-client");
        let wrong_ca = verifier(&unrelated_ca, &names, provider()).unwrap();
        assert!(wrong_ca.verify_client_cert(&apiserver, &[], now).is_err());
        assert_eq!(names_of(&apiserver), vec!["ce-webhook-client".to_owned()]);
    }

    #[test]
    fn a_bundle_that_is_not_pem_is_an_error() {
        assert!(verifier("not a certificate", &[], provider()).is_err());
    }
}
