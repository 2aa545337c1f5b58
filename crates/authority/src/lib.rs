//! The agentauth authority: agent registry, OAuth 2.0 authorization server
//! (metadata, JWKS, token, introspection, revocation), revocation feed and the
//! hash-chained audit log, served over HTTP with axum.

mod admin;
mod approval;
mod audit;
mod body;
mod client_auth;
mod config;
mod connections;
mod delegation;
mod error;
mod federation;
mod files;
mod issuance;
mod keys;
mod master_key;
mod metrics;
mod node;
mod oauth;
mod operator;
mod policy;
mod refusals;
mod registry;
mod revocation;
mod server;
mod standing;
mod svid;
mod task;
mod throttle;
mod tls;
mod workload;

// The public interface is:
pub use admin::{ADMIN_TOKEN_FILE, AdminCredential};
pub use approval::ApprovalRefusal;
pub use audit::{
    ApiTokenRefusal, AuditRefusal, CHECKPOINT_TYP, CheckpointClaims, CheckpointError,
    verify_checkpoint,
};
pub use body::{BodyError, MAX_BODY_BYTES, parse_form};
pub use client_auth::{ClientAuthFailure, JWT_SPIFFE_ASSERTION_TYPE};
pub use config::{Config, ConfigError, SPAWN_DEPTH_CEILING};
pub use delegation::DelegationRefusal;
pub use error::{AuthorityError, Missing, Needed};
pub use federation::FederationRefusal;
pub use issuance::{DpopRefusal, ExchangeRefusal, TokenRequestFault};
pub use keys::{KeyPhase, KeyRecord, KeyRing, KeyStatus, MASTER_KEY_ENV, MasterKey};
pub use master_key::{MasterKeyRotated, rotate_master_key};
pub use node::NodeRefusal;
pub use oauth::{AUTHORITY_IMPLICIT_SCOPES, TOKEN_EXCHANGE_GRANT};
pub use operator::{ADMIN_GROUP, OperatorRefusal, Principal};
pub use policy::PolicyRefusal;
pub use registry::RegistryRefusal;
pub use revocation::RevocationRefusal;
pub use server::{Running, start};
pub use svid::SvidRefusal;
pub use task::TaskRefusal;
pub use throttle::{Limit, Throttled};
