//! Human approval of high-risk token requests.
//!
//! When a permit policy that decides a request says `@approval("required")`,
//! the token endpoint answers `authorization_pending` with an `approval_id`
//! (the polling shape of RFC 8628 §3.5 and CIBA). The agent repeats the same
//! token request with `approval_id` at most every `interval` seconds
//! (`slow_down` otherwise) until a person approves (the token is issued),
//! denies (`access_denied`) or the approval expires (`expired_token`).
//!
//! An approval is bound to exactly one request: agent, audience, scope, task,
//! purpose and grant type. Presenting it with anything else is `invalid_grant`,
//! and the token issued under it consumes it in the same transaction.

use agentauth_api::{ApprovalList, ApprovalQuery, ApprovalState, ApprovalVerdict, ApprovalView};
use agentauth_core::AuditKind;
use agentauth_core::{Decision, Scope, SpiffeId, TaskId, random_b64, unix_now};
use agentauth_store::{ApprovalDecision, ApprovalRequest, ApprovalRow, ApprovalStatus};
use axum::Json;
use axum::extract::{Path, Query, State};
use http::HeaderMap;

use crate::AuthorityError;
use crate::audit::{event, request_id};
use crate::body::JsonBody;
use crate::policy::NeedsApproval;
use crate::server::{AppState, State as AuthorityState};

/// Longest approver name or reason.
const MAX_TEXT: usize = 512;
/// Most requests one agent may have waiting for a person at once.
pub(crate) const MAX_PENDING_PER_AGENT: i64 = 16;

/// The request an approval is for.
#[derive(Debug)]
pub(crate) struct Binding<'a> {
    pub(crate) agent: &'a SpiffeId,
    /// On whose behalf: for an exchange, whose authority is passed on.
    pub(crate) subject: &'a SpiffeId,
    pub(crate) audience: &'a SpiffeId,
    pub(crate) scope: &'a Scope,
    pub(crate) txn: Option<&'a TaskId>,
    pub(crate) purpose: &'a str,
    pub(crate) grant_type: &'a str,
}

/// The approval an agent presents with `approval_id`; one of another agent,
/// or none at all, is the same unknown approval.
pub(crate) async fn presented(
    s: &AuthorityState,
    id: &str,
    agent: &SpiffeId,
) -> Result<ApprovalRow, AuthorityError> {
    let unknown = || AuthorityError::InvalidGrant("the approval_id is not known".into());
    if id.is_empty() || id.len() > 64 {
        return Err(unknown());
    }
    match s.store.approval(id).await? {
        Some(a) if a.agent == *agent => Ok(a),
        _ => Err(unknown()),
    }
}

/// Decides what a request that needs approval gets now: the ID of an approved
/// approval to consume, or an error that tells the agent to wait, slow down,
/// give up or stop.
pub(crate) async fn settle(
    s: &AuthorityState,
    presented: Option<&ApprovalRow>,
    binding: &Binding<'_>,
    explicit_txn: bool,
    needs: &NeedsApproval,
    request_id: &str,
) -> Result<String, AuthorityError> {
    let now = unix_now();
    let Some(a) = presented else {
        let request = ApprovalRequest {
            agent: binding.agent,
            subject: binding.subject,
            audience: binding.audience,
            scope: binding.scope,
            purpose: binding.purpose,
            grant_type: binding.grant_type,
            txn: binding.txn.filter(|_| explicit_txn),
        };
        if let Some(a) = s.store.pending_approval(&request, now).await? {
            return pending(s, &a, now).await;
        }
        if s.store.pending_approval_count(binding.agent, now).await? >= MAX_PENDING_PER_AGENT {
            return Err(AuthorityError::InvalidRequest(format!(
                "the agent already has {MAX_PENDING_PER_AGENT} requests waiting for approval; wait until they are decided or expire"
            )));
        }
        return create(s, binding, needs, request_id, now).await;
    };
    check_binding(a, binding)?;
    match a.status {
        ApprovalStatus::Denied => Err(AuthorityError::AccessDenied(format!(
            "{} denied the request: {}",
            a.decided_by.as_deref().unwrap_or("a person"),
            a.reason.as_deref().unwrap_or("no reason given")
        ))),
        ApprovalStatus::Used => Err(AuthorityError::InvalidGrant(
            "the approval was already used: ask again for a new one".into(),
        )),
        _ if a.expires_at <= now => Err(AuthorityError::ExpiredToken(format!(
            "the approval expired {} seconds ago; ask again for a new one",
            now - a.expires_at
        ))),
        ApprovalStatus::Pending => pending(s, a, now).await,
        ApprovalStatus::Approved => Ok(a.id.clone()),
    }
}

