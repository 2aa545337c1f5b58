//! The agent registry API (`/v1/agents`), admin credential required.

use agentauth_core::{AgentName, Decision, PublicJwk, Scope, SpiffeId, unix_now};
use agentauth_store::{AgentRow, AgentStatus, AgentUpdate};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AuthorityError;
use crate::audit::{event, request_id};
use crate::body::JsonBody;
use crate::server::{AppState, State as AuthorityState};

/// Longest description or owner string.
const MAX_TEXT: usize = 1024;

/// Body of `POST /v1/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAgent {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    permissions: Vec<String>,
    public_jwk: Value,
    /// Opt out of key-bound tokens (shown in the registry and audit).
    #[serde(default)]
    bearer_allowed: bool,
}

/// Body of `PATCH /v1/agents/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentPatch {
    permissions: Option<Vec<String>>,
    description: Option<String>,
    status: Option<AgentStatus>,
    bearer_allowed: Option<bool>,
}

/// The JSON view of a registry entry.
pub(crate) fn view(agent: &AgentRow) -> Value {
    let jkt = PublicJwk::from_json(&agent.public_jwk)
        .map(|k| k.thumbprint().0)
        .unwrap_or_default();
    json!({
        "name": agent.name,
        "id": agent.id,
        "client_id": agent.id,
        "description": agent.description,
        "owner": agent.owner,
        "permissions": agent.permissions,
        "public_jwk": agent.public_jwk,
        "jkt": jkt,
        "status": agent.status,
        "bearer_allowed": agent.bearer_allowed,
        "expires_at": agent.expires_at,
        "parent": agent.parent,
        "created_at": agent.created_at,
        "updated_at": agent.updated_at,
    })
}

fn bounded_text(field: &str, text: &str) -> Result<(), AuthorityError> {
    if text.len() > MAX_TEXT {
        return Err(AuthorityError::InvalidRequest(format!(
            "\"{field}\" is longer than {MAX_TEXT} bytes"
        )));
    }
    Ok(())
}

fn permissions(list: &[String]) -> Result<Vec<String>, AuthorityError> {
    let scope = Scope::from_strs(list.iter().map(String::as_str))
        .map_err(|e| AuthorityError::InvalidRequest(format!("permissions: {e}")))?;
    Ok(scope.to_vec())
}

fn agent_name(name: &str) -> Result<AgentName, AuthorityError> {
    AgentName::new(name).map_err(|e| AuthorityError::InvalidRequest(e.to_string()))
}

/// `POST /v1/agents`: registers an agent with its public key.
pub(crate) async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody<NewAgent>, AuthorityError>,
) -> Result<Response, AuthorityError> {
    s.admin.require(&headers)?;
    let JsonBody(new) = body?;
    let name = agent_name(&new.name)?;
    bounded_text("description", &new.description)?;
    bounded_text("owner", &new.owner)?;
    let permissions = permissions(&new.permissions)?;
    let key = PublicJwk::from_json(&new.public_jwk)
        .map_err(|e| AuthorityError::InvalidRequest(format!("public_jwk: {e}")))?;
    let now = unix_now();
    let agent = AgentRow {
        id: SpiffeId::agent(&s.trust_domain, &name).to_string(),
        name: name.to_string(),
        description: new.description,
        owner: new.owner,
        permissions,
        public_jwk: key.to_json(),
        status: AgentStatus::Active,
        bearer_allowed: new.bearer_allowed,
        expires_at: None,
        parent: None,
        created_at: now,
        updated_at: now,
    };
    let mut audit = event("agent.created", "admin", &agent.id, Decision::Allow);
    audit.scope = agent.permissions.join(" ");
    audit.request_id = request_id(&headers);
    s.store.create_agent(&agent, &audit).await?;
    s.revocations_changed(); // a name registered again lifts its old revocation
    Ok((StatusCode::CREATED, Json(view(&agent))).into_response())
}

