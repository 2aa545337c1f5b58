//! Human approval of high-risk token requests.
//!
//! When a permit policy that decides a request says `@approval("required")`,
//! the token endpoint answers `authorization_pending` with an `approval_id`
//! (the polling shape of RFC 8628 §3.5 and CIBA). The agent repeats the same
//! token request with `approval_id` at most every `interval` seconds
//! (`slow_down` otherwise) until a person approves (the token is issued),
//! denies (`access_denied`) or the approval expires (`expired_token`).
//!
//! An approval is bound to exactly one request: agent, subject, audience,
//! scope, task, purpose, request context, lifetime and grant type, all shown
//! to the person deciding. Presenting it with anything else is
//! `invalid_grant`, and the token issued under it consumes it in the same
//! transaction.
//!
//! People decide under their own operator credential: the name recorded is
//! the credential's, and an approval that a policy reserves for a group
//! (`@approvers("finance")`) can only be decided by an operator in it.

use agentauth_api::{ApprovalList, ApprovalQuery, ApprovalState, ApprovalVerdict, ApprovalView};
use agentauth_core::AuditKind;
use agentauth_core::{Decision, Scope, SpiffeId, TaskId, random_b64, unix_now};
use agentauth_store::{ApprovalDecision, ApprovalRequest, ApprovalRow, ApprovalStatus};
use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;

use crate::AuthorityError;
use crate::audit::{event, request_id};
use crate::body::{JsonBody, QueryParams};
use crate::error::Missing;
use crate::operator::Principal;
use crate::policy::NeedsApproval;
use crate::server::{AppState, State as AuthorityState};

/// Longest reason.
const MAX_TEXT: usize = 512;
/// Most requests one agent, with every agent it spawned, may have waiting
/// for a person at once.
pub(crate) const MAX_PENDING_PER_AGENT: i64 = 16;

/// Why an approval was refused to an agent, or a decision on one to the admin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalRefusal {
    /// The agent, with the agents of its lineage, already has
    /// [`MAX_PENDING_PER_AGENT`] requests waiting.
    #[error(
        "the agent and the agents it spawned (or that spawned it) already have {MAX_PENDING_PER_AGENT} requests waiting for approval; wait until they are decided or expire"
    )]
    TooManyPending,
    /// No approval of this agent has the presented `approval_id`.
    #[error("the approval_id is not known")]
    Unknown,
    /// The approval's token was issued already.
    #[error("the approval was already used: ask again for a new one")]
    AlreadyUsed,
    /// The request differs from the approved one in `field`.
    #[error("the approval was given for a different request: the {field} differs")]
    DifferentRequest {
        /// The first field that differs (subject, audience, scope, …).
        field: &'static str,
    },
    /// A person denied the request.
    #[error("{by} denied the request: {reason}")]
    Denied {
        /// Who decided.
        by: String,
        /// Why, in their words.
        reason: String,
    },
    /// Nobody decided in time, or the token was not collected in time.
    #[error("the approval expired {ago} seconds ago; ask again for a new one")]
    Expired {
        /// Seconds since it expired.
        ago: i64,
    },
    /// The `status` filter of a listing names no status.
    #[error("status must be pending, approved, denied, used or all")]
    StatusFilter,
    /// A decision's `by` names someone other than the credential's holder.
    #[error(
        "\"by\" names someone else: the decision is recorded under the credential's holder, \"{holder}\""
    )]
    DeciderMismatch {
        /// Whose credential was presented.
        holder: String,
    },
    /// The policy reserves the decision for a group the decider is not in.
    #[error("only operators in the \"{group}\" group may decide this approval")]
    NotAnApprover {
        /// The `@approvers` group.
        group: String,
    },
    /// A decision's reason is too long.
    #[error("\"reason\" is longer than {MAX_TEXT} bytes")]
    ReasonTooLong,
    /// A denial without a reason.
    #[error("a denial needs a \"reason\"")]
    DenialWithoutReason,
}

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
    /// The `request_context` as sent ("" for none).
    pub(crate) request_context: &'a str,
    /// The lifetime asked for, in seconds, after the authority's cap.
    pub(crate) lifetime: i64,
    /// The agent's top-level ancestor (itself unless spawned).
    pub(crate) lineage: &'a SpiffeId,
}

