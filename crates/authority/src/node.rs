//! Nodes: hosts that serve the SPIFFE Workload API away from the authority
//! (`agentauth node`). The admin makes a one-time join token for a node's
//! name; the node presents it once with a CSR and gets a node X.509-SVID
//! (`spiffe://<td>/agentauth/node/<name>`); from then on it authenticates by
//! that SVID over mutual TLS (`serve --tls`), renews it, and fetches the
//! entries assigned to it (agents with the selector `node:<name>`) and their
//! SVIDs. Only those: a node cannot get another node's workloads' SVIDs.

use std::collections::BTreeMap;

use agentauth_api::{
    JoinToken, NewJoinToken, NodeAttestation, NodeCsr, NodeEntries, NodeEntry, NodeJwtRequest,
    NodeList, NodeView, X509SvidIssued,
};
use agentauth_core::{AgentName, AuditKind, Decision, SpiffeId, unix_now};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::audit::{event, request_id};
use crate::body::RawRequest;
use crate::server::AppState;
use crate::svid::{JWT_SVID_LIFETIME_SECS, sign_csr};
use crate::tls::ClientCertificate;
use crate::{AuthorityError, Missing};

/// Setting that holds the join tokens (hashed) and the nodes.
const NODES_SETTING: &str = "nodes";
/// The SPIFFE ID path of a node, before its name.
const NODE_PATH: &str = "/agentauth/node/";
/// Join token lifetime bounds and default, seconds.
const MIN_TOKEN_TTL: i64 = 60;
const MAX_TOKEN_TTL: i64 = 86_400;
const DEFAULT_TOKEN_TTL: i64 = 600;
/// Most unused join tokens kept at once.
const MAX_PENDING_TOKENS: usize = 1000;
/// Most audiences, and longest, of a JWT-SVID a node asks for.
const MAX_AUDIENCES: usize = 8;
const MAX_AUDIENCE_LEN: usize = 512;

/// Why a node request is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeRefusal {
    /// The node name breaks the naming rule.
    #[error("a node name is 1 to 63 lowercase letters, digits and dashes")]
    Name,
    /// The join token lifetime is out of bounds.
    #[error("ttl_secs must be 60 to 86400")]
    Ttl,
    /// Too many join tokens wait to be used.
    #[error("1000 join tokens wait to be used already")]
    TooManyTokens,
    /// The join token is unknown, used or expired.
    #[error("the join token is unknown, used already, or expired")]
    JoinToken,
    /// The request came without a node SVID (over plain HTTP, or without a
    /// client certificate, or with another kind of SVID).
    #[error("this call needs the node's X.509-SVID as the TLS client certificate")]
    NotANode,
    /// The node was evicted, or never attested here.
    #[error("node {0} is evicted or unknown")]
    Evicted(String),
    /// The agent is not assigned to this node (no `node:<name>` selector),
    /// is not active, or does not exist.
    #[error("agent {0} is not an active agent assigned to this node")]
    NotAssigned(String),
    /// A JWT-SVID request without 1 to 8 audiences of at most 512 characters.
    #[error("a JWT-SVID names 1 to 8 audiences of 1 to 512 characters")]
    Audience,
}

/// The join tokens and nodes as stored (one setting, changed by
/// compare-and-swap so a token is used once across replicas).
#[derive(Serialize, Deserialize, Default)]
struct StoredNodes {
    /// Unused join tokens by the SHA-256 of the token (hex).
    tokens: BTreeMap<String, StoredToken>,
    /// Attested nodes by name.
    nodes: BTreeMap<String, StoredNode>,
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    name: String,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredNode {
    attested_at: i64,
    #[serde(default)]
    evicted: bool,
}

fn node_id(s: &crate::server::State, name: &AgentName) -> Result<SpiffeId, AuthorityError> {
    SpiffeId::parse(&format!("spiffe://{}{NODE_PATH}{name}", s.trust_domain))
        .map_err(|e| AuthorityError::Internal(e.to_string()))
}

fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hex::encode(digest.as_ref())
}

async fn load(s: &crate::server::State) -> Result<(String, StoredNodes), AuthorityError> {
    let empty = serde_json::to_string(&StoredNodes::default())
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let text = s.store.init_setting(NODES_SETTING, &empty).await?;
    let stored = serde_json::from_str(&text)
        .map_err(|_| AuthorityError::Internal("the stored nodes are not JSON".into()))?;
    Ok((text, stored))
}

async fn save(
    s: &crate::server::State,
    before: &str,
    after: &StoredNodes,
    audit: &agentauth_core::AuditEvent,
) -> Result<bool, AuthorityError> {
    let text = serde_json::to_string(after).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    Ok(s.store
        .replace_setting(NODES_SETTING, before, &text, audit)
        .await?)
}

