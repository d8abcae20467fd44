//! The plumbing the operator's own servers share (the admission webhook over TLS, the
//! authorization endpoints in plain text or over TLS): accept until shutdown, and serve each
//! connection as HTTP/1.1 or HTTP/2 (ALPN, or h2c with prior knowledge), whichever the peer
//! speaks.

use std::{future::Future, net::SocketAddr};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Accepts connections until `shutdown`, handing each to `handle` (which spawns its task).
/// `what` names the server in the logs.
pub async fn accept_until(
    listener: TcpListener,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
    mut handle: impl FnMut(TcpStream, SocketAddr),
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    handle(tcp, peer);
                }
                Err(e) => warn!(error = %e, server = what, "accept failed"),
            },
        }
    }
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
    accept_until(listener, what, shutdown, |tcp, peer| {
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(tcp, app, peer, what).await,
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => connection(stream, app, peer, what).await,
                    Err(e) => debug!(%peer, error = %e, server = what, "TLS handshake failed"),
                },
            }
        });
    })
    .await;
}

/// Serves `app` on one connection until the peer closes it.
pub async fn connection<I>(io: I, app: Router, peer: SocketAddr, what: &'static str)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        debug!(%peer, error = %e, server = what, "connection ended");
    }
}
