//! private_key_jwt client authentication (RFC 7523 §2.2) against the registry.

use agentauth_core::{
    AssertionError, CLIENT_ASSERTION_TYPE, ClientAssertion, ClientAssertionRules, PublicJwk,
    SpiffeId, unix_now,
};
use agentauth_store::{AgentRow, UsedAssertion};

use crate::server::State;
use crate::{AuthorityError, registry};

/// The client-authentication parameters of an OAuth form.
#[derive(Debug, Default)]
pub(crate) struct ClientCredentials<'a> {
    pub(crate) assertion_type: Option<&'a str>,
    pub(crate) assertion: Option<&'a str>,
    pub(crate) client_id: Option<&'a str>,
}

/// An agent that proved possession of its registered key.
#[derive(Debug)]
pub(crate) struct AuthenticatedClient {
    pub(crate) agent: AgentRow,
    pub(crate) key: PublicJwk,
    /// The assertion to mark used in the same transaction as the request's writes.
    pub(crate) assertion: UsedAssertion,
}

/// Authenticates the client; `endpoint` is the URL of the endpoint called,
/// accepted as `aud` (with the token endpoint) unless strict mode is on.
/// `claimed` receives the claimed client ID as soon as it is known, for the audit.
pub(crate) async fn authenticate(
    s: &State,
    creds: &ClientCredentials<'_>,
    endpoint: &str,
    claimed: &mut String,
) -> Result<AuthenticatedClient, AuthorityError> {
    let fail = |why: &str| AuthorityError::InvalidClient(why.to_owned());
    match creds.assertion_type {
        Some(CLIENT_ASSERTION_TYPE) => {}
        Some(_) => {
            return Err(fail(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        None => return Err(fail("client authentication is required (private_key_jwt)")),
    }
    let token = creds
        .assertion
        .ok_or_else(|| fail("client_assertion is missing"))?;
    let assertion =
        ClientAssertion::parse(token).map_err(|e| fail(&format!("client assertion: {e}")))?;
    *claimed = assertion.claimed_client.chars().take(256).collect();
    if creds
        .client_id
        .is_some_and(|id| id != assertion.claimed_client)
    {
        return Err(fail(
            "client_id does not match the client assertion's issuer",
        ));
    }
    let agent = match SpiffeId::parse(&assertion.claimed_client) {
        Ok(id) if id.is_in(&s.trust_domain) => match id.agent_name() {
            Some(name) => s.store.agent(name.as_str()).await?,
            None => None,
        },
        _ => None,
    };
    let agent = agent.ok_or_else(|| fail("the client is not a registered agent"))?;
    let now = unix_now();
    if let Some(why) = registry::unusable(&agent, now) {
        return Err(fail(&format!("the agent {why}")));
    }
    let key = PublicJwk::from_json(&agent.public_jwk)
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    if s.store.key_revoked(&key.thumbprint().0).await? {
        return Err(fail("the agent's registered key has been revoked"));
    }
    let mut audiences = vec![s.issuer.clone()];
    if !s.config.strict_client_assertion_audience {
        audiences.push(s.endpoint("/oauth/token"));
        audiences.push(endpoint.to_owned());
    }
    let claims = assertion
        .verify(
            &key,
            &ClientAssertionRules {
                audiences: &audiences,
                now,
                max_lifetime_secs: s.config.max_client_assertion_lifetime_secs,
            },
        )
        .map_err(|e| fail(&describe(&e)))?;
    // Kept until `exp` (and a minute more than the skew), so an assertion
    // valid for an hour cannot be replayed within that hour either.
    let assertion = UsedAssertion {
        client_id: agent.id.clone(),
        jti: claims.jti,
        expires_at: claims.exp + 60,
    };
    Ok(AuthenticatedClient {
        agent,
        key,
        assertion,
    })
}

/// A refused assertion in words; a lifetime refusal names the setting that
/// decides it, so the operator or the client knows what to change.
fn describe(e: &AssertionError) -> String {
    match e {
        AssertionError::LifetimeTooLong {
            ahead_secs,
            max_secs,
        } => format!(
            "client assertion: its exp is {ahead_secs} s ahead, more than \
             max_client_assertion_lifetime_secs = {max_secs} allows; sign shorter-lived \
             assertions or raise that setting"
        ),
        other => format!("client assertion: {other}"),
    }
}
