//! The agentauth SDK: what an agent links to take part.
//!
//! - [`Client`] holds the agent's private key, authenticates to the authority
//!   with private_key_jwt, caches tokens per (audience, scope) and sends
//!   requests with them. A request that needs a person's approval comes back
//!   as [`SdkError::ApprovalPending`]; [`Client::wait_for_approval`] polls
//!   until it is decided.
//! - [`Verifier`] checks incoming tokens offline against the authority's JWKS
//!   and a revocation list that follows the authority's revocation stream
//!   (polling as the fallback); [`Verifier::require`] turns it into a tower
//!   layer for axum routes that also demands a permission, and
//!   [`Verifier::require_fresh`] one that fails closed while the feed is down.

mod audit;
mod client;
mod delegation;
mod denial;
mod discovery;
mod error;
mod feed;
mod layer;
mod policy;
mod revocation;
mod verifier;

// The public interface is:
pub use client::{AccessToken, Client, PendingApproval};
pub use delegation::OnBehalfOf;
pub use denial::{Check, Denial};
pub use discovery::Metadata;
pub use error::SdkError;
pub use layer::{AuthLayer, AuthService, MAX_BODY_BYTES};
pub use verifier::{VerifiedAgent, Verifier, VerifierConfig};
