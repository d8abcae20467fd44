//! The plumbing the operator's own servers share (the admission webhook over TLS, the
//! authorization endpoint in plain text): accept until shutdown, and serve each connection
//! as HTTP/1.1 or HTTP/2 (ALPN, or h2c with prior knowledge), whichever the peer speaks.

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
