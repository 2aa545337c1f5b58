//! The authority's answers to core's one token check: its own signing keys,
//! and revocation read from the store, so exchange, introspection and the
//! authority's API judge a presented token exactly as every verifier does.

use agentauth_core::{
    AccessClaims, AuthorityView, PublicJwk, Rejection, RequestProof, RevocationSubjects, Revoked,
    SpiffeId, TokenRules, check_presented_token, unix_now,
};

use crate::server::State;
use crate::{AuthorityError, registry};

impl AuthorityView for State {
    type Error = AuthorityError;

    async fn signing_key(&self, kid: &str) -> Result<Option<PublicJwk>, AuthorityError> {
        Ok(self.keys().find(kid, unix_now()).cloned())
    }

    async fn revoked(&self, s: &RevocationSubjects<'_>) -> Result<Option<Revoked>, AuthorityError> {
        if self.store.token_revoked(s.jti).await? {
            return Ok(Some(Revoked::Token));
        }
        if let Some(jkt) = s.jkt
            && self.store.key_revoked(jkt).await?
        {
            return Ok(Some(Revoked::Key));
        }
        if let Some(txn) = s.txn
            && self.store.task_revoked(txn).await?
        {
            return Ok(Some(Revoked::Task(txn.clone())));
        }
        let now = unix_now();
        for id in &s.agents {
            let agent = registry::agent_by_id(self, id).await?;
            if agent.is_none_or(|a| !registry::is_usable(&a, now)) {
                return Ok(Some(Revoked::Agent((*id).clone())));
            }
        }
        Ok(None)
    }
}

/// Where a presented token is checked, which sets the audience and leeway.
pub(crate) enum Door<'a> {
    /// A token for the authority's own API, presented on `proof`'s request
    /// with its proof of possession.
    Api(RequestProof<'a>),
    /// A subject token offered for exchange by `actor`, its audience. No
    /// leeway: an expired token is never exchanged.
    Exchange {
        /// The authenticated actor's SPIFFE ID.
        actor: &'a SpiffeId,
    },
    /// A token introspected by its audience (`Some`) or the admin (`None`).
    Introspection {
        /// The calling agent, which must be the token's audience.
        audience: Option<&'a SpiffeId>,
    },
}

/// Runs core's token check for one of the authority's doors.
pub(crate) async fn check(
    s: &State,
    token: &str,
    door: Door<'_>,
) -> Result<AccessClaims, Rejection<AuthorityError>> {
    let (audience, leeway, proof) = match door {
        Door::Api(proof) => (
            Some(s.authority_id.as_str()),
            agentauth_core::DEFAULT_LEEWAY_SECS,
            Some(proof),
        ),
        Door::Exchange { actor } => (Some(actor.as_str()), 0, None),
        Door::Introspection { audience } => (audience.map(SpiffeId::as_str), 0, None),
    };
    let rules = TokenRules {
        issuer: &s.issuer,
        audience,
        now: unix_now(),
        leeway,
        proof,
        verified: Some(&s.verified_tokens),
    };
    check_presented_token(token, &rules, s).await
}

/// The authority's keys without its revocation state: the view of RFC 7009
/// revocation, which must accept a token that is already revoked (revoking
/// twice is harmless) but nothing this authority did not sign.
struct IssuedHere<'a>(&'a State);

impl AuthorityView for IssuedHere<'_> {
    type Error = std::convert::Infallible;

    async fn signing_key(&self, kid: &str) -> Result<Option<PublicJwk>, Self::Error> {
        Ok(self.0.keys().find(kid, unix_now()).cloned())
    }

    async fn revoked(&self, _: &RevocationSubjects<'_>) -> Result<Option<Revoked>, Self::Error> {
        Ok(None)
    }
}

/// The claims of `token` if this authority issued it and it has not expired,
/// whatever its revocation state: core's token check with no audience, no
/// leeway, and a view that reports nothing revoked.
pub(crate) async fn issued_here(s: &State, token: &str) -> Option<AccessClaims> {
    let rules = TokenRules {
        issuer: &s.issuer,
        audience: None,
        now: unix_now(),
        leeway: 0,
        proof: None,
        verified: None,
    };
    check_presented_token(token, &rules, &IssuedHere(s))
        .await
        .ok()
}