/// `POST /v1/nodes/tokens` (admin): a one-time join token for a node name.
pub(crate) async fn create_token(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: http::HeaderMap,
    crate::body::JsonBody(asked): crate::body::JsonBody<NewJoinToken>,
) -> Result<Response, AuthorityError> {
    let name = AgentName::new(asked.name.trim()).map_err(|_| NodeRefusal::Name)?;
    let ttl = asked.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL);
    if !(MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(&ttl) {
        return Err(NodeRefusal::Ttl.into());
    }
    let id = node_id(&s, &name)?;
    let token = agentauth_core::b64url_encode(agentauth_core::random_bytes(32));
    let now = unix_now();
    for _ in 0..3 {
        let (before, mut stored) = load(&s).await?;
        stored.tokens.retain(|_, t| t.expires_at > now);
        if stored.tokens.len() >= MAX_PENDING_TOKENS {
            return Err(NodeRefusal::TooManyTokens.into());
        }
        stored.tokens.insert(
            token_hash(&token),
            StoredToken {
                name: name.to_string(),
                expires_at: now + ttl,
            },
        );
        let mut audit = event(
            AuditKind::JoinTokenCreated,
            &by.actor(),
            &id,
            Decision::Allow,
        );
        audit.reason = format!(
            "a join token for node {name}, usable once until {}",
            now + ttl
        );
        audit.request_id = request_id(&headers);
        if save(&s, &before, &stored, &audit).await? {
            let body = JoinToken {
                token,
                spiffe_id: id.to_string(),
                expires_at: now + ttl,
            };
            return Ok((http::StatusCode::CREATED, Json(body)).into_response());
        }
    }
    Err(AuthorityError::Stored(agentauth_store::StoreError::Stale(
        "the nodes changed meanwhile (another replica); try again".into(),
    )))
}

