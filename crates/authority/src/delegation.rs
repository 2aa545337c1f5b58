//! Delegation grants (`/v1/agents/{name}/delegations`): which agent may pass
//! which permissions on to which other agent by token exchange. Admin only.

use agentauth_api::{Delegation, DelegationList, NewDelegation};
use agentauth_core::AuditKind;
use agentauth_core::{Decision, Scope, unix_now};
use agentauth_store::{AgentRow, DelegationRow};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use crate::audit::{event, request_id};
use crate::body::JsonBody;
use crate::operator::Principal;
use crate::server::{AppState, State as AuthorityState};
use crate::{AuthorityError, registry};

/// Why a delegation grant was refused: one variant per grant rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationRefusal {
    /// The grant names the same agent on both ends.
    #[error("an agent cannot delegate to itself")]
    ToItself,
    /// A permission does not parse.
    #[error("permissions: {0}")]
    Permissions(#[source] agentauth_core::Error),
    /// The grant names no permission.
    #[error("a grant needs at least one permission")]
    NoPermissions,
    /// The delegating agent does not hold a permission it would pass on.
    #[error("{agent} does not hold \"{permission}\" and so cannot delegate it")]
    NotHeld {
        /// The delegating agent's name.
        agent: String,
        /// The first permission it does not hold.
        permission: String,
    },
}

fn view(grant: &DelegationRow) -> Delegation {
    Delegation {
        from: grant.from.to_string(),
        to: grant.to.to_string(),
        permissions: grant.permissions.to_vec(),
        created_at: grant.created_at,
    }
}

/// `POST /v1/agents/{name}/delegations`.
pub(crate) async fn grant(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(new): JsonBody<NewDelegation>,
) -> Result<Response, AuthorityError> {
    let granted = delegate(&s, &name, &new, &by, &request_id(&headers)).await?;
    Ok((StatusCode::CREATED, Json(granted)).into_response())
}

/// Lets `from` delegate `new.permissions` (which it must hold) to `new.to`;
/// replaces an earlier grant between the two.
pub(crate) async fn delegate(
    s: &AuthorityState,
    from: &str,
    new: &NewDelegation,
    by: &Principal,
    request_id: &str,
) -> Result<Delegation, AuthorityError> {
    let from = registry::registered(s, from).await?;
    let to = registry::registered(s, &new.to).await?;
    let asked = granted_scope(&from, &to, &new.permissions)?;
    let grant = DelegationRow {
        from: from.id.clone(),
        to: to.id.clone(),
        permissions: asked.clone(),
        created_at: unix_now(),
    };
    let mut audit = event(
        AuditKind::DelegationGranted,
        &by.actor(),
        &from.id,
        Decision::Allow,
    );
    audit.audience = to.id.to_string();
    audit.scope = asked.to_string();
    audit.request_id = request_id.to_owned();
    s.store.put_delegation(&grant, &audit).await?;
    Ok(view(&grant))
}

/// The permissions of a grant from `from` to `to`, checked against the rules.
fn granted_scope(
    from: &AgentRow,
    to: &AgentRow,
    permissions: &[String],
) -> Result<Scope, AuthorityError> {
    if from.id == to.id {
        return Err(DelegationRefusal::ToItself.into());
    }
    let asked = Scope::from_strs(permissions.iter().map(String::as_str))
        .map_err(DelegationRefusal::Permissions)?;
    if asked.is_empty() {
        return Err(DelegationRefusal::NoPermissions.into());
    }
    if let Some(missing) = asked.missing_from(&from.permissions).into_iter().next() {
        return Err(DelegationRefusal::NotHeld {
            agent: from.name.to_string(),
            permission: missing,
        }
        .into());
    }
    Ok(asked)
}

/// `GET /v1/agents/{name}/delegations`.
pub(crate) async fn list(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DelegationList>, AuthorityError> {
    Ok(Json(delegations(&s, &name).await?))
}

/// Every grant from the agent named (by name or SPIFFE ID) `from`.
pub(crate) async fn delegations(
    s: &AuthorityState,
    from: &str,
) -> Result<DelegationList, AuthorityError> {
    let from = registry::registered(s, from).await?;
    let delegations = s
        .store
        .delegations(&from.id)
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(DelegationList { delegations })
}

/// `DELETE /v1/agents/{name}/delegations/{to}`.
pub(crate) async fn revoke(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path((name, to)): Path<(String, String)>,
) -> Result<StatusCode, AuthorityError> {
    withdraw(&s, &name, &to, &by, &request_id(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Withdraws the grant from `from` to `to`, with its audit record.
pub(crate) async fn withdraw(
    s: &AuthorityState,
    from: &str,
    to: &str,
    by: &Principal,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let from = registry::registered(s, from).await?;
    let to = registry::registered(s, to).await?;
    let mut audit = event(
        AuditKind::DelegationRevoked,
        &by.actor(),
        &from.id,
        Decision::Allow,
    );
    audit.audience = to.id.to_string();
    audit.request_id = request_id.to_owned();
    s.store.delete_delegation(&from.id, &to.id, &audit).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use agentauth_store::AgentStatus;

    use super::*;

    fn agent(name: &str, permissions: &[&str]) -> AgentRow {
        AgentRow {
            name: agentauth_core::AgentName::new(name).unwrap(),
            id: agentauth_core::SpiffeId::parse(&format!("spiffe://agentauth.local/agent/{name}"))
                .unwrap(),
            description: String::new(),
            owner: String::new(),
            permissions: Scope::from_strs(permissions.iter().copied()).unwrap(),
            public_jwk: serde_json::json!({}),
            status: AgentStatus::Active,
            bearer_allowed: false,
            expires_at: None,
            parent: None,
            tags: vec![],
            selectors: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }

    fn refusal(from: &AgentRow, to: &AgentRow, asked: &[&str]) -> DelegationRefusal {
        let asked: Vec<String> = asked.iter().map(|p| (*p).to_owned()).collect();
        match granted_scope(from, to, &asked) {
            Err(AuthorityError::Delegation(r)) => r,
            other => panic!("{asked:?}: {other:?}"),
        }
    }

    #[test]
    fn a_grant_passes_on_only_held_permissions_to_another_agent() {
        let orders = agent("orders", &["read:db", "write:db"]);
        let billing = agent("billing", &[]);
        let granted = granted_scope(&orders, &billing, &["read:db".to_owned()]).unwrap();
        assert_eq!(granted.to_string(), "read:db");
        assert!(matches!(
            refusal(&orders, &orders, &["read:db"]),
            DelegationRefusal::ToItself
        ));
        assert!(matches!(
            refusal(&orders, &billing, &[]),
            DelegationRefusal::NoPermissions
        ));
        assert!(matches!(
            refusal(&orders, &billing, &["bad permission"]),
            DelegationRefusal::Permissions(_)
        ));
        assert!(matches!(
            refusal(&orders, &billing, &["read:db", "admin:purge"]),
            DelegationRefusal::NotHeld { permission, .. } if permission == "admin:purge"
        ));
    }
}