/// The approval an agent presents with `approval_id`; one of another agent,
/// or none at all, is the same unknown approval.
pub(crate) async fn presented(
    s: &AuthorityState,
    id: &str,
    agent: &SpiffeId,
) -> Result<ApprovalRow, AuthorityError> {
    if id.is_empty() || id.len() > 64 {
        return Err(ApprovalRefusal::Unknown.into());
    }
    match s.store.approval(id).await? {
        Some(a) if a.agent == *agent => Ok(a),
        _ => Err(ApprovalRefusal::Unknown.into()),
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
            request_context: binding.request_context,
            lifetime: binding.lifetime,
        };
        if let Some(a) = s.store.pending_approval(&request, now).await? {
            return pending(s, &a, now).await;
        }
        if s.store.pending_approval_count(binding.lineage, now).await? >= MAX_PENDING_PER_AGENT {
            return Err(ApprovalRefusal::TooManyPending.into());
        }
        return create(s, binding, needs, request_id, now).await;
    };
    check_binding(a, binding)?;
    match a.status {
        ApprovalStatus::Denied => Err(ApprovalRefusal::Denied {
            by: a.decided_by.as_deref().unwrap_or("a person").to_owned(),
            reason: a.reason.as_deref().unwrap_or("no reason given").to_owned(),
        }
        .into()),
        ApprovalStatus::Used => Err(ApprovalRefusal::AlreadyUsed.into()),
        _ if a.expires_at <= now => Err(ApprovalRefusal::Expired {
            ago: now - a.expires_at,
        }
        .into()),
        ApprovalStatus::Pending => pending(s, a, now).await,
        ApprovalStatus::Approved => Ok(a.id.clone()),
    }
}

/// Every field of the request must be the one approved.
fn check_binding(a: &ApprovalRow, b: &Binding<'_>) -> Result<(), ApprovalRefusal> {
    let fields = [
        ("subject", a.subject == *b.subject),
        ("audience", a.audience == *b.audience),
        ("scope", a.scope == *b.scope),
        ("task (txn)", a.txn.as_ref() == b.txn),
        ("purpose", a.purpose == b.purpose),
        ("request context", a.request_context == b.request_context),
        ("lifetime (expires_in)", a.lifetime == b.lifetime),
        ("grant type", a.grant_type == b.grant_type),
    ];
    for (name, same) in fields {
        if !same {
            return Err(ApprovalRefusal::DifferentRequest { field: name });
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
        request_context: b.request_context.to_owned(),
        lifetime: b.lifetime,
        lineage: b.lineage.clone(),
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
        request_context: a.request_context.clone(),
        lifetime: a.lifetime,
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
    QueryParams(q): QueryParams<ApprovalQuery>,
) -> Result<Json<ApprovalList>, AuthorityError> {
    Ok(Json(approvals(&s, &q).await?))
}

/// Approvals with the status asked for (all by default), newest first.
pub(crate) async fn approvals(
    s: &AuthorityState,
    q: &ApprovalQuery,
) -> Result<ApprovalList, AuthorityError> {
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(raw) => Some(ApprovalStatus::parse(raw).ok_or(ApprovalRefusal::StatusFilter)?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let now = unix_now();
    let rows = s.store.approvals(status, limit).await?;
    Ok(ApprovalList {
        approvals: rows.iter().map(|a| view(a, now)).collect(),
    })
}

/// `GET /v1/approvals/{id}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, AuthorityError> {
    Ok(Json(approval(&s, &id).await?))
}

/// One approval as the admin sees it.
pub(crate) async fn approval(s: &AuthorityState, id: &str) -> Result<ApprovalView, AuthorityError> {
    let a = stored(s, id).await?;
    Ok(view(&a, unix_now()))
}

async fn stored(s: &AuthorityState, id: &str) -> Result<ApprovalRow, AuthorityError> {
    s.store
        .approval(id)
        .await?
        .ok_or_else(|| Missing::Approval(id.chars().take(80).collect()).into())
}

/// `POST /v1/approvals/{id}/approve` (the admin or an operator).
pub(crate) async fn approve(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(verdict): JsonBody<ApprovalVerdict>,
) -> Result<Json<ApprovalView>, AuthorityError> {
    let decided = decide(
        &s,
        &id,
        &by,
        &verdict,
        Verdict::Approve,
        &request_id(&headers),
    )
    .await?;
    Ok(Json(decided))
}

/// `POST /v1/approvals/{id}/deny` (the admin or an operator): a reason is required.
pub(crate) async fn deny(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(verdict): JsonBody<ApprovalVerdict>,
) -> Result<Json<ApprovalView>, AuthorityError> {
    let decided = decide(&s, &id, &by, &verdict, Verdict::Deny, &request_id(&headers)).await?;
    Ok(Json(decided))
}

/// What a person decides about an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The token may be issued.
    Approve,
    /// It may not; a reason is required.
    Deny,
}

/// The reason, trimmed, checked against the bound, the rule that a denial
/// gives a reason, and that a `by`, if given, names the credential's holder.
fn checked_verdict<'v>(
    v: &'v ApprovalVerdict,
    holder: &Principal,
    verdict: Verdict,
) -> Result<Option<&'v str>, ApprovalRefusal> {
    if let Some(by) = &v.by
        && by.trim() != holder.name()
    {
        return Err(ApprovalRefusal::DeciderMismatch {
            holder: holder.name().to_owned(),
        });
    }
    let reason = v.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.len() > MAX_TEXT) {
        return Err(ApprovalRefusal::ReasonTooLong);
    }
    if verdict == Verdict::Deny && reason.is_none() {
        return Err(ApprovalRefusal::DenialWithoutReason);
    }
    Ok(reason)
}