/// `POST /v1/nodes/attest`: a node's first call. The join token is used up
/// (once, across replicas) and the node gets its X.509-SVID.
pub(crate) async fn attest(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<X509SvidIssued>, AuthorityError> {
    let asked: NodeAttestation = req.json()?;
    if asked.join_token.len() > 256 {
        return Err(NodeRefusal::JoinToken.into());
    }
    let hash = token_hash(&asked.join_token);
    let now = unix_now();
    let (before, mut stored) = load(&s).await?;
    let token = stored.tokens.remove(&hash).ok_or(NodeRefusal::JoinToken)?;
    if token.expires_at <= now {
        return Err(NodeRefusal::JoinToken.into());
    }
    let name = AgentName::new(&token.name).map_err(|_| NodeRefusal::Name)?;
    let id = node_id(&s, &name)?;
    // The CSR is checked before the token is spent.
    let issued = sign_csr(&s, &asked.csr, &id)?;
    stored.nodes.insert(
        name.to_string(),
        StoredNode {
            attested_at: now,
            evicted: false,
        },
    );
    let mut audit = event(AuditKind::NodeAttested, &id, &id, Decision::Allow);
    audit.reason = format!(
        "node {name} attested with a join token; node SVID until {} (serial {})",
        issued.expires_at, issued.serial
    );
    audit.request_id = request_id(&req.parts.headers);
    if !save(&s, &before, &stored, &audit).await? {
        // Another replica changed the nodes meanwhile, perhaps using this
        // very token: refused, so a token never attests twice.
        return Err(NodeRefusal::JoinToken.into());
    }
    Ok(Json(issued))
}

/// The attested, not evicted node that presented its SVID on `req`.
async fn calling_node(
    s: &crate::server::State,
    req: &RawRequest,
) -> Result<(AgentName, SpiffeId), AuthorityError> {
    let cert = req
        .parts
        .extensions
        .get::<ClientCertificate>()
        .ok_or(NodeRefusal::NotANode)?;
    let name = cert
        .id
        .path()
        .strip_prefix(NODE_PATH)
        .and_then(|n| AgentName::new(n).ok())
        .ok_or(NodeRefusal::NotANode)?;
    let (_, stored) = load(s).await?;
    match stored.nodes.get(name.as_str()) {
        Some(node) if !node.evicted => Ok((name, cert.id.clone())),
        _ => Err(NodeRefusal::Evicted(name.to_string()).into()),
    }
}

/// `POST /v1/nodes/svid` (node): a new node SVID from a CSR.
pub(crate) async fn renew(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<X509SvidIssued>, AuthorityError> {
    let (_, id) = calling_node(&s, &req).await?;
    let asked: NodeCsr = req.json()?;
    let issued = sign_csr(&s, &asked.csr, &id)?;
    audit_svid(&s, &req, &id, &id, &issued).await?;
    Ok(Json(issued))
}

async fn audit_svid(
    s: &crate::server::State,
    req: &RawRequest,
    node: &SpiffeId,
    subject: &SpiffeId,
    issued: &X509SvidIssued,
) -> Result<(), AuthorityError> {
    let mut audit = event(AuditKind::SvidIssued, node, &issued.serial, Decision::Allow);
    audit.reason = format!(
        "X.509-SVID for {subject} until {} (serial {}) through node {node}",
        issued.expires_at, issued.serial
    );
    audit.request_id = request_id(&req.parts.headers);
    s.store.append_audit(&[audit]).await?;
    Ok(())
}

/// The active agents assigned to `node` (selector `node:<name>`).
async fn assigned(
    s: &crate::server::State,
    node: &AgentName,
) -> Result<Vec<agentauth_store::AgentRow>, AuthorityError> {
    let selector = format!("node:{node}");
    let now = unix_now();
    Ok(s.store
        .agents_with_selectors()
        .await?
        .into_iter()
        .filter(|a| {
            a.status == agentauth_store::AgentStatus::Active
                && a.expires_at.is_none_or(|at| at > now)
                && a.selectors.contains(&selector)
        })
        .collect())
}

async fn assigned_agent(
    s: &crate::server::State,
    node: &AgentName,
    agent: &str,
) -> Result<agentauth_store::AgentRow, AuthorityError> {
    assigned(s, node)
        .await?
        .into_iter()
        .find(|a| a.name.as_str() == agent)
        .ok_or_else(|| NodeRefusal::NotAssigned(agent.chars().take(64).collect()).into())
}

/// `GET /v1/nodes/entries` (node): the entries the node serves.
pub(crate) async fn entries(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<NodeEntries>, AuthorityError> {
    let (name, _) = calling_node(&s, &req).await?;
    Ok(Json(NodeEntries {
        entries: assigned(&s, &name)
            .await?
            .into_iter()
            .map(|a| NodeEntry {
                name: a.name.to_string(),
                spiffe_id: a.id.to_string(),
                selectors: a.selectors,
            })
            .collect(),
    }))
}

/// `POST /v1/nodes/x509` (node): an X.509-SVID for an agent assigned to it.
pub(crate) async fn x509(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<X509SvidIssued>, AuthorityError> {
    let (name, node) = calling_node(&s, &req).await?;
    let asked: NodeCsr = req.json()?;
    let agent = assigned_agent(&s, &name, asked.agent.as_deref().unwrap_or("")).await?;
    let issued = sign_csr(&s, &asked.csr, &agent.id)?;
    audit_svid(&s, &req, &node, &agent.id, &issued).await?;
    Ok(Json(issued))
}

/// `POST /v1/nodes/jwt` (node): a JWT-SVID for an agent assigned to it.
pub(crate) async fn jwt(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<agentauth_api::JwtSvidIssued>, AuthorityError> {
    let (name, node) = calling_node(&s, &req).await?;
    let asked: NodeJwtRequest = req.json()?;
    if asked.audience.is_empty()
        || asked.audience.len() > MAX_AUDIENCES
        || asked
            .audience
            .iter()
            .any(|a| a.is_empty() || a.len() > MAX_AUDIENCE_LEN)
    {
        return Err(NodeRefusal::Audience.into());
    }
    let agent = assigned_agent(&s, &name, &asked.agent).await?;
    let now = unix_now();
    let token = agentauth_core::mint_jwt_svid(
        &s.jwt_svid_key.key,
        &s.jwt_svid_key.kid,
        &agent.id,
        &asked.audience,
        now,
        JWT_SVID_LIFETIME_SECS,
    );
    let mut audit = event(AuditKind::SvidIssued, &node, &agent.id, Decision::Allow);
    audit.audience = asked.audience.join(" ");
    audit.reason = format!(
        "JWT-SVID for {} to {} until {} through node {node}",
        agent.id,
        asked.audience.join(" "),
        now + JWT_SVID_LIFETIME_SECS
    );
    audit.request_id = request_id(&req.parts.headers);
    s.store.append_audit(&[audit]).await?;
    Ok(Json(agentauth_api::JwtSvidIssued {
        spiffe_id: agent.id.to_string(),
        token,
        expires_at: now + JWT_SVID_LIFETIME_SECS,
    }))
}

/// `GET /v1/nodes` (admin): every node that attested.
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<NodeList>, AuthorityError> {
    let (_, stored) = load(&s).await?;
    let mut nodes = Vec::with_capacity(stored.nodes.len());
    for (name, node) in &stored.nodes {
        let Ok(name) = AgentName::new(name) else {
            continue;
        };
        nodes.push(NodeView {
            spiffe_id: node_id(&s, &name)?.to_string(),
            name: name.to_string(),
            attested_at: node.attested_at,
            evicted: node.evicted,
        });
    }
    Ok(Json(NodeList { nodes }))
}

/// `DELETE /v1/nodes/{name}` (admin): evicts a node; its SVID is refused
/// from the next call on, and only a new join token brings it back.
pub(crate) async fn evict(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: http::HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, AuthorityError> {
    let (before, mut stored) = load(&s).await?;
    let node = stored
        .nodes
        .get_mut(&name)
        .ok_or_else(|| AuthorityError::NotFound(Missing::Node(name.chars().take(64).collect())))?;
    node.evicted = true;
    let mut audit = event(AuditKind::NodeEvicted, &by.actor(), &name, Decision::Allow);
    audit.reason = format!("node {name} evicted");
    audit.request_id = request_id(&headers);
    if !save(&s, &before, &stored, &audit).await? {
        return Err(AuthorityError::Stored(agentauth_store::StoreError::Stale(
            "the nodes changed meanwhile (another replica); try again".into(),
        )));
    }
    Ok(http::StatusCode::NO_CONTENT.into_response())
}
