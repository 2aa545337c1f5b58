//! Tasks: the `txn` every token of one piece of work carries. Read a task's
//! hops in order, complete it (which revokes it), and revoke agents, tokens
//! and tasks by hand.

use agentauth_api::{
    RevocationReceipt, RevocationRequest, RevocationTarget, TaskCompletion, TaskView,
};
use agentauth_core::AuditKind;
use agentauth_core::{Decision, unix_now};
use agentauth_store::{AgentStatus, AgentUpdate};
use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;

use crate::admin::bearer;
use crate::audit::{authenticate_agent, event, request_id};
use crate::body::{JsonBody, RawRequest};
use crate::server::{AppState, State as AuthorityState};
use crate::{AuthorityError, registry};

/// The implicit authority scope an agent needs to complete a task.
pub(crate) const TASKS_COMPLETE: &str = "tasks:complete";

/// `GET /v1/tasks/{txn}`: the task's audit records (every hop) in order (admin).
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(txn): Path<String>,
) -> Result<Json<TaskView>, AuthorityError> {
    let hops = s.store.task_records(&txn).await?;
    if hops.is_empty() && !s.store.task_exists(&txn).await? {
        return Err(AuthorityError::NotFound(format!(
            "task \"{}\" was not found",
            short(&txn)
        )));
    }
    let revoked = s.store.task_revoked(&txn).await?;
    Ok(Json(TaskView { txn, revoked, hops }))
}

/// `POST /v1/tasks/{txn}/complete`: the work is done; every token of the task
/// stops working. The admin, or the agent that started the task (with a token
/// for the authority carrying `tasks:complete`), may complete it.
pub(crate) async fn complete(
    State(s): State<AppState>,
    Path(txn): Path<String>,
    req: RawRequest,
) -> Result<Json<TaskCompletion>, AuthorityError> {
    let headers = &req.parts.headers;
    let actor = match bearer(headers) {
        Some(token) if s.admin.matches(token) => "admin".to_owned(),
        _ => {
            let agent = authenticate_agent(&s, &req, TASKS_COMPLETE).await?;
            let started = s
                .store
                .task_records(&txn)
                .await?
                .iter()
                .any(|r| r.event.kind == AuditKind::TokenIssued && r.event.actor == agent);
            if !started {
                return Err(AuthorityError::Forbidden(format!(
                    "{agent} did not start task \"{}\"",
                    short(&txn)
                )));
            }
            agent
        }
    };
    revoke_task(
        &s,
        &txn,
        &actor,
        AuditKind::TaskCompleted,
        &request_id(headers),
    )
    .await?;
    Ok(Json(TaskCompletion { txn, revoked: true }))
}

async fn revoke_task(
    s: &AuthorityState,
    txn: &str,
    actor: &str,
    kind: AuditKind,
    request: &str,
) -> Result<(), AuthorityError> {
    if !s.store.task_exists(txn).await? {
        return Err(AuthorityError::NotFound(format!(
            "task \"{}\" was not found",
            short(txn)
        )));
    }
    let mut audit = event(kind, actor, txn, Decision::Allow);
    audit.txn = txn.to_owned();
    audit.request_id = request.to_owned();
    // Every token of the task expires within the longest lifetime from now.
    let expires_at = unix_now() + s.config.max_token_lifetime_secs;
    s.store.revoke_task(txn, expires_at, &audit).await?;
    s.revocations_changed();
    Ok(())
}

/// `POST /v1/revocations`: revoke an agent (disables it), a token (and every
/// token exchanged from it), a task, or a key by thumbprint (admin).
pub(crate) async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody<RevocationRequest>, AuthorityError>,
) -> Result<Json<RevocationReceipt>, AuthorityError> {
    let JsonBody(r) = body?;
    let request = request_id(&headers);
    match r.kind {
        RevocationTarget::Agent => {
            let id = registry::agent_id_or_raw(&s, &r.value);
            let agent = registry::agent_by_id(&s, &id).await?.ok_or_else(|| {
                AuthorityError::NotFound(format!("agent \"{}\" was not found", short(&r.value)))
            })?;
            let mut audit = event(AuditKind::AgentRevoked, "admin", &agent.id, Decision::Allow);
            audit.request_id = request;
            let update = AgentUpdate {
                status: Some(AgentStatus::Disabled),
                now: unix_now(),
                ..AgentUpdate::default()
            };
            s.store.update_agent(&agent.name, &update, &audit).await?;
            s.revocations_changed();
        }
        RevocationTarget::Token => {
            if r.value.is_empty() || r.value.len() > 256 {
                return Err(AuthorityError::InvalidRequest(
                    "a token ID is 1 to 256 characters".into(),
                ));
            }
            let mut audit = event(AuditKind::TokenRevoked, "admin", &r.value, Decision::Allow);
            audit.request_id = request;
            let expires_at = unix_now() + s.config.max_token_lifetime_secs;
            s.store.revoke_token(&r.value, expires_at, &audit).await?;
            s.revocations_changed();
        }
        RevocationTarget::Task => {
            revoke_task(&s, &r.value, "admin", AuditKind::TaskRevoked, &request).await?
        }
        RevocationTarget::Key => {
            let is_jkt = r.value.len() == 43
                && r.value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !is_jkt {
                return Err(AuthorityError::InvalidRequest(
                    "a key is named by its RFC 7638 SHA-256 thumbprint (43 base64url characters)"
                        .into(),
                ));
            }
            let mut audit = event(AuditKind::KeyRevoked, "admin", &r.value, Decision::Allow);
            audit.request_id = request;
            s.store.revoke_key(&r.value, &audit).await?;
            s.revocations_changed();
        }
    }
    Ok(Json(RevocationReceipt {
        revoked: r.kind,
        value: r.value,
    }))
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}