/// An approval reserved for a group is decided only by an operator in it.
fn may_decide(a: &ApprovalRow, who: &Principal) -> Result<(), ApprovalRefusal> {
    match &a.approvers {
        Some(group) if !who.in_group(group) => Err(ApprovalRefusal::NotAnApprover {
            group: group.clone(),
        }),
        _ => Ok(()),
    }
}

/// Records a person's decision on a pending approval, with its audit record.
pub(crate) async fn decide(
    s: &AuthorityState,
    id: &str,
    who: &Principal,
    v: &ApprovalVerdict,
    verdict: Verdict,
    request_id: &str,
) -> Result<ApprovalView, AuthorityError> {
    let reason = checked_verdict(v, who, verdict)?;
    let existing = stored(s, id).await?;
    may_decide(&existing, who)?;
    let by = who.name();
    let now = unix_now();
    let (status, kind, decision) = match verdict {
        Verdict::Approve => (
            ApprovalStatus::Approved,
            AuditKind::ApprovalApproved,
            Decision::Allow,
        ),
        Verdict::Deny => (
            ApprovalStatus::Denied,
            AuditKind::ApprovalDenied,
            Decision::Deny,
        ),
    };
    let mut audit = event(kind, &who.actor(), id, decision);
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
    audit.reason = format!(
        "{}; request context {}; lifetime {} s",
        audit.reason,
        if existing.request_context.is_empty() {
            "none"
        } else {
            existing.request_context.as_str()
        },
        existing.lifetime
    );
    audit.request_id = request_id.to_owned();
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
    Ok(view(&decided, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(by: Option<&str>, reason: Option<&str>) -> ApprovalVerdict {
        ApprovalVerdict {
            by: by.map(Into::into),
            reason: reason.map(Into::into),
        }
    }

    fn alice(groups: &[&str]) -> Principal {
        Principal::Operator {
            name: "alice".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn a_decision_is_its_credential_holders_and_a_denial_gives_a_reason() {
        let me = alice(&[]);
        let ok = verdict(Some(" alice "), Some(" fine "));
        assert_eq!(
            checked_verdict(&ok, &me, Verdict::Approve).unwrap(),
            Some("fine")
        );
        assert_eq!(
            checked_verdict(&verdict(None, None), &me, Verdict::Approve).unwrap(),
            None
        );
        let cases = [
            (verdict(Some("bob"), None), Verdict::Approve, "holder"),
            (verdict(Some("admin"), None), Verdict::Approve, "holder"),
            (
                verdict(None, Some(&"r".repeat(MAX_TEXT + 1))),
                Verdict::Approve,
                "reason",
            ),
            (verdict(None, Some("   ")), Verdict::Deny, "denial"),
        ];
        for (v, verdict, rule) in cases {
            let got = checked_verdict(&v, &me, verdict).unwrap_err();
            let matched = match rule {
                "holder" => {
                    matches!(&got, ApprovalRefusal::DeciderMismatch { holder } if holder == "alice")
                }
                "reason" => matches!(got, ApprovalRefusal::ReasonTooLong),
                _ => matches!(got, ApprovalRefusal::DenialWithoutReason),
            };
            assert!(matched, "{rule}: {got:?}");
        }
    }

    #[test]
    fn approval_refusals_map_to_the_polling_codes() {
        let code = |r: ApprovalRefusal| AuthorityError::from(r).status_and_code().1;
        assert_eq!(code(ApprovalRefusal::Unknown), "invalid_grant");
        assert_eq!(code(ApprovalRefusal::AlreadyUsed), "invalid_grant");
        assert_eq!(
            code(ApprovalRefusal::DifferentRequest { field: "scope" }),
            "invalid_grant"
        );
        let denied = ApprovalRefusal::Denied {
            by: "bob".into(),
            reason: "no".into(),
        };
        assert_eq!(code(denied), "access_denied");
        assert_eq!(code(ApprovalRefusal::Expired { ago: 3 }), "expired_token");
        assert_eq!(code(ApprovalRefusal::TooManyPending), "invalid_request");
        let (status, code) = AuthorityError::from(ApprovalRefusal::NotAnApprover {
            group: "finance".into(),
        })
        .status_and_code();
        assert_eq!((status.as_u16(), code), (403, "not_an_approver"));
    }
}