/// Every field of the request must be the one approved.
fn check_binding(a: &ApprovalRow, b: &Binding<'_>) -> Result<(), AuthorityError> {
    let fields = [
        ("subject", a.subject == *b.subject),
        ("audience", a.audience == *b.audience),
        ("scope", a.scope == *b.scope),
        ("task (txn)", a.txn.as_ref() == b.txn),
        ("purpose", a.purpose == b.purpose),
        ("grant type", a.grant_type == b.grant_type),
    ];
    for (name, same) in fields {
        if !same {
            return Err(AuthorityError::InvalidGrant(format!(
                "the approval was given for a different request: the {name} differs"
            )));
        }
    }
    Ok(())
}

/// A poll of a pending approval: too soon is `slow_down`, else still pending.
async fn pending(s: &AuthorityState, a: &ApprovalRow, now: i64) -> Result<String, AuthorityError> {
    let interval = s.config.approval_interval_secs;
    if !s.store.poll_approval(&a.id, now, interval).await? {
        return Err(AuthorityError::SlowDown { interval });
    }
    Err(AuthorityError::AuthorizationPending {
        approval_id: a.id.clone(),
        interval,
        expires_in: a.expires_at - now,
    })
}

async fn create(
    s: &AuthorityState,
    b: &Binding<'_>,
    needs: &NeedsApproval,
    request_id: &str,
    now: i64,
) -> Result<String, AuthorityError> {
    let approval = ApprovalRow {
        id: format!("apr-{}", random_b64(18)),
        agent: b.agent.clone(),
        subject: b.subject.clone(),
        audience: b.audience.clone(),
        scope: b.scope.clone(),
        txn: b.txn.cloned(),
        purpose: b.purpose.to_owned(),
        grant_type: b.grant_type.to_owned(),
        policies: needs.policies.join(" "),
        approvers: needs.approvers.clone(),
        status: ApprovalStatus::Pending,
        created_at: now,
        expires_at: now + s.config.approval_ttl_secs,
        last_poll_at: now,
        decided_by: None,
        decided_at: None,
        reason: None,
    };
    let mut audit = event(
        AuditKind::ApprovalRequested,
        b.agent,
        &approval.id,
        Decision::Deny,
    );
    audit.audience = b.audience.to_string();
    audit.scope = b.scope.to_string();
    audit.txn = b.txn.map(ToString::to_string).unwrap_or_default();
    audit.purpose = b.purpose.to_owned();
    audit.reason = format!(
        "waiting for approval{} required by policy {}",
        needs
            .approvers
            .as_deref()
            .map(|g| format!(" by {g}"))
            .unwrap_or_default(),
        approval.policies
    );
    audit.request_id = request_id.to_owned();
    s.store.create_approval(&approval, &audit).await?;
    tracing::info!(approval = %approval.id, agent = %b.agent, scope = %b.scope, "token request waits for approval");
    Err(AuthorityError::AuthorizationPending {
        approval_id: approval.id,
        interval: s.config.approval_interval_secs,
        expires_in: s.config.approval_ttl_secs,
    })
}

// ---- The admin API ----

/// The API's view of an approval; past its expiry a pending or unused one
/// shows as `expired`.
fn view(a: &ApprovalRow, now: i64) -> ApprovalView {
    let status = match a.status {
        ApprovalStatus::Pending | ApprovalStatus::Approved if a.expires_at <= now => {
            ApprovalState::Expired
        }
        ApprovalStatus::Pending => ApprovalState::Pending,
        ApprovalStatus::Approved => ApprovalState::Approved,
        ApprovalStatus::Denied => ApprovalState::Denied,
        ApprovalStatus::Used => ApprovalState::Used,
    };
    ApprovalView {
        id: a.id.clone(),
        status,
        agent: a.agent.to_string(),
        subject: a.subject.to_string(),
        audience: a.audience.to_string(),
        scope: a.scope.to_string(),
        txn: a.txn.as_ref().map(ToString::to_string).unwrap_or_default(),
        purpose: a.purpose.clone(),
        grant_type: a.grant_type.clone(),
        policies: a
            .policies
            .split(' ')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        approvers: a.approvers.clone(),
        created_at: a.created_at,
        expires_at: a.expires_at,
        decided_by: a.decided_by.clone(),
        decided_at: a.decided_at,
        reason: a.reason.clone(),
    }
}

