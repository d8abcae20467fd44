//! The plumbing the operator's own servers share (the admission webhook over TLS, the
//! authorization endpoints in plain text or over TLS): accept until shutdown, and serve each
//! connection as HTTP/1.1 or HTTP/2 (ALPN, or h2c with prior knowledge), whichever the peer
//! speaks.
//!
//! Any pod can reach these ports, so nothing a peer does may hold the server: a connection
//! must send its first request (TLS handshake, protocol preface, headers) within
//! `HEADER_TIMEOUT`, and an idle HTTP/1.1 connection is closed after as long; HTTP/2 peers
//! are pinged and dropped when they stop answering; at most `MAX_CONNECTIONS` are open at
//! once (beyond that, new ones wait in the listen queue); accept errors (EMFILE) back off.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use rustls::{
    crypto::ring::sign::any_supported_type,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a connection may take to present a request's headers: from accept (through the
/// TLS handshake) to the first request's headers, and between requests on HTTP/1.1.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one server keeps open at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// HTTP/2: a ping this often on a quiet connection, and how long the answer may take.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 256;
/// The HTTP/2 client preface: a plain-text connection that starts with it speaks h2c.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr`, at start: a taken port fails the start, not a request.
pub async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, ListenError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })
}

/// Accepts connections until `shutdown`, handing each to `handle` (which spawns its task
/// and keeps the permit as long as the connection lives). `what` names the server in the
/// logs.
pub async fn accept_until(
    listener: TcpListener,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
    mut handle: impl FnMut(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit),
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut failures = 0u32;
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    failures = 0;
                    let _ = tcp.set_nodelay(true);
                    handle(tcp, peer, permit);
                }
                Err(e) => {
                    // Out of file descriptors (or another transient error): back off instead
                    // of retrying at once, 10 ms doubling to a second.
                    let pause = accept_backoff(failures);
                    failures = failures.saturating_add(1);
                    warn!(error = %e, server = what, retry_in_ms = pause.as_millis() as u64, "accept failed");
                    tokio::time::sleep(pause).await;
                }
            },
        }
    }
}

/// The pause after `failures` accept errors in a row.
fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(1))
}

/// Serves `app` on every connection `listener` accepts until `shutdown`, over TLS when
/// `tls` is given. `what` names the server in the logs.
pub async fn routes(
    listener: TcpListener,
    what: &'static str,
    app: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    accept_until(listener, what, shutdown, |tcp, peer, permit| {
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => match tokio::time::timeout(HEADER_TIMEOUT, plain_text_protocol(&tcp)).await {
                    Ok(Ok(protocol)) => connection(tcp, app, peer, what, protocol).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, server = what, "connection ended before a request"),
                    Err(_) => debug!(%peer, server = what, "no request within the header timeout; closed"),
                },
                Some(acceptor) => match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let protocol = match stream.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Protocol::Http2,
                            _ => Protocol::Http1,
                        };
                        connection(stream, app, peer, what, protocol).await
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, server = what, "TLS handshake failed"),
                    Err(_) => debug!(%peer, server = what, "TLS handshake not done within the header timeout; closed"),
                },
            }
        });
    })
    .await;
}

/// The protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Which protocol a plain-text peer speaks, from the first bytes it sent (read without
/// consuming them): h2c when they are the HTTP/2 preface, else HTTP/1.1 as soon as they
/// differ from it. Waits as long as the peer keeps them coming (bounded by the caller).
async fn plain_text_protocol(tcp: &TcpStream) -> std::io::Result<Protocol> {
    let mut seen = [0u8; H2_PREFACE.len()];
    loop {
        let n = tcp.peek(&mut seen).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(protocol) = protocol_of(&seen[..n]) {
            return Ok(protocol);
        }
        // A prefix of the preface, which real clients send whole: look again shortly (the
        // socket stays readable while those bytes wait, so readiness would spin).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The protocol the first bytes of a plain-text connection show, if they show one yet.
fn protocol_of(first: &[u8]) -> Option<Protocol> {
    if first.len() >= H2_PREFACE.len() && first.starts_with(H2_PREFACE) {
        Some(Protocol::Http2)
    } else if H2_PREFACE.starts_with(first) {
        None
    } else {
        Some(Protocol::Http1)
    }
}

/// Serves `app` on one connection until the peer closes it (or stays silent past the
/// header timeout on HTTP/1.1, or stops answering pings on HTTP/2).
pub async fn connection<I>(io: I, app: Router, peer: SocketAddr, what: &'static str, protocol: Protocol)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(H2_MAX_STREAMS);
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        debug!(%peer, error = %e, server = what, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_h2c_from_http1() {
        assert_eq!(protocol_of(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        for method in [&b"POST"[..], b"PUT ", b"PATCH", b"PRX"] {
            assert_eq!(protocol_of(method), Some(Protocol::Http1), "{method:?}");
        }
        assert_eq!(protocol_of(b"P"), None, "could still be either");
        assert_eq!(protocol_of(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(protocol_of(H2_PREFACE), Some(Protocol::Http2));
    }

    #[test]
    fn accept_errors_back_off_to_a_second() {
        assert_eq!(accept_backoff(0), Duration::from_millis(10));
        assert_eq!(accept_backoff(3), Duration::from_millis(80));
        assert_eq!(accept_backoff(50), Duration::from_secs(1));
    }
}

/// The certificate a server serves (the webhook's from its Secret, the authorization
/// endpoint's from its files), swapped in place when it changes.
#[derive(Debug, Default)]
pub struct ServingCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ServingCert {
    /// Loads a PEM certificate and key; false if they do not parse or do not belong together
    /// (the one served before stays).
    pub(crate) fn load(&self, cert: &str, key: &str) -> bool {
        let certs: Result<Vec<CertificateDer<'static>>, _> = CertificateDer::pem_slice_iter(cert.as_bytes()).collect();
        let (Ok(certs), Ok(key)) = (certs, PrivateKeyDer::from_pem_slice(key.as_bytes())) else {
            return false;
        };
        if certs.is_empty() {
            return false;
        }
        let Ok(signing) = any_supported_type(&key) else {
            return false;
        };
        let certified = CertifiedKey::new(certs, signing);
        if matches!(
            certified.keys_match(),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch))
        ) {
            return false;
        }
        *self.current.write().expect("serving cert lock") = Some(Arc::new(certified));
        true
    }

    pub(crate) fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().expect("serving cert lock").clone()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
