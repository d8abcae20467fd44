//! Optional TLS for the authorization endpoints: a certificate and key from files (a mounted
//! Secret, such as one cert-manager issues), read again when they change, so that a renewed
//! certificate is served without a restart; and optionally a CA whose certificates clients
//! (the gateway) must present: mutual TLS.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::Error;
use crate::serve::ServingCert;

/// The files of the endpoints' TLS.
#[derive(Clone, Debug)]
pub struct Files {
    /// The serving certificate (PEM; the chain, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that a client's certificate must be signed by; None: clients
    /// present none.
    pub client_ca: Option<PathBuf>,
}

/// How often the files' modification times are looked at, at most (on a handshake).
const RECHECK: Duration = Duration::from_secs(1);

/// The certificate and key of `files`, loaded again on the first handshake after they change.
#[derive(Debug)]
struct FileCert {
    cert: PathBuf,
    key: PathBuf,
    serving: ServingCert,
    seen: Mutex<Seen>,
}

#[derive(Debug)]
struct Seen {
    checked: Instant,
    modified: Option<(SystemTime, SystemTime)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(what: &'static str, path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Tls {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl FileCert {
    /// Loads the pair; an error names what could not be read.
    fn load(&self) -> Result<(), Error> {
        let (cert, key) = (read("certificate", &self.cert)?, read("key", &self.key)?);
        if self.serving.load(&cert, &key) {
            Ok(())
        } else {
            Err(Error::Tls {
                what: "certificate and key",
                path: self.cert.clone(),
                reason: "not a PEM certificate and the PEM private key of it".into(),
            })
        }
    }

    /// Loads the pair again if either file changed since it was last looked at. A pair that
    /// does not load leaves the one served before, with one warning per change.
    fn reload_if_changed(&self) {
        let mut seen = self.seen.lock().expect("TLS files lock");
        if seen.checked.elapsed() < RECHECK {
            return;
        }
        seen.checked = Instant::now();
        let now = modified(&self.cert).zip(modified(&self.key));
        if now.is_none() || now == seen.modified {
            return;
        }
        seen.modified = now;
        match self.load() {
            Ok(()) => info!(cert = %self.cert.display(), "loaded the authorization endpoint's new certificate"),
            Err(e) => warn!(error = %e, "still serving the previous certificate"),
        }
    }
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.reload_if_changed();
        self.serving.resolve(hello)
    }
}

/// The acceptor of the endpoints' TLS connections (HTTP/2 and HTTP/1.1 by ALPN).
pub fn acceptor(files: &Files) -> Result<TlsAcceptor, Error> {
    let resolver = FileCert {
        cert: files.cert.clone(),
        key: files.key.clone(),
        serving: ServingCert::default(),
        seen: Mutex::new(Seen {
            checked: Instant::now(),
            modified: modified(&files.cert).zip(modified(&files.key)),
        }),
    };
    resolver.load()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("configuration", &files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read("client CA", path)?;
            let verifier =
                crate::client_auth::verifier(&pem, &[], provider).map_err(|e| tls_error("client CA", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn tls_error(what: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Tls {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::{CertificateDer, pem::PemObject};

    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The certificate served on a handshake once the recheck interval has passed.
    fn served(resolver: &FileCert) -> Vec<u8> {
        resolver.seen.lock().unwrap().checked = Instant::now() - RECHECK;
        resolver.reload_if_changed();
        let current = resolver.serving.current();
        current.expect("a certificate").cert[0].to_vec()
    }

    #[test]
    fn a_changed_certificate_is_served_and_a_broken_one_leaves_the_previous() {
        let dir = std::env::temp_dir().join(format!("ce-authz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        // Each write stamps its own modification time: two writes within a clock tick of the
        // file system would otherwise look unchanged.
        let stamp = std::cell::Cell::new(0u64);
        let put = |path: &Path, content: &str| {
            std::fs::write(path, content).unwrap();
            stamp.set(stamp.get() + 1);
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + stamp.get());
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        };
        let write = |(c, k): &(String, String)| {
            put(&cert, c);
            put(&key, k);
        };
        let first = pair("one.example");
        write(&first);
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        };
        assert!(acceptor(&files).is_ok());
        let resolver = FileCert {
            cert: cert.clone(),
            key: key.clone(),
            serving: ServingCert::default(),
            seen: Mutex::new(Seen {
                checked: Instant::now(),
                modified: None,
            }),
        };
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec();
        assert_eq!(served(&resolver), der(&first.0));

        // Renewed: the first handshake after the recheck interval serves it.
        let second = pair("two.example");
        write(&second);
        assert_eq!(served(&resolver), der(&second.0));

        // A key of another certificate: the previous pair stays.
        put(&key, &pair("three.example").1);
        assert_eq!(served(&resolver), der(&second.0));
        let current = resolver.serving.current().unwrap();
        assert!(current.keys_match().is_ok(), "the key served is the certificate's");

        // Unreadable at start: the start fails, naming the file.
        std::fs::write(&cert, "not a certificate").unwrap();
        let refused = acceptor(&files).err().expect("refused").to_string();
        assert!(refused.contains("tls.crt"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