/// `GET /v1/approvals[?status=pending|approved|denied|used]`, newest first.
pub(crate) async fn list(
    State(s): State<AppState>,
    query: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ApprovalList>, AuthorityError> {
    let Query(q) = query.map_err(|e| AuthorityError::InvalidRequest(e.body_text()))?;
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(raw) => Some(ApprovalStatus::parse(raw).ok_or_else(|| {
            AuthorityError::InvalidRequest(
                "status must be pending, approved, denied, used or all".into(),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let now = unix_now();
    let rows = s.store.approvals(status, limit).await?;
    Ok(Json(ApprovalList {
        approvals: rows.iter().map(|a| view(a, now)).collect(),
    }))
}

/// `GET /v1/approvals/{id}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, AuthorityError> {
    let a = s
        .store
        .approval(&id)
        .await?
        .ok_or_else(|| AuthorityError::NotFound(format!("approval {id} was not found")))?;
    Ok(Json(view(&a, unix_now())))
}

/// `POST /v1/approvals/{id}/approve`.
pub(crate) async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody<ApprovalVerdict>, AuthorityError>,
) -> Result<Json<ApprovalView>, AuthorityError> {
    decide(&s, &headers, &id, body, ApprovalStatus::Approved).await
}

/// `POST /v1/approvals/{id}/deny`: a reason is required.
pub(crate) async fn deny(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody<ApprovalVerdict>, AuthorityError>,
) -> Result<Json<ApprovalView>, AuthorityError> {
    decide(&s, &headers, &id, body, ApprovalStatus::Denied).await
}

async fn decide(
    s: &AuthorityState,
    headers: &HeaderMap,
    id: &str,
    body: Result<JsonBody<ApprovalVerdict>, AuthorityError>,
    status: ApprovalStatus,
) -> Result<Json<ApprovalView>, AuthorityError> {
    let JsonBody(verdict) = body?;
    let by = verdict.by.trim();
    if by.is_empty() || by.len() > MAX_TEXT {
        return Err(AuthorityError::InvalidRequest(format!(
            "\"by\" must name the person deciding (1 to {MAX_TEXT} bytes)"
        )));
    }
    let reason = verdict
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.len() > MAX_TEXT) {
        return Err(AuthorityError::InvalidRequest(format!(
            "\"reason\" is longer than {MAX_TEXT} bytes"
        )));
    }
    if status == ApprovalStatus::Denied && reason.is_none() {
        return Err(AuthorityError::InvalidRequest(
            "a denial needs a \"reason\"".into(),
        ));
    }
    let existing = s
        .store
        .approval(id)
        .await?
        .ok_or_else(|| AuthorityError::NotFound(format!("approval {id} was not found")))?;
    let now = unix_now();
    let (kind, decision) = match status {
        ApprovalStatus::Approved => (AuditKind::ApprovalApproved, Decision::Allow),
        _ => (AuditKind::ApprovalDenied, Decision::Deny),
    };
    let mut audit = event(kind, &format!("admin:{by}"), id, decision);
    audit.audience = existing.audience.to_string();
    audit.scope = existing.scope.to_string();
    audit.txn = existing
        .txn
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    audit.purpose.clone_from(&existing.purpose);
    audit.chain = existing.agent.to_string();
    audit.reason = match reason {
        Some(r) => format!("{by}: {r}"),
        None => format!("{by}: approved"),
    };
    audit.request_id = request_id(headers);
    let decided = s
        .store
        .decide_approval(
            id,
            &ApprovalDecision {
                status,
                by: by.to_owned(),
                reason: reason.map(str::to_owned),
                now,
            },
            &audit,
        )
        .await?;
    tracing::info!(approval = %id, by, status = status.as_str(), "approval decided");
    Ok(Json(view(&decided, now)))
}
