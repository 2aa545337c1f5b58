//! The Workload API's endpoint: the `SPIFFE_ENDPOINT_SOCKET` address, and
//! the server on a Unix socket any local process may connect to (the
//! attestation, not the file mode, decides what it gets).

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnixListenerStream;

use crate::proto::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use crate::{Identities, WorkloadApi, WorkloadError};

/// Largest request message the server reads.
const MAX_MESSAGE: usize = 64 * 1024;
/// How long a stopping server waits for open streams before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Most calls (streams included) open on one connection at once.
const MAX_STREAMS: u32 = 64;
/// Most connections open at once by default; one more is closed on accept.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The socket path of a `SPIFFE_ENDPOINT_SOCKET` value: `unix:///abs/path`
/// (or the short `unix:/abs/path`). TCP endpoints are not served: a Unix
/// socket is what lets the kernel say who the caller is.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, WorkloadError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .ok_or_else(|| {
            WorkloadError::Socket(format!(
                "the endpoint {endpoint:?} is not unix:///ABSOLUTE/PATH"
            ))
        })?;
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(WorkloadError::Socket(format!(
            "the endpoint {endpoint:?} is not unix:///ABSOLUTE/PATH"
        )));
    }
    Ok(PathBuf::from(path))
}

/// A Workload API server bound to its socket.
pub struct Endpoint {
    listener: UnixListener,
    path: PathBuf,
    max_connections: usize,
}

impl Endpoint {
    /// Binds `path`: a stale socket left there is replaced, any other file
    /// is refused; the socket is made connectable by every local user.
    pub fn bind(path: &Path) -> Result<Self, WorkloadError> {
        let fail = |e: std::io::Error| WorkloadError::Socket(format!("{}: {e}", path.display()));
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(fail)?,
            Ok(_) => {
                return Err(WorkloadError::Socket(format!(
                    "{} exists and is not a socket",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        let listener = UnixListener::bind(path).map_err(fail)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(fail)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Allows at most `n` connections at once (at least 1): one accepted
    /// beyond is closed at once, so local processes cannot exhaust the
    /// server's memory or file descriptors.
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves the Workload API over `identities` until `shutdown` resolves,
    /// then removes the socket file. Streams never end by themselves, so
    /// after [`SHUTDOWN_GRACE`] the connections still open are dropped (the
    /// clients reconnect to whatever serves the socket next).
    pub async fn serve<I: Identities>(
        self,
        identities: Arc<I>,
        recheck: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), WorkloadError> {
        let service = SpiffeWorkloadApiServer::new(WorkloadApi::new(identities, recheck))
            .max_decoding_message_size(MAX_MESSAGE);
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let mut graceful = stopped.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_STREAMS)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(service)
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(self.listener).filter_map(move |accepted| {
                    let stream = match accepted {
                        Ok(stream) => stream,
                        Err(e) => return Some(Err(e)),
                    };
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => Some(Ok(crate::peer::PeerStream::new(stream, slot))),
                        Err(_) => {
                            tracing::warn!("Workload API connection refused: too many open");
                            None
                        }
                    }
                }),
                async move {
                    let _ = graceful.wait_for(|stop| *stop).await;
                },
            );
        let mut deadline = stopped;
        let result = tokio::select! {
            result = server => result.map_err(|e| WorkloadError::Socket(e.to_string())),
            () = async {
                shutdown.await;
                let _ = stopping.send(true);
                let _ = deadline.wait_for(|stop| *stop).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => Ok(()),
        };
        let _ = std::fs::remove_file(&self.path);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_unix_endpoints_are_taken() {
        assert_eq!(
            socket_path("unix:///run/agentauth/api.sock").unwrap(),
            PathBuf::from("/run/agentauth/api.sock")
        );
        assert_eq!(
            socket_path("unix:/tmp/a.sock").unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        for bad in [
            "tcp://127.0.0.1:8081",
            "unix://host/tmp/a.sock",
            "unix:relative.sock",
            "/tmp/a.sock",
            "unix:///tmp/a.sock?x=1",
        ] {
            assert!(socket_path(bad).is_err(), "{bad} was taken");
        }
    }

    /// Identities for nobody: every call reaches the service and is
    /// answered `PermissionDenied`.
    struct Nobody(tokio::sync::watch::Sender<u64>);

    #[async_trait::async_trait]
    impl Identities for Nobody {
        async fn x509_svids(
            &self,
            _: &crate::Selectors,
        ) -> Result<Vec<crate::X509Identity>, WorkloadError> {
            Ok(Vec::new())
        }
        async fn has_identity(&self, _: &crate::Selectors) -> Result<bool, WorkloadError> {
            Ok(false)
        }
        async fn jwt_svids(
            &self,
            _: &crate::Selectors,
            _: &[String],
            _: Option<&str>,
        ) -> Result<Vec<crate::JwtIdentity>, WorkloadError> {
            Ok(Vec::new())
        }
        fn bundles(&self) -> Arc<crate::Bundles> {
            Arc::default()
        }
        fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
            self.0.subscribe()
        }
    }

    async fn call(endpoint: &str) -> tonic::Code {
        let Ok(mut client) = crate::connect(endpoint).await else {
            return tonic::Code::Unavailable;
        };
        match client
            .fetch_jwtsvid(crate::proto::JwtsvidRequest {
                audience: vec!["x".into()],
                spiffe_id: String::new(),
            })
            .await
        {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        }
    }

    #[tokio::test]
    async fn a_connection_beyond_the_limit_is_closed_and_a_freed_place_is_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let endpoint = Endpoint::bind(&path).unwrap().with_max_connections(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(endpoint.serve(
            Arc::new(Nobody(tokio::sync::watch::Sender::new(0))),
            Duration::from_secs(60),
            async {
                let _ = stopped.await;
            },
        ));
        let uri = format!("unix://{}", path.display());
        let holder = tokio::net::UnixStream::connect(&path).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = call(&uri).await;
        assert!(
            !matches!(refused, tonic::Code::PermissionDenied | tonic::Code::Ok),
            "the one place is taken, so the call never reaches the service: {refused:?}"
        );
        drop(holder);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            call(&uri).await,
            tonic::Code::PermissionDenied,
            "the call reaches the service once the place is free"
        );
        let _ = stop.send(());
        served.await.unwrap().unwrap();
    }
}
