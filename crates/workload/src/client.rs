//! A Workload API client over the Unix socket, sending the security header
//! on every call: what an agent in Rust uses to get its SVIDs.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::Request;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use crate::{SECURITY_HEADER, WorkloadError, socket_path};

/// Adds `workload.spiffe.io: true` to every request.
#[derive(Debug, Clone, Copy)]
pub struct SecurityHeader;

impl Interceptor for SecurityHeader {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            SECURITY_HEADER,
            tonic::metadata::MetadataValue::from_static("true"),
        );
        Ok(request)
    }
}

/// The generated client with the security header added.
pub type WorkloadClient = SpiffeWorkloadApiClient<InterceptedService<Channel, SecurityHeader>>;

/// Connects to the Workload API at `endpoint` (`unix:///path`).
pub async fn connect(endpoint: &str) -> Result<WorkloadClient, WorkloadError> {
    let path: PathBuf = socket_path(endpoint)?;
    let channel = Endpoint::from_static("http://workload.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| WorkloadError::Socket(format!("{endpoint}: {e}")))?;
    Ok(SpiffeWorkloadApiClient::with_interceptor(
        channel,
        SecurityHeader,
    ))
}
