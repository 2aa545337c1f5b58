//! Token exchange (RFC 8693) for delegation: an agent that received a token
//! trades it for one addressed to the next hop, carrying the same subject and
//! task, a narrower scope, no longer a lifetime, its own key in `cnf` and the
//! actor chain in `act`.

use agentauth_core::AuditKind;
use agentauth_core::{AccessClaims, Actor, Rejection, Revoked, Scope, SpiffeId, TokenError};

use agentauth_api::{ACCESS_TOKEN_TYPE, TokenRequest};

use super::{Attempt, Minted};
use crate::AuthorityError;
use crate::client_auth::AuthenticatedClient;
use crate::server::State;
use crate::standing::{self, Door};

/// Why a token exchange was refused: one variant per delegation rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeRefusal {
    /// `actor_token` was sent; the actor authenticates as the client instead.
    #[error("actor_token is not supported: the actor authenticates as the client")]
    ActorTokenGiven,
    /// `requested_token_type` names something other than an access token.
    #[error("only access tokens can be requested")]
    RequestedTypeNotAccessToken,
    /// No `subject_token`.
    #[error("subject_token is missing")]
    SubjectTokenMissing,
    /// `subject_token_type` is not the access-token type.
    #[error("subject_token_type must be {ACCESS_TOKEN_TYPE}")]
    SubjectTokenType,
    /// The subject token is addressed to another agent than the actor.
    #[error(
        "the subject token is addressed to {audience}, not to {actor}: an agent can exchange only tokens addressed to it"
    )]
    NotAddressedToActor {
        /// The subject token's `aud`.
        audience: String,
        /// The authenticated actor.
        actor: String,
    },
    /// The subject token fails the token check (signature, issuer, time, …).
    #[error("the subject token is invalid: {0}")]
    SubjectTokenInvalid(TokenError),
    /// Cannot happen at exchange, which asks no proof of possession; kept so
    /// every rejection of the token check has its refusal.
    #[error("the subject token is invalid: {0}")]
    SubjectProof(agentauth_core::ProofError),
    /// The subject token, its key, its task or an agent it names is revoked.
    #[error("{}", describe_revoked(.0))]
    SubjectRevoked(Revoked),
    /// Tokens for the authority are never delegated.
    #[error("tokens for the authority cannot be delegated")]
    AuthorityAudience,
    /// No delegation grant from the actor to the new audience.
    #[error("no delegation grant lets {actor} delegate to {audience}")]
    NoGrant {
        /// The actor.
        actor: String,
        /// The audience asked for.
        audience: String,
    },
    /// The new chain would exceed the configured depth.
    #[error("the delegation chain would be {depth} deep; the limit is {limit}")]
    ChainTooDeep {
        /// Actors the new token would name.
        depth: usize,
        /// `max_delegation_depth`.
        limit: usize,
    },
    /// No scope was asked for.
    #[error("scope is required: name the permissions to delegate")]
    ScopeMissing,
    /// The scope does not parse.
    #[error(transparent)]
    ScopeMalformed(agentauth_core::Error),
    /// A permission lies outside one of the limits a delegated scope must keep.
    #[error("\"{permission}\" is not in {limit}")]
    ScopeBeyond {
        /// The first permission outside.
        permission: String,
        /// Which limit: the subject token's scope, the actor's permissions or the grant.
        limit: &'static str,
    },
}

fn describe_revoked(revoked: &Revoked) -> String {
    match revoked {
        Revoked::Token => "the subject token has been revoked".into(),
        Revoked::Key => "the key the subject token is bound to has been revoked".into(),
        Revoked::Task(txn) => format!("the task {txn} has been revoked"),
        Revoked::Agent(id) => {
            format!("{id} in the subject token's chain is disabled, expired or deleted")
        }
    }
}

fn refused(refusal: ExchangeRefusal) -> AuthorityError {
    AuthorityError::Exchange(refusal)
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
    attempt.txn = subject
        .txn
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    if *audience == s.authority_id {
        return Err(refused(ExchangeRefusal::AuthorityAudience));
    }
    let grant = s
        .store
        .delegation(&actor.agent.id, audience)
        .await?
        .ok_or_else(|| {
            refused(ExchangeRefusal::NoGrant {
                actor: actor.agent.id.to_string(),
                audience: audience.to_string(),
            })
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
        return Err(refused(ExchangeRefusal::ChainTooDeep {
            depth,
            limit: s.config.max_delegation_depth,
        }));
    }
    let mut chain = vec![subject.sub.clone()];
    chain.extend(act.chain().cloned());
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
        kind: AuditKind::TokenExchanged,
        reason: format!("token exchange of {} by {}", subject.jti, actor.agent.id),
    })
}

