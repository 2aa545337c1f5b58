//! An agent's X.509-SVID from the SPIFFE Workload API on its host (no
//! secret of its own needed): the first one fetched, then every rotation
//! the stream pushes, put in an [`SvidSource`] so the TLS configurations
//! built from it follow without a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use agentauth_core::SpiffeId;
use agentauth_workload::proto::{X509svidRequest, X509svidResponse};

use crate::mtls::SvidSource;
use crate::{SdkError, X509Svid};

/// Longest wait between reconnections to the Workload API.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn refused(e: impl std::fmt::Display) -> SdkError {
    SdkError::WorkloadApi(e.to_string())
}

/// The SVID of a stream message with `id` (the default, the first, when
/// `None`), with its key and bundle.
fn pick_svid(message: &X509svidResponse, id: Option<&SpiffeId>) -> Result<X509Svid, SdkError> {
    let svid = match id {
        None => message.svids.first(),
        Some(id) => message.svids.iter().find(|s| s.spiffe_id == id.as_str()),
    }
    .ok_or_else(|| match id {
        Some(id) => refused(format!("the answer holds no SVID for {id}")),
        None => refused("the answer holds no SVID"),
    })?;
    let chain = agentauth_svid::split_certificates(&svid.x509_svid).map_err(refused)?;
    let bundle = agentauth_svid::split_certificates(&svid.bundle).map_err(refused)?;
    let expires_at = agentauth_svid::not_after(&chain[0]).map_err(refused)?;
    let spiffe_id = SpiffeId::parse(&svid.spiffe_id).map_err(refused)?;
    Ok(X509Svid {
        spiffe_id,
        cert_chain_pem: agentauth_svid::certificates_pem(chain.iter().map(Vec::as_slice)),
        private_key_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", svid.x509_svid_key.clone())),
        bundle_pem: agentauth_svid::certificates_pem(bundle.iter().map(Vec::as_slice)),
        expires_at,
    })
}

/// The federated bundles of a stream message (keyed `spiffe://<td>`), by
/// trust domain name; one unreadable is left out.
fn federated(message: &X509svidResponse) -> BTreeMap<String, Vec<Vec<u8>>> {
    message
        .federated_bundles
        .iter()
        .filter_map(|(id, der)| {
            let name = id.strip_prefix("spiffe://")?;
            let certs = agentauth_svid::split_certificates(der).ok()?;
            Some((name.to_owned(), certs))
        })
        .collect()
}

/// Puts a stream message's SVID and federated bundles in `source`.
fn apply(
    source: &SvidSource,
    message: &X509svidResponse,
    id: Option<&SpiffeId>,
) -> Result<(), SdkError> {
    source.update(&pick_svid(message, id)?)?;
    source.set_federated_bundles(federated(message));
    Ok(())
}

/// Opens the `FetchX509SVID` stream at `endpoint`.
async fn open(endpoint: &str) -> Result<tonic::Streaming<X509svidResponse>, SdkError> {
    let mut client = agentauth_workload::connect(endpoint)
        .await
        .map_err(refused)?;
    let stream = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .map_err(|status| refused(format!("{:?}: {}", status.code(), status.message())))?;
    Ok(stream.into_inner())
}

impl SvidSource {
    /// A source holding the SVID the Workload API at `endpoint`
    /// (`unix:///path`, as `SPIFFE_ENDPOINT_SOCKET` names it) gives this
    /// process, kept current: every rotation the API pushes is swapped in,
    /// and a closed stream is opened again (with backoff up to 30 s) until
    /// the source is dropped.
    pub async fn from_workload_api(endpoint: &str) -> Result<Arc<Self>, SdkError> {
        Self::follow_workload_api(endpoint, None).await
    }

    /// The same, for the SVID with `id` among those the Workload API gives
    /// this process (a process that is the workload of several agents).
    pub async fn from_workload_api_for(
        endpoint: &str,
        id: &SpiffeId,
    ) -> Result<Arc<Self>, SdkError> {
        Self::follow_workload_api(endpoint, Some(id.clone())).await
    }

    async fn follow_workload_api(
        endpoint: &str,
        id: Option<SpiffeId>,
    ) -> Result<Arc<Self>, SdkError> {
        let mut stream = open(endpoint).await?;
        let first = stream
            .message()
            .await
            .map_err(|status| refused(format!("{:?}: {}", status.code(), status.message())))?
            .ok_or_else(|| refused("the stream closed before the first SVID"))?;
        let source = Self::new(&pick_svid(&first, id.as_ref())?)?;
        source.set_federated_bundles(federated(&first));
        tokio::spawn(follow(
            endpoint.to_owned(),
            id,
            Arc::downgrade(&source),
            stream,
        ));
        Ok(source)
    }
}

/// Applies every later message to the source while it lives.
async fn follow(
    endpoint: String,
    id: Option<SpiffeId>,
    source: Weak<SvidSource>,
    mut stream: tonic::Streaming<X509svidResponse>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        while let Ok(Some(message)) = stream.message().await {
            let Some(source) = source.upgrade() else {
                return;
            };
            match apply(&source, &message, id.as_ref()) {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!(error = %e, "a pushed SVID was unusable; keeping the last")
                }
            }
        }
        loop {
            tokio::time::sleep(backoff).await;
            if source.strong_count() == 0 {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match open(&endpoint).await {
                Ok(opened) => {
                    stream = opened;
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "reconnecting to the Workload API"),
            }
        }
    }
}
