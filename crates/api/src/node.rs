//! Nodes: hosts that serve the SPIFFE Workload API away from the authority.
//! A node proves itself once with a join token, gets a node X.509-SVID, and
//! from then on authenticates by that SVID over mutual TLS to fetch the
//! entries assigned to it (selector `node:<name>`) and its workloads' SVIDs.

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/nodes/tokens` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJoinToken {
    /// The node's name: its SPIFFE ID is `spiffe://<td>/agentauth/node/<name>`.
    pub name: String,
    /// Seconds the token may be used in (60 to 86400; default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<i64>,
}

/// A join token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The secret, for `agentauth node --join-token`; only its hash is kept.
    pub token: String,
    /// The SPIFFE ID the node will have.
    pub spiffe_id: String,
    /// Until when it may be used, seconds since the epoch.
    pub expires_at: i64,
}

/// Body of `POST /v1/nodes/attest`: a join token and the node's CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAttestation {
    /// The one-time join token.
    pub join_token: String,
    /// A PKCS#10 CSR (PEM) signed by the node's own key.
    pub csr: String,
}

/// Body of `POST /v1/nodes/svid` (the node renewing its own SVID) and, with
/// `agent`, of `POST /v1/nodes/x509` (an SVID for a workload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCsr {
    /// A PKCS#10 CSR (PEM).
    pub csr: String,
    /// For `POST /v1/nodes/x509`: the agent whose SVID it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// Body of `POST /v1/nodes/jwt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeJwtRequest {
    /// The agent whose JWT-SVID it is.
    pub agent: String,
    /// Its audiences (1 to 8).
    pub audience: Vec<String>,
}

/// One registration entry a node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The agent's name.
    pub name: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// The selectors a local process must all have (`node:<name>` included).
    pub selectors: Vec<String>,
}

/// The answer of `GET /v1/nodes/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntries {
    /// Every active agent assigned to the calling node.
    pub entries: Vec<NodeEntry>,
}

/// A node as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// When it attested with its join token.
    pub attested_at: i64,
    /// Whether it was evicted (its SVID is refused from then on).
    pub evicted: bool,
}

/// The answer of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    /// Every node that attested, by name.
    pub nodes: Vec<NodeView>,
}
