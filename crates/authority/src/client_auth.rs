//! Client authentication against the registry: private_key_jwt (RFC 7523
//! §2.2), or a JWT-SVID the authority minted (the SPIFFE JWT client
//! authentication profile, `client_assertion_type` [`JWT_SPIFFE_ASSERTION_TYPE`]).

use agentauth_core::{
    AssertionError, CLIENT_ASSERTION_TYPE, ClientAssertion, ClientAssertionRules, PublicJwk,
    SpiffeId, unix_now,
};
use agentauth_store::{AgentRow, UsedAssertion};

use crate::server::State;
use crate::tls::ClientCertificate;
use crate::{AuthorityError, registry};

/// `client_assertion_type` of a JWT-SVID presented as the client assertion.
pub const JWT_SPIFFE_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// Why client authentication failed: one variant per rule of RFC 7523 §3
/// and of the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthFailure {
    /// No client authentication at all.
    #[error(
        "client authentication is required (private_key_jwt, or tls_client_auth with an X.509-SVID over serve --tls)"
    )]
    Missing,
    /// tls_client_auth without `client_id`, which RFC 8705 requires.
    #[error("tls_client_auth needs client_id: the SPIFFE ID of the client certificate")]
    CertificateClientIdMissing,
    /// The client certificate's key is not one a token can be bound to.
    #[error("the client certificate's key is neither P-256 nor Ed25519")]
    CertificateKey,
    /// `client_assertion_type` names another method.
    #[error(
        "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
         (or …:jwt-spiffe with a JWT-SVID)"
    )]
    WrongAssertionType,
    /// A JWT-SVID presented as the client assertion fails a check.
    #[error("JWT-SVID client assertion: {0}")]
    JwtSvid(#[source] agentauth_core::JwtSvidError),
    /// A JWT-SVID that speaks for a delegation (it carries `act`): its `sub`
    /// is not the agent presenting it, so it authenticates no client.
    #[error("a JWT-SVID carrying act speaks for a delegation and authenticates no client")]
    DelegatedJwtSvid,
    /// `client_assertion_type` without `client_assertion`.
    #[error("client_assertion is missing")]
    AssertionMissing,
    /// The assertion is not an acceptable JWT.
    #[error("client assertion: {0}")]
    Malformed(#[source] AssertionError),
    /// `client_id` names another client than the assertion's issuer.
    #[error("client_id does not match the client assertion's issuer")]
    ClientIdMismatch,
    /// The assertion's issuer is not a registered agent of this trust domain.
    #[error("the client is not a registered agent")]
    NotRegistered,
    /// The agent is disabled, or an ephemeral agent past its expiry.
    #[error("the agent {0}")]
    AgentUnusable(&'static str),
    /// The agent's registered key was revoked by thumbprint.
    #[error("the agent's registered key has been revoked")]
    KeyRevoked,
    /// The signature or a claim (audience, lifetime, subject) fails.
    #[error("{}", describe(.0))]
    Rejected(#[source] AssertionError),
    /// The assertion's `jti` was presented before.
    #[error("the client assertion was already used")]
    Replayed,
}

/// The client-authentication parameters of an OAuth form.
#[derive(Debug, Default)]
pub(crate) struct ClientCredentials<'a> {
    pub(crate) assertion_type: Option<&'a str>,
    pub(crate) assertion: Option<&'a str>,
    pub(crate) client_id: Option<&'a str>,
    /// The X.509-SVID the client presented in the TLS handshake (`serve --tls`).
    pub(crate) certificate: Option<&'a ClientCertificate>,
}

/// An agent that proved possession of its registered key, or of the key of
/// its X.509-SVID in the TLS handshake.
#[derive(Debug)]
pub(crate) struct AuthenticatedClient {
    pub(crate) agent: AgentRow,
    /// The key proven: the registered one, or the certificate's.
    pub(crate) key: PublicJwk,
    /// The assertion to mark used in the same transaction as the request's writes.
    pub(crate) assertion: UsedAssertion,
    /// With tls_client_auth: the certificate (leaf, DER) the token is bound to.
    pub(crate) certificate: Option<std::sync::Arc<Vec<u8>>>,
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
    use ClientAuthFailure as Fail;
    match creds.assertion_type {
        Some(CLIENT_ASSERTION_TYPE) => {}
        Some(JWT_SPIFFE_ASSERTION_TYPE) => {
            return authenticate_jwt_svid(s, creds, endpoint, claimed).await;
        }
        Some(_) => return Err(Fail::WrongAssertionType.into()),
        None => match creds.certificate {
            Some(certificate) if creds.assertion.is_none() => {
                return authenticate_certificate(s, creds, certificate, claimed).await;
            }
            _ => return Err(Fail::Missing.into()),
        },
    }
    let token = creds.assertion.ok_or(Fail::AssertionMissing)?;
    let assertion = ClientAssertion::parse(token).map_err(Fail::Malformed)?;
    *claimed = assertion.claimed_client.chars().take(256).collect();
    if creds
        .client_id
        .is_some_and(|id| id != assertion.claimed_client)
    {
        return Err(Fail::ClientIdMismatch.into());
    }
    let agent = match SpiffeId::parse(&assertion.claimed_client) {
        Ok(id) if id.is_in(&s.trust_domain) => match id.agent_name() {
            Some(name) => s.store.agent(&name).await?,
            None => None,
        },
        _ => None,
    };
    let agent = agent.ok_or(Fail::NotRegistered)?;
    let now = unix_now();
    if let Some(why) = registry::unusable(&agent, now) {
        return Err(Fail::AgentUnusable(why).into());
    }
    let key = PublicJwk::from_json(&agent.public_jwk)
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    if s.store.key_revoked(&key.thumbprint()).await? {
        return Err(Fail::KeyRevoked.into());
    }
    let mut audiences = vec![s.issuer.clone()];
    if !s.config.strict_client_assertion_audience {
        audiences.push(s.endpoint("/oauth/token"));
        audiences.push(endpoint.to_owned());
    }
    let rules = ClientAssertionRules {
        audiences: &audiences,
        now,
        max_lifetime_secs: s.config.max_client_assertion_lifetime_secs,
    };
    let (key, claims) = match assertion.verify(&key, &rules) {
        Ok(claims) => (key, claims),
        // Not signed by the registered key: within a key rotation's grace,
        // the key it replaced may still have signed it.
        Err(AssertionError::Jws(signature)) => {
            let previous = previous_key(s, &agent.id, now)
                .await?
                .ok_or(Fail::Rejected(AssertionError::Jws(signature)))?;
            let claims = assertion
                .verify(&previous, &rules)
                .map_err(Fail::Rejected)?;
            (previous, claims)
        }
        Err(other) => return Err(Fail::Rejected(other).into()),
    };
    // Kept until `exp` (and a minute more than the skew), so an assertion
    // valid for an hour cannot be replayed within that hour either.
    let assertion = UsedAssertion {
        client_id: agent.id.to_string(),
        jti: claims.jti,
        expires_at: claims.exp + 60,
    };
    Ok(AuthenticatedClient {
        agent,
        key,
        assertion,
        certificate: None,
    })
}

/// RFC 8705 tls_client_auth: the X.509-SVID of the handshake (its chain
/// already checked against the bundle) names the client, which `client_id`
/// must repeat; the token will be bound to that certificate. There is no
/// assertion, so a random one-off stands in for the used-assertion record.
async fn authenticate_certificate(
    s: &State,
    creds: &ClientCredentials<'_>,
    certificate: &ClientCertificate,
    claimed: &mut String,
) -> Result<AuthenticatedClient, AuthorityError> {
    use ClientAuthFailure as Fail;
    *claimed = certificate.id.as_str().chars().take(256).collect();
    let client_id = creds.client_id.ok_or(Fail::CertificateClientIdMissing)?;
    if client_id != certificate.id.as_str() {
        return Err(Fail::ClientIdMismatch.into());
    }
    let agent = match certificate.id.agent_name() {
        Some(name) if certificate.id.is_in(&s.trust_domain) => s.store.agent(&name).await?,
        _ => None,
    };
    let agent = agent.ok_or(Fail::NotRegistered)?;
    let now = unix_now();
    if let Some(why) = registry::unusable(&agent, now) {
        return Err(Fail::AgentUnusable(why).into());
    }
    let key = agentauth_svid::public_jwk(&certificate.leaf).map_err(|_| Fail::CertificateKey)?;
    if s.store.key_revoked(&key.thumbprint()).await? {
        return Err(Fail::KeyRevoked.into());
    }
    Ok(AuthenticatedClient {
        assertion: UsedAssertion {
            client_id: agent.id.to_string(),
            jti: format!("tls:{}", agentauth_core::random_b64(16)),
            expires_at: now + 60,
        },
        agent,
        key,
        certificate: Some(certificate.leaf.clone()),
    })
}

/// Authenticates with a JWT-SVID of this trust domain addressed to the
/// authority (its issuer, or, unless strict, the endpoint called): its `sub`
/// is the client. A JWT-SVID carries no `jti`, so its SHA-256 stands in:
/// each one authenticates once. The token issued is bound to the agent's
/// registered key, as with private_key_jwt.
async fn authenticate_jwt_svid(
    s: &State,
    creds: &ClientCredentials<'_>,
    endpoint: &str,
    claimed: &mut String,
) -> Result<AuthenticatedClient, AuthorityError> {
    use ClientAuthFailure as Fail;
    let token = creds.assertion.ok_or(Fail::AssertionMissing)?;
    let keys = [(s.jwt_svid_key.kid.clone(), s.jwt_svid_key.key.public_jwk())];
    let now = unix_now();
    let mut audiences = vec![s.issuer.clone()];
    if !s.config.strict_client_assertion_audience {
        audiences.push(s.endpoint("/oauth/token"));
        audiences.push(endpoint.to_owned());
    }
    let mut outcome = Err(agentauth_core::JwtSvidError::UnknownKey);
    for audience in &audiences {
        outcome = agentauth_core::validate_jwt_svid(token, &keys, audience, now);
        if !matches!(outcome, Err(agentauth_core::JwtSvidError::Audience(_))) {
            break;
        }
    }
    let claims = outcome.map_err(Fail::JwtSvid)?;
    *claimed = claims.sub.as_str().chars().take(256).collect();
    if claims.act.is_some() {
        return Err(Fail::DelegatedJwtSvid.into());
    }
    if creds.client_id.is_some_and(|id| id != claims.sub.as_str()) {
        return Err(Fail::ClientIdMismatch.into());
    }
    let agent = match claims.sub.agent_name() {
        Some(name) if claims.sub.is_in(&s.trust_domain) => s.store.agent(&name).await?,
        _ => None,
    };
    let agent = agent.ok_or(Fail::NotRegistered)?;
    if let Some(why) = registry::unusable(&agent, now) {
        return Err(Fail::AgentUnusable(why).into());
    }
    let key = PublicJwk::from_json(&agent.public_jwk)
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    if s.store.key_revoked(&key.thumbprint()).await? {
        return Err(Fail::KeyRevoked.into());
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    Ok(AuthenticatedClient {
        assertion: UsedAssertion {
            client_id: agent.id.to_string(),
            jti: format!(
                "jwt-svid:{}",
                agentauth_core::b64url_encode(digest.as_ref())
            ),
            expires_at: claims.exp + 60,
        },
        agent,
        key,
        certificate: None,
    })
}

/// The key the agent had before its last rotation, while its grace lasts
/// and unless it was revoked since.
async fn previous_key(
    s: &State,
    id: &SpiffeId,
    now: i64,
) -> Result<Option<PublicJwk>, AuthorityError> {
    let Some(jwk) = s.store.previous_agent_key(id, now).await? else {
        return Ok(None);
    };
    let key = PublicJwk::from_json(&jwk).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    if s.store.key_revoked(&key.thumbprint()).await? {
        return Ok(None);
    }
    Ok(Some(key))
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
