//! The wire contract of the agentauth authority's HTTP API: one serde type
//! per request and response body, shared by the authority that writes them
//! and the SDK and CLI that read them, so a renamed field breaks the build
//! rather than a client.
//!
//! Field names, their order and the members left out are exactly what goes
//! on the wire; each module's tests pin its JSON shapes. Request bodies carry
//! the authority's parsing rules (`deny_unknown_fields`, defaults); response
//! bodies ignore unknown members so that newer authorities can add some.

mod admin;
mod approval;
mod audit;
mod delegation;
mod discovery;
mod error;
mod keys;
mod node;
mod policy;
mod registry;
mod revocation;
mod svid;
mod task;
mod token;

// The public interface is:
pub use admin::{
    AdminCredentialRotation, NewOperator, OperatorCreated, OperatorList, OperatorView,
};
pub use approval::{ApprovalList, ApprovalQuery, ApprovalState, ApprovalVerdict, ApprovalView};
pub use audit::{
    AuditCheckpoint, AuditHead, AuditPage, AuditQuery, BatchAccepted, EventBatch, ReportedEvent,
};
pub use delegation::{Delegation, DelegationList, NewDelegation};
pub use discovery::{Jwk, Jwks, ServerMetadata};
pub use error::{LayerDenial, OAuthError};
pub use keys::{KeyRotation, SigningKeyList, SigningKeyView};
pub use node::{
    JoinToken, NewJoinToken, NodeAttestation, NodeCsr, NodeEntries, NodeEntry, NodeJwtRequest,
    NodeList, NodeView,
};
pub use policy::{
    AgentFacts, DecisionClock, DecisionContext, DryRunAnswer, DryRunRequest, NewPolicySet,
    PolicyDecision, PolicyDistribution, PolicyFile, PolicyOutcome, PolicyProblem, PolicySetLoaded,
    PolicySummary, PolicyVersion, PolicyVersionDetail, PolicyVersionList,
};
pub use registry::{AgentKeyRotation, AgentList, AgentPatch, AgentStatus, AgentView, NewAgent};
pub use revocation::{
    FeedQuery, RevocationAction, RevocationEntry, RevocationKind, RevocationPage,
    RevocationReceipt, RevocationRequest, RevocationTarget,
};
pub use svid::{
    BundleKey, CaList, CaRotation, CaView, FederationList, FederationView, JwtSvidIssued,
    JwtSvidRequest, NewFederation, TrustBundle, X509SvidIssued, X509SvidRequest,
};
pub use task::{TaskCompletion, TaskView};
pub use token::{
    ACCESS_TOKEN_TYPE, Introspection, TOKEN_EXCHANGE_GRANT, TokenForm, TokenRequest, TokenResponse,
    TokenRevoked,
};

/// Shape checks the modules' tests share.
#[cfg(test)]
mod shape {
    use std::fmt::Debug;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// `value` serializes to exactly `expected` (pretty-printed, so names,
    /// order, nesting and omitted members all count), and `expected` reads
    /// back as `value`.
    pub(crate) fn pinned<T>(value: &T, expected: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let written = serde_json::to_string_pretty(value).expect("serializes");
        assert_eq!(written, expected.trim(), "the JSON shape changed");
        let read: T = serde_json::from_str(expected).expect("the pinned JSON reads back");
        assert_eq!(&read, value, "the pinned JSON reads back differently");
    }
}
