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
        })
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
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_STREAMS)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(service)
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(self.listener)
                    .map(|accepted| accepted.map(crate::peer::PeerStream::new)),
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
}
