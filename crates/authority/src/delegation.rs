//! Delegation grants (`/v1/agents/{name}/delegations`): which agent may pass
//! which permissions on to which other agent by token exchange. Admin only.

use agentauth_api::{Delegation, DelegationList, NewDelegation};
use agentauth_core::AuditKind;
use agentauth_core::{AgentName, Decision, Scope, SpiffeId, unix_now};
use agentauth_store::DelegationRow;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use crate::AuthorityError;
use crate::audit::{event, request_id};
use crate::body::JsonBody;
use crate::server::{AppState, State as AuthorityState};

fn view(grant: &DelegationRow) -> Delegation {
    Delegation {
        from: grant.from.clone(),
        to: grant.to.clone(),
        permissions: grant.permissions.clone(),
        created_at: grant.created_at,
    }
}

/// The registered agent named (by name or SPIFFE ID) `given`.
async fn registered(
    s: &AuthorityState,
    given: &str,
) -> Result<agentauth_store::AgentRow, AuthorityError> {
    let name = match SpiffeId::parse(given) {
        Ok(id) if id.is_in(&s.trust_domain) => id.agent_name(),
        Ok(_) => None,
        Err(_) => AgentName::new(given).ok(),
    };
    let not_found = || {
        AuthorityError::NotFound(format!(
            "agent \"{}\" was not found",
            given.chars().take(80).collect::<String>()
        ))
    };
    let name = name.ok_or_else(not_found)?;
    s.store.agent(name.as_str()).await?.ok_or_else(not_found)
}

/// `POST /v1/agents/{name}/delegations`: lets `name` delegate `permissions`
/// (which it must hold) to `to`; replaces an earlier grant between the two.
pub(crate) async fn grant(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<JsonBody<NewDelegation>, AuthorityError>,
) -> Result<Response, AuthorityError> {
    let JsonBody(new) = body?;
    let from = registered(&s, &name).await?;
    let to = registered(&s, &new.to).await?;
    if from.id == to.id {
        return Err(AuthorityError::InvalidRequest(
            "an agent cannot delegate to itself".into(),
        ));
    }
    let asked = Scope::from_strs(new.permissions.iter().map(String::as_str))
        .map_err(|e| AuthorityError::InvalidRequest(format!("permissions: {e}")))?;
    if asked.is_empty() {
        return Err(AuthorityError::InvalidRequest(
            "a grant needs at least one permission".into(),
        ));
    }
    let held = Scope::from_strs(from.permissions.iter().map(String::as_str))
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    if let Some(missing) = asked.missing_from(&held).into_iter().next() {
        return Err(AuthorityError::InvalidRequest(format!(
            "{} does not hold \"{missing}\" and so cannot delegate it",
            from.name
        )));
    }
    let grant = DelegationRow {
        from: from.id.clone(),
        to: to.id.clone(),
        permissions: asked.to_vec(),
        created_at: unix_now(),
    };
    let mut audit = event(
        AuditKind::DelegationGranted,
        "admin",
        &from.id,
        Decision::Allow,
    );
    audit.audience = to.id.clone();
    audit.scope = asked.to_string();
    audit.request_id = request_id(&headers);
    s.store.put_delegation(&grant, &audit).await?;
    Ok((StatusCode::CREATED, Json(view(&grant))).into_response())
}

/// `GET /v1/agents/{name}/delegations`.
pub(crate) async fn list(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DelegationList>, AuthorityError> {
    let from = registered(&s, &name).await?;
    let delegations = s
        .store
        .delegations(&from.id)
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(Json(DelegationList { delegations }))
}

/// `DELETE /v1/agents/{name}/delegations/{to}`.
pub(crate) async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((name, to)): Path<(String, String)>,
) -> Result<StatusCode, AuthorityError> {
    let from = registered(&s, &name).await?;
    let to = registered(&s, &to).await?;
    let mut audit = event(
        AuditKind::DelegationRevoked,
        "admin",
        &from.id,
        Decision::Allow,
    );
    audit.audience = to.id.clone();
    audit.request_id = request_id(&headers);
    s.store.delete_delegation(&from.id, &to.id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
