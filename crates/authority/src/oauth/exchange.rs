//! Token exchange (RFC 8693) for delegation: an agent that received a token
//! trades it for one addressed to the next hop, carrying the same subject and
//! task, a narrower scope, no longer a lifetime, its own key in `cnf` and the
//! actor chain in `act`.

use agentauth_api::{ACCESS_TOKEN_TYPE, TokenRequest};
use agentauth_core::{
    AccessClaims, Rejection, Revoked, Scope, SpiffeId, TokenError, actor_chain_of,
};

use super::token::{Attempt, Minted};
use crate::AuthorityError;
use crate::client_auth::AuthenticatedClient;
use crate::server::State;
use crate::standing::{self, Door};

fn refused(why: impl Into<String>) -> AuthorityError {
    AuthorityError::InvalidRequest(why.into())
}

/// Checks every delegation rule and says what the exchanged token carries.
/// `exp_cap` is the latest expiry the configured lifetime allows.
pub(crate) async fn delegate(
    s: &State,
    req: &TokenRequest,
    actor: &AuthenticatedClient,
    audience: &SpiffeId,
    exp_cap: i64,
    attempt: &mut Attempt,
) -> Result<Minted, AuthorityError> {
    check_request_shape(req)?;
    let token = req.subject_token.as_deref().unwrap_or("");
    let door = Door::Exchange {
        actor: &actor.agent.id,
    };
    let subject = standing::check(s, token, door)
        .await
        .map_err(|e| subject_refused(e, &actor.agent.id, attempt))?;
    attempt.txn = subject.txn.clone().unwrap_or_default();
    if *audience == s.authority_id {
        return Err(AuthorityError::InvalidTarget(
            "tokens for the authority cannot be delegated".into(),
        ));
    }
    let grant = s
        .store
        .delegation(&actor.agent.id, audience.as_str())
        .await?
        .ok_or_else(|| {
            AuthorityError::InvalidTarget(format!(
                "no delegation grant lets {} delegate to {audience}",
                actor.agent.id
            ))
        })?;
    let scope = narrowed_scope(
        req,
        &subject,
        &actor.agent.permissions,
        &grant.permissions,
        attempt,
    )?;
    let act = subject.delegated_act(&actor.agent.id);
    let depth = chain_depth(&act);
    if depth > s.config.max_delegation_depth {
        return Err(refused(format!(
            "the delegation chain would be {depth} deep; the limit is {}",
            s.config.max_delegation_depth
        )));
    }
    let mut chain = vec![subject.sub.clone()];
    chain.extend(actor_chain_of(Some(&act)));
    Ok(Minted {
        chain,
        sub: subject.sub.clone(),
        scope,
        exp: exp_cap.min(subject.exp),
        act: Some(act),
        txn: subject.txn.clone(),
        purpose: subject.purpose.clone(),
        rctx: subject.rctx.clone(),
        parent_jti: Some(subject.jti.clone()),
        kind: "token.exchanged",
        reason: format!("token exchange of {} by {}", subject.jti, actor.agent.id),
    })
}

fn check_request_shape(req: &TokenRequest) -> Result<(), AuthorityError> {
    if req.actor_token.is_some() {
        return Err(refused(
            "actor_token is not supported: the actor authenticates as the client",
        ));
    }
    if req
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(refused("only access tokens can be requested"));
    }
    if req.subject_token.is_none() {
        return Err(refused("subject_token is missing"));
    }
    if req.subject_token_type.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(refused(format!(
            "subject_token_type must be {ACCESS_TOKEN_TYPE}"
        )));
    }
    Ok(())
}

/// Why the subject token does not stand, in the words of an exchange.
fn subject_refused(
    rejection: Rejection<AuthorityError>,
    actor: &str,
    attempt: &mut Attempt,
) -> AuthorityError {
    match rejection {
        Rejection::View(e) => e,
        Rejection::Token(TokenError::AudienceMismatch(aud)) => refused(format!(
            "the subject token is addressed to {aud}, not to {actor}: an agent can exchange only tokens addressed to it"
        )),
        Rejection::Token(e) => refused(format!("the subject token is invalid: {e}")),
        Rejection::Proof(e) => refused(format!("the subject token is invalid: {e}")),
        Rejection::Revoked(Revoked::Token) => refused("the subject token has been revoked"),
        Rejection::Revoked(Revoked::Key) => {
            refused("the key the subject token is bound to has been revoked")
        }
        Rejection::Revoked(Revoked::Task(txn)) => {
            let why = refused(format!("the task {txn} has been revoked"));
            attempt.txn = txn;
            why
        }
        Rejection::Revoked(Revoked::Agent(id)) => refused(format!(
            "{id} in the subject token's chain is disabled, expired or deleted"
        )),
    }
}

/// The requested scope, which must lie within the subject token's scope, the
/// actor's permissions and the grant; the first violation is named.
fn narrowed_scope(
    req: &TokenRequest,
    subject: &AccessClaims,
    actor_permissions: &[String],
    granted: &[String],
    attempt: &mut Attempt,
) -> Result<Scope, AuthorityError> {
    let raw = req.scope.as_deref().unwrap_or("");
    attempt.scope = raw.chars().take(512).collect();
    let asked = Scope::parse(raw).map_err(|e| AuthorityError::InvalidScope(e.to_string()))?;
    if asked.is_empty() {
        return Err(AuthorityError::InvalidScope(
            "scope is required: name the permissions to delegate".into(),
        ));
    }
    let as_scope = |list: &[String]| Scope::from_strs(list.iter().map(String::as_str));
    let actor = as_scope(actor_permissions).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let grant = as_scope(granted).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let limits = [
        (&subject.scope, "the subject token's scope"),
        (&actor, "the actor's permissions"),
        (&grant, "the delegation grant"),
    ];
    for (limit, name) in limits {
        if let Some(missing) = asked.missing_from(limit).into_iter().next() {
            return Err(AuthorityError::InvalidScope(format!(
                "\"{missing}\" is not in {name}"
            )));
        }
    }
    Ok(asked)
}

/// How many actors an `act` claim names.
fn chain_depth(act: &serde_json::Value) -> usize {
    let mut depth = 0;
    let mut current = Some(act);
    while let Some(a) = current {
        depth += 1;
        current = a.get("act");
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depth_counts_nested_actors() {
        let act = serde_json::json!({"sub": "c", "act": {"sub": "b", "act": {"sub": "a"}}});
        assert_eq!(chain_depth(&act), 3);
        assert_eq!(chain_depth(&serde_json::json!({"sub": "a"})), 1);
    }
}
