//! The SPIFFE Workload API (issue 14): a gRPC service on a Unix socket that
//! gives a local process its X.509- and JWT-SVIDs and the trust bundles
//! without any secret of its own. The caller is attested from the kernel's
//! view of the socket peer ([`Selectors::of_peer`]); registration entries
//! (an agent's selectors) say which agents' identities it gets. Where the
//! identities come from is an [`Identities`] source: the authority itself in
//! `agentauth serve --workload-socket`.

mod client;
mod endpoint;
mod peer;
mod selector;
mod service;

pub use client::{SecurityHeader, WorkloadClient, connect};
pub use endpoint::{DEFAULT_MAX_CONNECTIONS, Endpoint, socket_path};
pub use peer::PeerCred;
pub use selector::{Selector, Selectors};
pub use service::{Bundles, Identities, JwtIdentity, SECURITY_HEADER, WorkloadApi, X509Identity};
/// The gRPC crate the service and client are built on, for status codes.
pub use tonic;

/// The messages and the service, generated from `proto/workload.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("_");
}

/// What went wrong serving or calling the Workload API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The caller satisfies no registration entry (`PermissionDenied`).
    #[error("no identity issued")]
    NoIdentity,
    /// A request the caller must fix (`InvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// A selector that is not one of the forms agentauth attests.
    #[error("{0}")]
    Selector(String),
    /// The socket could not be bound, served or reached.
    #[error("the Workload API socket: {0}")]
    Socket(String),
    /// The identity source could not answer now (`Unavailable`).
    #[error("identities unavailable: {0}")]
    Unavailable(String),
}
