//! The authority's HTTP/1.1 connections, bounded before any request is
//! authenticated: at most `max_connections` open at once (further ones wait
//! in the kernel's backlog), and a client that does not finish sending its
//! request headers within `header_read_timeout` is disconnected, so slow or
//! idle sockets cannot hold the server's capacity.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tower::ServiceExt as _;

/// How long a graceful shutdown waits for open connections before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Names the SPIFFE ID of a client's certificate chain (verified in the
/// handshake already).
pub(crate) type Identify = dyn Fn(&[rustls::pki_types::CertificateDer<'_>]) -> Option<agentauth_core::SpiffeId>
    + Send
    + Sync;

/// HTTPS: the server configuration, and how a client's chain is named.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) identify: Arc<Identify>,
}

/// The bounds on connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most connections served at once.
    pub(crate) max_connections: usize,
    /// Longest time a client may take to send a request's headers.
    pub(crate) header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` fires, then lets open requests
/// finish (at most [`SHUTDOWN_GRACE`]). `before_drain` runs first, to end
/// connections that would never finish by themselves (event streams).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Tls>,
    mut stop: oneshot::Receiver<()>,
    before_drain: impl FnOnce(),
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                serve_one(TokioIo::new(stream), app, peer, None, limits, watcher).await;
                drop(permit);
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
            // The handshake counts against the same clock as the headers.
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await
            else {
                tracing::debug!(%peer, "TLS handshake failed or took too long");
                drop(permit);
                return;
            };
            let client = stream.get_ref().1.peer_certificates().and_then(|chain| {
                let id = (tls.identify)(chain)?;
                Some(crate::tls::ClientCertificate {
                    id,
                    leaf: Arc::new(chain.first()?.to_vec()),
                })
            });
            serve_one(TokioIo::new(stream), app, peer, client, limits, watcher).await;
            drop(permit);
        });
    }
    // Closed first: a client connecting now is refused at once rather than
    // left in the backlog until the drain ends.
    drop(listener);
    before_drain();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace; dropping them");
    }
    Ok(())
}

/// Serves one connection's requests, each with the client's address and,
/// over TLS, its certificate.
async fn serve_one<I>(
    io: TokioIo<I>,
    app: Router,
    peer: std::net::SocketAddr,
    client: Option<crate::tls::ClientCertificate>,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(client) = &client {
            request.extensions_mut().insert(client.clone());
        }
        request
    });
    let service = TowerToHyperService::new(service.map_err(|e: Infallible| match e {}));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = watcher.watch(builder.serve_connection(io, service));
    if let Err(e) = connection.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
