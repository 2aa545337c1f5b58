//! Audit records: how the authority writes them, the endpoints that read
//! them and sign checkpoints of the chain's head (admin), and the one that
//! receives agents' verifying layers' decisions.

use agentauth_core::AuditKind;
use std::time::{SystemTime, UNIX_EPOCH};

use agentauth_api::{AuditCheckpoint, AuditHead, AuditPage, AuditQuery, BatchAccepted, EventBatch};
use agentauth_core::{
    AccessClaims, AuditEvent, AuditRecord, Compact, Decision, Header, ProofError, Rejection,
    RequestProof, Revoked, SpiffeId, TokenError, sign_compact, unix_now,
};
use agentauth_store::{AgentRow, AuditFilter};
use axum::Json;
use axum::extract::State;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::admin::presented_token;
use crate::body::{QueryParams, RawRequest};
use crate::error::Needed;
use crate::server::{AppState, State as AuthorityState};
use crate::standing::{self, Door};
use crate::{AuthorityError, registry};

/// Most events one batch may carry.
const MAX_BATCH: usize = 1000;
/// Longest text an agent may put in one field of a reported event.
const MAX_FIELD: usize = 512;
/// Most records one read returns.
const MAX_READ: i64 = 1000;
/// The scope an agent's token for the authority needs to report events.
pub(crate) const AUDIT_WRITE: &str = "audit:write";

/// The `typ` of a signed checkpoint of the audit chain's head.
pub const CHECKPOINT_TYP: &str = "agentauth-audit-checkpoint+jwt";

/// What a checkpoint says: up to record `seq`, whose hash is `hash`, the
/// chain was this, as the authority `iss` saw it at `iat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    /// The authority's issuer URL.
    pub iss: String,
    /// The last record covered.
    pub seq: i64,
    /// Its chain hash (hex).
    pub hash: String,
    /// When the checkpoint was taken.
    pub iat: i64,
}

/// Why a checkpoint does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not a compact JWS of the checkpoint type.
    #[error("the checkpoint is not an agentauth audit checkpoint: {0}")]
    Malformed(String),
    /// Its `kid` names no key the authority ever signed with.
    #[error("the checkpoint was signed with key \"{0}\", which this authority never had")]
    UnknownKey(String),
    /// The signature is wrong: the checkpoint was altered or forged.
    #[error("the checkpoint's signature is wrong: it was altered or not made by this authority")]
    BadSignature,
}

/// Checks a checkpoint's signature against the authority's keys (every key
/// it ever signed with) and returns what it says.
pub fn verify_checkpoint(
    keys: &crate::KeyRing,
    checkpoint: &str,
) -> Result<CheckpointClaims, CheckpointError> {
    let jws = Compact::parse(checkpoint.trim(), |typ| typ == Some(CHECKPOINT_TYP))
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let kid = jws.header.kid.clone().unwrap_or_default();
    let key = keys
        .find_any(&kid)
        .ok_or_else(|| CheckpointError::UnknownKey(kid.chars().take(64).collect()))?;
    jws.verify(key).map_err(|_| CheckpointError::BadSignature)
}

/// `POST /v1/audit/checkpoint` (admin): signs the chain's head now. Keep the
/// answer outside the database; `agentauth audit verify --checkpoint` then
/// proves that nothing up to it changed. Taking one is itself audited.
pub(crate) async fn checkpoint(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: HeaderMap,
) -> Result<Json<AuditCheckpoint>, AuthorityError> {
    let (seq, hash) = s.store.audit_head().await?;
    let claims = CheckpointClaims {
        iss: s.issuer.clone(),
        seq,
        hash: hash.clone(),
        iat: unix_now(),
    };
    let ring = s.keys();
    let (kid, key) = ring.signer(claims.iat);
    let header = Header {
        alg: key.alg(),
        typ: Some(CHECKPOINT_TYP.into()),
        kid: Some(kid.to_owned()),
        jwk: None,
    };
    let signed = sign_compact(&header, &claims, key);
    let mut audit = event(
        AuditKind::AuditCheckpoint,
        &by.actor(),
        &format!("record {seq}"),
        Decision::Allow,
    );
    audit.reason = format!("signed checkpoint of record {seq}, hash {hash}");
    audit.request_id = request_id(&headers);
    s.store.append_audit(&[audit]).await?;
    Ok(Json(AuditCheckpoint {
        checkpoint: signed,
        seq,
        hash,
        issued_at: claims.iat,
    }))
}