/// `GET /v1/agents`.
pub(crate) async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, AuthorityError> {
    s.admin.require(&headers)?;
    let agents: Vec<Value> = s.store.agents().await?.iter().map(view).collect();
    Ok(Json(json!({ "agents": agents })))
}

/// `GET /v1/agents/{name}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, AuthorityError> {
    s.admin.require(&headers)?;
    let agent = s.store.agent(agent_name(&name)?.as_str()).await?;
    let agent =
        agent.ok_or_else(|| AuthorityError::NotFound(format!("agent \"{name}\" was not found")))?;
    Ok(Json(view(&agent)))
}

/// `PATCH /v1/agents/{name}`: permissions, description, status.
pub(crate) async fn update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<JsonBody<AgentPatch>, AuthorityError>,
) -> Result<Json<Value>, AuthorityError> {
    s.admin.require(&headers)?;
    let JsonBody(patch) = body?;
    if patch.permissions.is_none()
        && patch.description.is_none()
        && patch.status.is_none()
        && patch.bearer_allowed.is_none()
    {
        return Err(AuthorityError::InvalidRequest(
            "nothing to change: give permissions, description or status".into(),
        ));
    }
    let name = agent_name(&name)?;
    if let Some(d) = &patch.description {
        bounded_text("description", d)?;
    }
    let update = AgentUpdate {
        permissions: patch.permissions.as_deref().map(permissions).transpose()?,
        description: patch.description,
        status: patch.status,
        bearer_allowed: patch.bearer_allowed,
        now: unix_now(),
    };
    let id = SpiffeId::agent(&s.trust_domain, &name).to_string();
    let mut audit = event("agent.updated", "admin", &id, Decision::Allow);
    audit.reason = describe(&update);
    audit.scope = update
        .permissions
        .as_ref()
        .map(|p| p.join(" "))
        .unwrap_or_default();
    audit.request_id = request_id(&headers);
    let agent = s.store.update_agent(name.as_str(), &update, &audit).await?;
    s.revocations_changed();
    Ok(Json(view(&agent)))
}

fn describe(update: &AgentUpdate) -> String {
    let mut changed = Vec::new();
    if update.permissions.is_some() {
        changed.push("permissions".to_owned());
    }
    if update.description.is_some() {
        changed.push("description".to_owned());
    }
    if let Some(status) = update.status {
        changed.push(format!("status={}", status.as_str()));
    }
    if let Some(bearer) = update.bearer_allowed {
        changed.push(format!("bearer_allowed={bearer}"));
    }
    format!("changed {}", changed.join(", "))
}

/// `DELETE /v1/agents/{name}`: removes the agent and revokes its tokens.
pub(crate) async fn delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, AuthorityError> {
    s.admin.require(&headers)?;
    let name = agent_name(&name)?;
    let id = SpiffeId::agent(&s.trust_domain, &name).to_string();
    let mut audit = event("agent.deleted", "admin", &id, Decision::Allow);
    audit.request_id = request_id(&headers);
    s.store.delete_agent(name.as_str(), &audit).await?;
    s.revocations_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// The registry entry of the agent whose SPIFFE ID is `id`, if it is ours.
pub(crate) async fn agent_by_id(
    s: &AuthorityState,
    id: &str,
) -> Result<Option<AgentRow>, AuthorityError> {
    let Ok(id) = SpiffeId::parse(id) else {
        return Ok(None);
    };
    match id.agent_name() {
        Some(name) if id.is_in(&s.trust_domain) => Ok(s.store.agent(name.as_str()).await?),
        _ => Ok(None),
    }
}

/// An agent filter given as a name or SPIFFE ID, as the SPIFFE ID.
pub(crate) fn agent_id_or_raw(s: &AuthorityState, given: &str) -> String {
    match AgentName::new(given) {
        Ok(name) => SpiffeId::agent(&s.trust_domain, &name).to_string(),
        Err(_) => given.to_owned(),
    }
}