fn check_request_shape(req: &TokenRequest) -> Result<(), AuthorityError> {
    if req.actor_token.is_some() {
        return Err(refused(ExchangeRefusal::ActorTokenGiven));
    }
    if req
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(refused(ExchangeRefusal::RequestedTypeNotAccessToken));
    }
    if req.subject_token.is_none() {
        return Err(refused(ExchangeRefusal::SubjectTokenMissing));
    }
    if req.subject_token_type.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(refused(ExchangeRefusal::SubjectTokenType));
    }
    Ok(())
}

/// Why the subject token does not stand, in the terms of an exchange.
fn subject_refused(
    rejection: Rejection<AuthorityError>,
    actor: &SpiffeId,
    attempt: &mut Attempt,
) -> AuthorityError {
    let refusal = match rejection {
        Rejection::View(e) => return e,
        Rejection::Token(TokenError::AudienceMismatch(audience)) => {
            ExchangeRefusal::NotAddressedToActor {
                audience,
                actor: actor.to_string(),
            }
        }
        Rejection::Token(e) => ExchangeRefusal::SubjectTokenInvalid(e),
        Rejection::Proof(e) => ExchangeRefusal::SubjectProof(e),
        Rejection::Revoked(revoked) => {
            if let Revoked::Task(txn) = &revoked {
                attempt.txn = txn.to_string();
            }
            ExchangeRefusal::SubjectRevoked(revoked)
        }
    };
    refused(refusal)
}

/// The requested scope, which must lie within the subject token's scope, the
/// actor's permissions and the grant; the first violation is named.
fn narrowed_scope(
    req: &TokenRequest,
    subject: &AccessClaims,
    actor: &Scope,
    grant: &Scope,
    attempt: &mut Attempt,
) -> Result<Scope, AuthorityError> {
    let raw = req.scope.as_deref().unwrap_or("");
    attempt.scope = raw.chars().take(512).collect();
    let asked = Scope::parse(raw).map_err(|e| refused(ExchangeRefusal::ScopeMalformed(e)))?;
    if asked.is_empty() {
        return Err(refused(ExchangeRefusal::ScopeMissing));
    }
    let limits = [
        (&subject.scope, "the subject token's scope"),
        (actor, "the actor's permissions"),
        (grant, "the delegation grant"),
    ];
    for (held, limit) in limits {
        if let Some(missing) = asked.missing_from(held).into_iter().next() {
            return Err(refused(ExchangeRefusal::ScopeBeyond {
                permission: missing,
                limit,
            }));
        }
    }
    Ok(asked)
}

/// How many actors an `act` claim names.
fn chain_depth(act: &Actor) -> usize {
    let mut depth = 0;
    let mut current = Some(act);
    while let Some(a) = current {
        depth += 1;
        current = a.act.as_deref();
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_maps_to_the_oauth_code_of_its_rule() {
        let code = |r: ExchangeRefusal| {
            let (status, code) = AuthorityError::from(r).status_and_code();
            assert_eq!(status.as_u16(), 400);
            code
        };
        let target = ExchangeRefusal::NoGrant {
            actor: "a".into(),
            audience: "b".into(),
        };
        let scope = ExchangeRefusal::ScopeBeyond {
            permission: "write:db".into(),
            limit: "the delegation grant",
        };
        let deep = ExchangeRefusal::ChainTooDeep { depth: 5, limit: 4 };
        let task = agentauth_core::TaskId::new("t").unwrap();
        let revoked = ExchangeRefusal::SubjectRevoked(Revoked::Task(task));
        assert_eq!(code(target), "invalid_target");
        assert_eq!(code(ExchangeRefusal::AuthorityAudience), "invalid_target");
        assert_eq!(code(scope), "invalid_scope");
        assert_eq!(code(ExchangeRefusal::ScopeMissing), "invalid_scope");
        assert_eq!(code(deep), "invalid_request");
        assert_eq!(code(revoked), "invalid_request");
    }

    #[test]
    fn chain_depth_counts_nested_actors() {
        let id = |n: &str| SpiffeId::parse(&format!("spiffe://td/agent/{n}")).unwrap();
        let a = Actor {
            sub: id("a"),
            act: None,
        };
        assert_eq!(chain_depth(&a), 1);
        let b = Actor {
            sub: id("b"),
            act: Some(Box::new(a)),
        };
        let c = Actor {
            sub: id("c"),
            act: Some(Box::new(b)),
        };
        assert_eq!(chain_depth(&c), 3);
    }
}
