//! The agentauth SDK: what an agent links to take part.
//!
//! - [`Client`] holds the agent's private key, authenticates to the authority
//!   with private_key_jwt, caches tokens per (audience, scope) and sends
//!   requests with them. A request that needs a person's approval comes back
//!   as [`SdkError::ApprovalPending`]; [`Client::wait_for_approval`] polls
//!   until it is decided.
//! - `Verifier` checks incoming tokens offline against the authority's JWKS
//!   and a revocation list that follows the authority's revocation stream
//!   (polling as the fallback); `Verifier::require` turns it into a tower
//!   layer for axum routes that also demands a permission, and
//!   `Verifier::require_fresh` one that fails closed while the feed is down.
//!
//! # Features
//!
//! - `verifier` (default): the receiving side: `Verifier`, `AuthLayer` and
//!   its service, `Denial` and `Check`, the revocation feed follower, the
//!   audit sink and `Client::on_behalf_of`. Brings in axum and tower.
//! - `policy` (default, implies `verifier`): the layer's last check, the
//!   local Cedar decision against the authority's active policy set. Brings
//!   in `agentauth-policy` and Cedar. A verifier built without it makes no
//!   local decision: while the authority has no policy set active, routes
//!   are decided by token scope alone; while one is active, every route that
//!   demands a permission is refused (403, `Check::Policy`), since a set it
//!   cannot evaluate must not be skipped.
//!
//! With `default-features = false` the crate is the client alone (token
//! fetch and cache, token exchange, request signing, DPoP, approval waits),
//! without axum, tower or Cedar.

#[cfg(feature = "verifier")]
mod audit;
mod client;
#[cfg(feature = "verifier")]
mod delegation;
#[cfg(feature = "verifier")]
mod denial;
mod discovery;
mod error;
#[cfg(feature = "verifier")]
mod feed;
#[cfg(feature = "verifier")]
mod layer;
#[cfg(feature = "verifier")]
mod metrics;
pub mod mtls;
#[cfg(feature = "verifier")]
mod policy;
#[cfg(feature = "verifier")]
mod revocation;
mod svid;
#[cfg(feature = "verifier")]
mod verifier;
#[cfg(feature = "verifier")]
mod workload;

// The public interface is:
pub use agentauth_svid::SpiffeBundle;
pub use client::{AccessToken, Client, PendingApproval};
pub use discovery::Metadata;
pub use error::{Endpoint, SdkError};
pub use svid::{JwtSvid, X509Svid};

#[cfg(feature = "verifier")]
pub use audit::AuditStats;
#[cfg(feature = "verifier")]
pub use delegation::OnBehalfOf;
#[cfg(feature = "verifier")]
pub use denial::{Check, Denial};
#[cfg(feature = "verifier")]
pub use layer::{AuthLayer, AuthService, MAX_BODY_BYTES};
/// The Prometheus client [`Verifier::register_metrics`] takes a registry of.
#[cfg(feature = "verifier")]
pub use prometheus_client;
#[cfg(feature = "verifier")]
pub use verifier::{VerifiedAgent, Verifier, VerifierConfig};