/// Why an audit query or a reported batch was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditRefusal {
    /// The `kind` filter names a kind agentauth never writes.
    #[error("\"{0}\" is not an audit record kind")]
    UnknownKind(String),
    /// A reported batch holds more than [`MAX_BATCH`] events.
    #[error("a batch holds at most {MAX_BATCH} events")]
    BatchTooLarge,
    /// An agent reported an event of a kind only the authority writes.
    #[error("agents may only report request.allowed and request.denied events, not \"{0}\"")]
    KindNotReportable(String),
    /// An agent reported a decision about a request addressed to someone else.
    #[error(
        "an agent may only report decisions about requests addressed to itself, not to \"{0}\""
    )]
    NotAddressedToReporter(String),
}

/// Why an agent's access token for the authority's API was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiTokenRefusal {
    /// Structure, `typ`/`alg`, key, signature, issuer, audience or time.
    #[error(transparent)]
    Token(TokenError),
    /// The request is not signed by the token's key, or was replayed.
    #[error(transparent)]
    Proof(ProofError),
    /// The token, its key, its task or an agent it names is revoked.
    #[error(transparent)]
    Revoked(Revoked),
    /// The token's agent was deleted from the registry.
    #[error("the token's agent is deleted")]
    AgentDeleted,
    /// The token is good but its scope lacks the permission this API needs.
    #[error("the token lacks the \"{0}\" permission")]
    LacksPermission(&'static str),
}

/// Now, in milliseconds since the epoch, as audit records count time.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A new event at the current time with empty optional fields.
pub(crate) fn event(
    kind: AuditKind,
    actor: &(impl AsRef<str> + ?Sized),
    subject: &(impl AsRef<str> + ?Sized),
    decision: Decision,
) -> AuditEvent {
    AuditEvent {
        time_ms: now_ms(),
        kind,
        actor: actor.as_ref().into(),
        subject: subject.as_ref().into(),
        audience: String::new(),
        scope: String::new(),
        decision,
        reason: String::new(),
        request_id: String::new(),
        txn: String::new(),
        chain: String::new(),
        purpose: String::new(),
        reported: false,
    }
}

/// The request ID set by the request-ID layer, bounded for storage.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(64).collect())
        .unwrap_or_default()
}

