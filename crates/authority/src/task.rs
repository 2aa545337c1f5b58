//! Tasks: the `txn` every token of one piece of work carries. Read a task's
//! hops in order, complete it (which revokes it), and revoke agents, tokens
//! and tasks by hand.

use agentauth_api::{
    RevocationReceipt, RevocationRequest, RevocationTarget, TaskCompletion, TaskView,
};
use agentauth_core::AuditKind;
use agentauth_core::{Decision, Jkt, SpiffeId, TaskId, unix_now};
use agentauth_store::{AgentStatus, AgentUpdate};
use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;

use crate::audit::{authenticate_agent, event, request_id};
use crate::body::{JsonBody, RawRequest};
use crate::error::Missing;
use crate::operator::Principal;
use crate::revocation::RevocationRefusal;
use crate::server::{AppState, State as AuthorityState};
use crate::{AuthorityError, registry};

/// The implicit authority scope an agent needs to complete a task.
pub(crate) const TASKS_COMPLETE: &str = "tasks:complete";

/// Why a task operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskRefusal {
    /// An agent tried to complete a task it did not start.
    #[error("{agent} did not start task \"{txn}\"")]
    NotStarter {
        /// The agent that asked.
        agent: String,
        /// The task, bounded for display.
        txn: String,
    },
    /// A client_credentials request named a task another agent started:
    /// other agents join a task only by token exchange.
    #[error(
        "task \"{txn}\" was started by another agent: an agent joins another's task only by token exchange"
    )]
    StartedByAnother {
        /// The task, bounded for display.
        txn: String,
    },
}

/// `GET /v1/tasks/{txn}`: the task's audit records (every hop) in order (admin).
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(txn): Path<String>,
) -> Result<Json<TaskView>, AuthorityError> {
    Ok(Json(task_view(&s, &txn).await?))
}

/// The task `txn`: whether it is revoked, and its audit records (every hop)
/// in chain order; a task no token ever carried is `not_found`.
pub(crate) async fn task_view(s: &AuthorityState, txn: &str) -> Result<TaskView, AuthorityError> {
    let id = task_id(txn)?;
    let hops = s.store.task_records(&id).await?;
    if hops.is_empty() && !s.store.task_exists(&id).await? {
        return Err(Missing::Task(short(txn)).into());
    }
    let revoked = s.store.task_revoked(&id).await?;
    Ok(TaskView {
        txn: txn.to_owned(),
        revoked,
        hops,
    })
}

/// Who completes a task.
pub(crate) enum Completer {
    /// The admin, or an operator with the admin's rights.
    Admin(Principal),
    /// An agent, by SPIFFE ID, authenticated with a token for the authority.
    Agent(SpiffeId),
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
    let by = match s.admin.admits(headers) {
        Some(who) => Completer::Admin(who),
        None => Completer::Agent(authenticate_agent(&s, &req, TASKS_COMPLETE).await?),
    };
    complete_task(&s, &task_id(&txn)?, by, &request_id(headers)).await?;
    Ok(Json(TaskCompletion { txn, revoked: true }))
}

/// Completes (revokes) a task; an agent may complete only a task it owns
/// (started with a client_credentials token).
pub(crate) async fn complete_task(
    s: &AuthorityState,
    txn: &TaskId,
    by: Completer,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let actor = match by {
        Completer::Admin(who) => who.actor(),
        Completer::Agent(agent) => {
            if s.store.task_owner(txn).await?.as_ref() != Some(&agent) {
                return Err(TaskRefusal::NotStarter {
                    agent: agent.to_string(),
                    txn: txn.to_string(),
                }
                .into());
            }
            agent.to_string()
        }
    };
    revoke_task(s, txn, &actor, AuditKind::TaskCompleted, request_id).await
}

async fn revoke_task(
    s: &AuthorityState,
    txn: &TaskId,
    actor: &str,
    kind: AuditKind,
    request: &str,
) -> Result<(), AuthorityError> {
    if !s.store.task_exists(txn).await? {
        return Err(Missing::Task(txn.to_string()).into());
    }
    let mut audit = event(kind, actor, txn, Decision::Allow);
    audit.txn = txn.to_string();
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
    by: Principal,
    headers: HeaderMap,
    body: Result<JsonBody<RevocationRequest>, AuthorityError>,
) -> Result<Json<RevocationReceipt>, AuthorityError> {
    let JsonBody(r) = body?;
    revoke_target(&s, r.kind, &r.value, &by, &request_id(&headers)).await?;
    Ok(Json(RevocationReceipt {
        revoked: r.kind,
        value: r.value,
    }))
}

/// The admin's revocation of one agent, token, task or key, named by `value`.
pub(crate) async fn revoke_target(
    s: &AuthorityState,
    kind: RevocationTarget,
    value: &str,
    by: &Principal,
    request_id: &str,
) -> Result<(), AuthorityError> {
    match kind {
        RevocationTarget::Agent => revoke_agent(s, value, by, request_id).await,
        RevocationTarget::Token => revoke_token(s, value, by, request_id).await,
        RevocationTarget::Task => {
            let txn = task_id(value)?;
            revoke_task(s, &txn, &by.actor(), AuditKind::TaskRevoked, request_id).await
        }
        RevocationTarget::Key => revoke_key(s, value, by, request_id).await,
    }
}

/// Disables an agent (by name or SPIFFE ID) and publishes its revocation.
pub(crate) async fn revoke_agent(
    s: &AuthorityState,
    given: &str,
    by: &Principal,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let agent = registry::registered(s, given).await?;
    let mut audit = event(
        AuditKind::AgentRevoked,
        &by.actor(),
        &agent.id,
        Decision::Allow,
    );
    audit.request_id = request_id.to_owned();
    let update = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: unix_now(),
        ..AgentUpdate::default()
    };
    s.store.update_agent(&agent.name, &update, &audit).await?;
    s.revocations_changed();
    Ok(())
}

/// Revokes a token ID and every token exchanged from it.
pub(crate) async fn revoke_token(
    s: &AuthorityState,
    jti: &str,
    by: &Principal,
    request_id: &str,
) -> Result<(), AuthorityError> {
    if jti.is_empty() || jti.len() > 256 {
        return Err(RevocationRefusal::TokenIdLength.into());
    }
    let mut audit = event(AuditKind::TokenRevoked, &by.actor(), jti, Decision::Allow);
    audit.request_id = request_id.to_owned();
    let expires_at = unix_now() + s.config.max_token_lifetime_secs;
    s.store.revoke_token(jti, expires_at, &audit).await?;
    s.revocations_changed();
    Ok(())
}

/// Revokes a key, named by its RFC 7638 thumbprint, for good.
pub(crate) async fn revoke_key(
    s: &AuthorityState,
    jkt: &str,
    by: &Principal,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let is_jkt = jkt.len() == 43
        && jkt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !is_jkt {
        return Err(RevocationRefusal::NotAThumbprint.into());
    }
    let mut audit = event(AuditKind::KeyRevoked, &by.actor(), jkt, Decision::Allow);
    audit.request_id = request_id.to_owned();
    s.store.revoke_key(&Jkt(jkt.to_owned()), &audit).await?;
    s.revocations_changed();
    Ok(())
}

/// A task ID from a path or request; one that is malformed names no task.
fn task_id(given: &str) -> Result<TaskId, AuthorityError> {
    TaskId::new(given).map_err(|_| Missing::Task(short(given)).into())
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}