/// `GET /v1/audit`: records in chain order, filtered (admin only).
pub(crate) async fn list(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, AuthorityError> {
    Ok(Json(query(&s, q).await?))
}

/// Reads records in chain order by agent, kind and position, with the
/// chain's head so a reader can verify what it got.
pub(crate) async fn query(s: &AuthorityState, q: AuditQuery) -> Result<AuditPage, AuthorityError> {
    let filter = AuditFilter {
        agent: q.agent.map(|a| registry::agent_id_or_raw(s, &a)),
        kind: q.kind.as_deref().map(known_kind).transpose()?,
        since: q.since.unwrap_or(0).max(0),
        limit: q.limit.unwrap_or(100).clamp(1, MAX_READ),
    };
    let records: Vec<AuditRecord> = s.store.audit_records(&filter).await?;
    let (seq, hash) = s.store.audit_head().await?;
    Ok(AuditPage {
        records,
        head: AuditHead { seq, hash },
    })
}

/// The kind a filter names; one agentauth never writes is a mistake worth saying.
fn known_kind(name: &str) -> Result<AuditKind, AuditRefusal> {
    AuditKind::parse(name).ok_or_else(|| AuditRefusal::UnknownKind(shown(name)))
}

/// A client-given name, bounded for an error message.
fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// `POST /v1/audit/events`: a verifying layer's decisions, authenticated by an
/// access token for the authority with `audit:write`. The actor of every
/// record is the token's agent, whatever the body says.
pub(crate) async fn ingest(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<BatchAccepted>, AuthorityError> {
    let agent = authenticate_agent(&s, &req, AUDIT_WRITE).await?;
    let batch: EventBatch = req.json()?;
    Ok(Json(report(&s, &agent, batch).await?))
}

/// Appends the decisions `agent` reports to the chain, bounded and
/// rate-limited, with its own name as actor and marked as reported; a batch
/// with any kind agents may not report, or any decision about a request
/// addressed to another (its `audience`, empty for the reporter itself), is
/// refused whole.
pub(crate) async fn report(
    s: &AuthorityState,
    agent: &SpiffeId,
    batch: EventBatch,
) -> Result<BatchAccepted, AuthorityError> {
    if batch.events.len() > MAX_BATCH {
        return Err(AuditRefusal::BatchTooLarge.into());
    }
    s.throttle
        .audit_events(agent, batch.events.len() + usize::from(batch.dropped > 0))?;
    let now = now_ms();
    let mut events = Vec::with_capacity(batch.events.len() + 1);
    for e in batch.events {
        let Some(kind) = AuditKind::parse(&e.kind).filter(|k| k.reported_by_agents()) else {
            return Err(AuditRefusal::KindNotReportable(shown(&e.kind)).into());
        };
        let bounded = |s: String| s.chars().take(MAX_FIELD).collect::<String>();
        if !e.audience.is_empty() && e.audience != agent.as_str() {
            return Err(AuditRefusal::NotAddressedToReporter(shown(&e.audience)).into());
        }
        events.push(AuditEvent {
            // An agent's clock is only believed within a minute of ours.
            time_ms: e
                .time_ms
                .filter(|t| (t - now).abs() < 60_000)
                .unwrap_or(now),
            kind,
            actor: agent.to_string(),
            subject: bounded(e.subject),
            audience: agent.to_string(),
            scope: bounded(e.scope),
            decision: e.decision,
            reason: bounded(e.reason),
            request_id: bounded(e.request_id),
            txn: bounded(e.txn),
            chain: bounded(e.chain),
            purpose: bounded(e.purpose),
            reported: true,
        });
    }
    if batch.dropped > 0 {
        let mut dropped = event(AuditKind::AuditDropped, agent, agent, Decision::Deny);
        dropped.reason = format!("the agent's audit buffer dropped {} events", batch.dropped);
        dropped.reported = true;
        events.push(dropped);
    }
    let accepted = events.len() as u64;
    s.store.append_audit(&events).await?;
    Ok(BatchAccepted { accepted })
}

/// Verifies an access token addressed to the authority and returns its agent.
pub(crate) async fn authenticate_agent(
    s: &AppState,
    req: &RawRequest,
    needs: &'static str,
) -> Result<SpiffeId, AuthorityError> {
    let (claims, _) = authenticated_agent(s, req, needs).await?;
    Ok(claims.client_id)
}

/// Verifies an access token addressed to the authority (signature, issuer,
/// audience, lifetime, revocation), that its agent is usable (active, not
/// expired) and that its scope holds `needs`; returns the claims and the
/// agent's registry entry.
pub(crate) async fn authenticated_agent(
    s: &AppState,
    req: &RawRequest,
    needs: &'static str,
) -> Result<(AccessClaims, AgentRow), AuthorityError> {
    let token = presented_token(&req.parts.headers)
        .ok_or(AuthorityError::MissingCredential(Needed::AgentToken))?;
    // The same proof of possession every agent demands: a token bound to a
    // key is worthless here too without that key.
    let proof = RequestProof {
        parts: &req.parts,
        body: &req.body,
        origin: Some(&s.issuer),
        nonces: &s.nonces,
        tls_certificate: req
            .parts
            .extensions
            .get::<crate::tls::ClientCertificate>()
            .map(|c| c.leaf.as_slice()),
    };
    let claims = standing::check(s, token, Door::Api(proof))
        .await
        .map_err(|e| match e {
            Rejection::View(e) => e,
            Rejection::Token(e) => ApiTokenRefusal::Token(e).into(),
            Rejection::Proof(e) => ApiTokenRefusal::Proof(e).into(),
            Rejection::Revoked(e) => ApiTokenRefusal::Revoked(e).into(),
        })?;
    let agent = registry::agent_by_id(s, &claims.client_id)
        .await?
        .ok_or(ApiTokenRefusal::AgentDeleted)?;
    if !claims.scope.contains(needs) {
        return Err(ApiTokenRefusal::LacksPermission(needs).into());
    }
    Ok((claims, agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_filter_must_name_a_kind_agentauth_writes() {
        assert_eq!(known_kind("token.issued").unwrap(), AuditKind::TokenIssued);
        let long = "x".repeat(200);
        for unknown in ["token.minted", "", "TOKEN.ISSUED", long.as_str()] {
            let shown_name = match known_kind(unknown) {
                Err(AuditRefusal::UnknownKind(name)) => name,
                other => panic!("{unknown}: {other:?}"),
            };
            assert!(shown_name.len() <= 64, "the name is bounded in the answer");
        }
    }

    #[test]
    fn a_token_refusal_keeps_its_typed_cause_and_a_missing_permission_is_forbidden() {
        let revoked = ApiTokenRefusal::Revoked(Revoked::Token);
        assert_eq!(revoked.to_string(), Revoked::Token.to_string());
        let (status, code) = AuthorityError::from(revoked).status_and_code();
        assert_eq!((status.as_u16(), code), (401, "invalid_token"));
        let (status, _) =
            AuthorityError::from(ApiTokenRefusal::LacksPermission(AUDIT_WRITE)).status_and_code();
        assert_eq!(status.as_u16(), 403);
    }
}
