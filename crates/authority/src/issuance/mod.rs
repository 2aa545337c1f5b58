//! Issuing access tokens: the one operation behind `POST /oauth/token` for
//! both grants (client_credentials and RFC 8693 token exchange). The client
//! is authenticated, the key binding and target settled, the grant's rules
//! applied, policy and approval decided, then the token is signed, recorded
//! and audited in one transaction. Every refusal is audited too.

use agentauth_core::AuditKind;
use std::net::IpAddr;

use agentauth_api::TokenRequest;
use agentauth_core::{
    ACCESS_TOKEN_TYP, AccessClaims, Actor, Cnf, DEFAULT_DPOP_MAX_AGE_SECS, DEFAULT_LEEWAY_SECS,
    Decision, DpopError, DpopExpectations, Header, Permission, PublicJwk, Scope, SpiffeId, TaskId,
    random_b64, sign_compact, unix_now, verify_dpop_proof,
};
use agentauth_store::{AgentRow, ApprovalRow, IssuedToken, StoreError};

use crate::approval::ApprovalRefusal;
use crate::audit::event;
use crate::client_auth::{AuthenticatedClient, ClientCredentials, authenticate};
use crate::oauth::{AUTHORITY_IMPLICIT_SCOPES, TOKEN_EXCHANGE_GRANT};
use crate::policy::{self, Verdict};
use crate::server::State;
use crate::{AuthorityError, approval, registry};

mod exchange;

pub use exchange::ExchangeRefusal;

/// Longest `purpose`.
const MAX_PURPOSE: usize = 256;
/// Longest `request_context`.
const MAX_REQUEST_CONTEXT: usize = 2048;

/// Why a token request was refused before any grant rule: its shape, its
/// target, its scope or its task. One variant per rule of the token endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRequestFault {
    /// No `grant_type`.
    #[error("grant_type is missing")]
    GrantTypeMissing,
    /// A `grant_type` this authority does not implement.
    #[error("grant type \"{0}\" is not supported")]
    UnsupportedGrantType(String),
    /// `resource` and `audience` name different agents.
    #[error("resource and audience name different targets")]
    TargetsDiffer,
    /// Neither `resource` nor `audience`.
    #[error("name the target agent with resource or audience")]
    TargetMissing,
    /// The target is no registered agent of this trust domain.
    #[error("\"{0}\" is not a registered agent")]
    UnknownTarget(String),
    /// The target agent is disabled or has expired.
    #[error("the target agent \"{name}\" {why}")]
    TargetUnusable {
        /// The target's name.
        name: String,
        /// `is disabled` or `has expired`.
        why: &'static str,
    },
    /// The scope does not parse.
    #[error("{0}")]
    ScopeMalformed(#[source] agentauth_core::Error),
    /// No scope was asked for.
    #[error("scope is required: name the permissions the token should carry")]
    ScopeMissing,
    /// The client does not hold these permissions.
    #[error(
        "the agent does not hold {}",
        .0.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
    )]
    ScopeNotHeld(Vec<String>),
    /// `txn` is empty, too long or outside its alphabet.
    #[error("txn must be 1 to 128 characters from [A-Za-z0-9-._:]")]
    TxnMalformed,
    /// The task named by `txn` was completed or revoked.
    #[error("the task {0} has been revoked")]
    TaskRevoked(String),
    /// A text parameter is longer than its bound.
    #[error("{parameter} is longer than {max} bytes")]
    TooLong {
        /// `purpose` or `request_context`.
        parameter: &'static str,
        /// Its bound in bytes.
        max: usize,
    },
    /// `expires_in` is not a positive number.
    #[error("expires_in must be a positive number of seconds")]
    Lifetime,
}

/// Why the `DPoP` proof of a token request was refused (RFC 9449 §4.3).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DpopRefusal {
    /// The `DPoP` header is not visible ASCII.
    #[error("the DPoP header is not text")]
    NotText,
    /// More than one `DPoP` header.
    #[error("exactly one DPoP header is allowed")]
    Repeated,
    /// The proof fails a check of RFC 9449 §4.3.
    #[error(transparent)]
    Invalid(#[from] DpopError),
    /// The proof's `jti` was used before.
    #[error("the DPoP proof was already used")]
    Replayed,
    /// A DPoP proof with tls_client_auth: the token is bound to the certificate.
    #[error(
        "with tls_client_auth the token is bound to the client certificate; send no DPoP proof"
    )]
    WithCertificate,
}

/// What a grant decided the new token says; signing, storing and auditing are shared.
pub(crate) struct Minted {
    pub(crate) sub: SpiffeId,
    pub(crate) scope: Scope,
    pub(crate) exp: i64,
    pub(crate) act: Option<Actor>,
    pub(crate) txn: Option<TaskId>,
    pub(crate) purpose: Option<String>,
    pub(crate) rctx: Option<String>,
    pub(crate) parent_jti: Option<String>,
    /// SPIFFE IDs of the subject and every actor of the new token.
    pub(crate) chain: Vec<SpiffeId>,
    /// Audit kind: `token.issued` or `token.exchanged`.
    pub(crate) kind: AuditKind,
    pub(crate) reason: String,
}

/// What the audit says about an attempt, filled in as it becomes known.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    client: String,
    authenticated: bool,
    audience: String,
    pub(crate) scope: String,
    pub(crate) txn: String,
}

/// What the HTTP request adds to a token request, read at the edge.
pub(crate) struct TokenCall {
    /// For the audit records.
    pub(crate) request_id: String,
    /// The client's address, for policy's `client_ip`.
    pub(crate) peer: IpAddr,
    /// The request's `DPoP` header.
    pub(crate) dpop: DpopHeader,
    /// The client's X.509-SVID from the TLS handshake (`serve --tls`).
    pub(crate) certificate: Option<crate::tls::ClientCertificate>,
}

/// The `DPoP` header of a token request.
pub(crate) enum DpopHeader {
    /// None: the token is bound to the agent's registered key (or is a bearer token).
    Absent,
    /// Exactly one proof.
    Proof(String),
    /// Several headers, or one that is not text.
    Unusable(DpopRefusal),
}

/// A token issued: what the token response says.
#[derive(Debug)]
pub(crate) struct Issued {
    /// The signed JWT.
    pub(crate) access_token: String,
    /// `Bearer` or `DPoP`.
    pub(crate) token_type: &'static str,
    /// Seconds until it expires.
    pub(crate) expires_in: i64,
    /// The granted (possibly policy-narrowed) scope.
    pub(crate) scope: String,
    /// Its task.
    pub(crate) txn: Option<String>,
}

/// Which grant a request uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    ClientCredentials,
    Exchange,
}

/// Issues a token for `req`, or refuses and audits the refusal. A poll of a
/// pending approval is not a refusal: the approval itself is audited.
pub(crate) async fn request_token(
    s: &State,
    req: &TokenRequest,
    call: &TokenCall,
) -> Result<Issued, AuthorityError> {
    let mut attempt = Attempt::default();
    let outcome = issue(s, req, call, &mut attempt).await;
    // A throttled request and one the store had no room for are not
    // audited: writing a record for each would feed the very load that
    // refused them (both are counted in the log instead).
    if let Err(error) = &outcome
        && !error.is_pending()
        && !matches!(
            error,
            AuthorityError::RateLimited(_) | AuthorityError::Busy(_)
        )
    {
        audit_refusal(s, &attempt, error, call).await;
    }
    outcome
}

/// Audits a refused token request with what was known when it failed: one
/// record for an authenticated client; a refusal before authentication is
/// only counted, per claimed client and address, into one record per window
/// ([`crate::refusals`]).
pub(crate) async fn audit_refusal(
    s: &State,
    attempt: &Attempt,
    error: &AuthorityError,
    call: &TokenCall,
) {
    if !attempt.authenticated {
        let claimed = format!(
            "{}{}",
            if attempt.client.is_empty() {
                ""
            } else {
                "unverified:"
            },
            attempt.client
        );
        s.refusals
            .count(&claimed, call.peer, error.status_and_code().1);
        return;
    }
    let actor = attempt.client.clone();
    let request_id = &call.request_id;
    let mut audit = event(AuditKind::TokenRefused, &actor, &actor, Decision::Deny);
    audit.audience = attempt.audience.clone();
    audit.scope = attempt.scope.clone();
    audit.txn = attempt.txn.clone();
    audit.reason = format!("{}: {error}", error.status_and_code().1);
    audit.request_id = request_id.to_owned();
    if let Err(e) = s.store.append_audit(&[audit]).await {
        tracing::error!(error = %e, "could not audit a refused token request");
    }
}

async fn issue(
    s: &State,
    req: &TokenRequest,
    call: &TokenCall,
    attempt: &mut Attempt,
) -> Result<Issued, AuthorityError> {
    let grant = grant_type(req)?;
    let creds = ClientCredentials {
        assertion_type: req.client_assertion_type.as_deref(),
        assertion: req.client_assertion.as_deref(),
        client_id: req.client_id.as_deref(),
        certificate: call.certificate.as_ref(),
    };
    let client = authenticate(s, &creds, &s.endpoint("/oauth/token"), &mut attempt.client).await?;
    attempt.authenticated = true;
    s.throttle.client(&client.agent.id)?;
    let presented = match req.approval_id.as_deref() {
        Some(id) => Some(approval::presented(s, id, &client.agent.id).await?),
        None => None,
    };
    let binding = key_binding(s, &call.dpop, &client).await?;
    let (audience, target_agent) = target(s, req, attempt).await?;
    let lifetime = lifetime(s, req.expires_in.as_deref())?;
    let now = unix_now();
    let mut minted = match grant {
        Grant::Exchange => {
            exchange::delegate(s, req, &client, &audience, now + lifetime, attempt).await?
        }
        Grant::ClientCredentials => {
            client_credentials(
                s,
                req,
                &client,
                &audience,
                presented.as_ref(),
                now + lifetime,
                attempt,
            )
            .await?
        }
    };
    let decided = Decided {
        client: &client,
        audience: &audience,
        target: target_agent.as_ref(),
        presented: presented.as_ref(),
        grant,
        lifetime,
    };
    let approval_id = apply_policy(s, req, call, &decided, &mut minted).await?;
    let claims = AccessClaims {
        iss: s.issuer.clone(),
        sub: minted.sub.clone(),
        aud: audience.clone(),
        client_id: client.agent.id.clone(),
        scope: minted.scope.clone(),
        // A token never outlives its (ephemeral) agent.
        exp: minted.exp.min(client.agent.expires_at.unwrap_or(i64::MAX)),
        iat: now,
        nbf: now,
        jti: random_b64(16),
        cnf: binding.cnf(),
        act: minted.act.take(),
        txn: minted.txn.take(),
        purpose: minted.purpose.take(),
        rctx: minted.rctx.take(),
    };
    let access_token = sign(s, &claims);
    record(
        s,
        &client,
        &claims,
        &minted,
        &binding,
        approval_id.as_deref(),
        call,
        attempt,
    )
    .await?;
    tracing::info!(client = %claims.client_id, audience = %claims.aud, scope = %claims.scope, jti = %claims.jti, "token issued");
    Ok(Issued {
        access_token,
        token_type: binding.token_type(),
        expires_in: claims.exp - now,
        scope: claims.scope.to_string(),
        txn: claims.txn.map(|t| t.to_string()),
    })
}

fn grant_type(req: &TokenRequest) -> Result<Grant, AuthorityError> {
    match req.grant_type.as_deref() {
        Some("client_credentials") => Ok(Grant::ClientCredentials),
        Some(TOKEN_EXCHANGE_GRANT) => Ok(Grant::Exchange),
        Some(other) => {
            Err(TokenRequestFault::UnsupportedGrantType(other.chars().take(80).collect()).into())
        }
        None => Err(TokenRequestFault::GrantTypeMissing.into()),
    }
}

/// What a client_credentials token carries: the client's own permissions
/// and a task it joins or starts.
async fn client_credentials(
    s: &State,
    req: &TokenRequest,
    client: &AuthenticatedClient,
    audience: &SpiffeId,
    presented: Option<&ApprovalRow>,
    exp: i64,
    attempt: &mut Attempt,
) -> Result<Minted, AuthorityError> {
    let scope = granted_scope(s, req, client, audience, attempt)?;
    // Polling an approval without naming the task continues the approved one.
    let txn = req
        .txn
        .as_deref()
        .or(presented.and_then(|a| a.txn.as_ref().map(TaskId::as_str)));
    let (txn, purpose, rctx) = task_context(s, req, txn, client, audience, attempt).await?;
    Ok(Minted {
        sub: client.agent.id.clone(),
        scope,
        exp,
        act: None,
        txn,
        purpose,
        rctx,
        parent_jti: None,
        chain: vec![client.agent.id.clone()],
        kind: AuditKind::TokenIssued,
        reason: "client_credentials".into(),
    })
}

/// Who asks, for whom, and under which approval: what policy decides on.
struct Decided<'a> {
    client: &'a AuthenticatedClient,
    audience: &'a SpiffeId,
    target: Option<&'a AgentRow>,
    presented: Option<&'a ApprovalRow>,
    grant: Grant,
    /// The lifetime asked for (after the cap), which an approval binds.
    lifetime: i64,
}

/// Narrows the scope to what the active policy set permits and, where a
/// permit asks for a person's approval, settles it; returns the approval
/// to consume with the token.
async fn apply_policy(
    s: &State,
    req: &TokenRequest,
    call: &TokenCall,
    d: &Decided<'_>,
    minted: &mut Minted,
) -> Result<Option<String>, AuthorityError> {
    let verdict = policy::judge(
        s,
        &policy::Ask {
            principal: &d.client.agent,
            target: d.target,
            scope: &minted.scope,
            purpose: minted.purpose.as_deref().unwrap_or(""),
            txn: minted.txn.as_ref().map_or("", TaskId::as_str),
            chain: &minted.chain,
            delegation_depth: minted.chain.len().saturating_sub(1) as i64,
            client_ip: call.peer,
            tls_peer: call
                .certificate
                .as_ref()
                .map(|c| c.id.to_string())
                .unwrap_or_default(),
        },
    )
    .await?;
    let Verdict::Issue {
        scope,
        version,
        dropped,
        approval: needs,
    } = verdict
    else {
        return Ok(None);
    };
    minted.scope = scope;
    minted.reason = format!("{}; policy version {version}", minted.reason);
    if !dropped.is_empty() {
        minted.reason = format!("{}; narrowed: {}", minted.reason, dropped.join("; "));
    }
    let Some(needs) = needs else {
        return Ok(None);
    };
    let lineage = crate::registry::lineage(s, &d.client.agent).await?;
    let request = approval::Binding {
        agent: &d.client.agent.id,
        subject: &minted.sub,
        audience: d.audience,
        scope: &minted.scope,
        txn: minted.txn.as_ref(),
        purpose: minted.purpose.as_deref().unwrap_or(""),
        grant_type: req.grant_type.as_deref().unwrap_or(""),
        request_context: minted.rctx.as_deref().unwrap_or(""),
        lifetime: d.lifetime,
        lineage: &lineage,
    };
    let explicit_txn = d.grant == Grant::Exchange || req.txn.is_some();
    let id = approval::settle(
        s,
        d.presented,
        &request,
        explicit_txn,
        &needs,
        &call.request_id,
    )
    .await?;
    let by = d
        .presented
        .and_then(|a| a.decided_by.as_deref())
        .unwrap_or_default();
    minted.reason = format!("{}; approved by {by} ({id})", minted.reason);
    Ok(Some(id))
}

/// The token, signed with the authority's current key.
fn sign(s: &State, claims: &AccessClaims) -> String {
    let ring = s.keys();
    let (kid, key) = ring.signer(claims.iat);
    let header = Header {
        alg: key.alg(),
        typ: Some(ACCESS_TOKEN_TYP.into()),
        kid: Some(kid.to_owned()),
        jwk: None,
    };
    sign_compact(&header, claims, key)
}

/// Stores the token with the single use of its client assertion (and
/// approval) and its audit record, in one transaction.
#[allow(clippy::too_many_arguments)]
async fn record(
    s: &State,
    client: &AuthenticatedClient,
    claims: &AccessClaims,
    minted: &Minted,
    binding: &Binding,
    approval_id: Option<&str>,
    call: &TokenCall,
    attempt: &mut Attempt,
) -> Result<(), AuthorityError> {
    let record = IssuedToken {
        jti: claims.jti.clone(),
        client_id: claims.client_id.clone(),
        subject: claims.sub.clone(),
        audience: claims.aud.clone(),
        scope: claims.scope.clone(),
        issued_at: claims.iat,
        expires_at: claims.exp,
        parent_jti: minted.parent_jti.clone(),
        txn: claims.txn.clone(),
        auth_jkt: Some(client.key.thumbprint()),
        cnf_jkt: claims.cnf.as_ref().map(|c| c.jkt.clone()),
    };
    let mut audit = event(minted.kind, &claims.client_id, &claims.jti, Decision::Allow);
    audit.audience = claims.aud.to_string();
    audit.scope = record.scope.to_string();
    audit.reason = format!("{}; {}", minted.reason, binding.describe());
    audit.request_id = call.request_id.clone();
    audit.txn = claims
        .txn
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    audit.chain = claims.actor_chain_text();
    audit.purpose = claims.purpose.clone().unwrap_or_default();
    let started = std::time::Instant::now();
    let stored = s
        .store
        .issue_token(&client.assertion, &record, approval_id, &audit)
        .await;
    s.metrics.audit_appended(started.elapsed());
    match stored {
        Ok(()) => Ok(()),
        Err(e) => {
            // A replayed assertion proves nothing about who presents it now.
            attempt.authenticated = !matches!(e, StoreError::ReplayedAssertion);
            if let StoreError::Stale(_) = e {
                return Err(ApprovalRefusal::AlreadyUsed.into());
            }
            Err(e.into())
        }
    }
}

/// The one target agent (or the authority itself, with no registry entry),
/// from `resource` or `audience`.
async fn target(
    s: &State,
    req: &TokenRequest,
    attempt: &mut Attempt,
) -> Result<(SpiffeId, Option<AgentRow>), AuthorityError> {
    let given = match (req.resource.as_deref(), req.audience.as_deref()) {
        (Some(r), Some(a)) if r != a => return Err(TokenRequestFault::TargetsDiffer.into()),
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => return Err(TokenRequestFault::TargetMissing.into()),
    };
    attempt.audience = given.chars().take(256).collect();
    let unknown = || TokenRequestFault::UnknownTarget(attempt.audience.clone());
    let id = SpiffeId::parse(given).map_err(|_| unknown())?;
    if id == s.authority_id {
        return Ok((id, None));
    }
    let agent = registry::agent_by_id(s, &id).await?.ok_or_else(unknown)?;
    if let Some(why) = registry::unusable(&agent, unix_now()) {
        return Err(TokenRequestFault::TargetUnusable {
            name: agent.name.to_string(),
            why,
        }
        .into());
    }
    Ok((id, Some(agent)))
}

/// The requested scope, refused whole if any permission is not held.
fn granted_scope(
    s: &State,
    req: &TokenRequest,
    client: &AuthenticatedClient,
    audience: &SpiffeId,
    attempt: &mut Attempt,
) -> Result<Scope, AuthorityError> {
    let raw = req.scope.as_deref().unwrap_or("");
    attempt.scope = raw.chars().take(512).collect();
    let asked = Scope::parse(raw).map_err(TokenRequestFault::ScopeMalformed)?;
    if asked.is_empty() {
        return Err(TokenRequestFault::ScopeMissing.into());
    }
    let mut held = client.agent.permissions.clone();
    if *audience == s.authority_id {
        let own = held.iter().map(Permission::as_str);
        held = Scope::from_strs(own.chain(AUTHORITY_IMPLICIT_SCOPES))
            .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    }
    let missing = asked.missing_from(&held);
    if !missing.is_empty() {
        return Err(TokenRequestFault::ScopeNotHeld(missing).into());
    }
    Ok(asked)
}

/// What the new token is bound to.
enum Binding {
    /// The agent's registered key: requests must carry its HTTP message signature.
    RegisteredKey(PublicJwk),
    /// The key of the request's DPoP proof (RFC 9449).
    Dpop(PublicJwk),
    /// The client certificate of tls_client_auth and its key (RFC 8705).
    Certificate(PublicJwk, std::sync::Arc<Vec<u8>>),
    /// Nothing: a bearer token, only for agents the registry allows it.
    Bearer,
}

impl Binding {
    fn cnf(&self) -> Option<Cnf> {
        match self {
            Self::RegisteredKey(key) | Self::Dpop(key) => Some(Cnf::for_key(key)),
            Self::Certificate(key, certificate) => Some(Cnf::for_certificate(key, certificate)),
            Self::Bearer => None,
        }
    }

    fn token_type(&self) -> &'static str {
        match self {
            Self::Dpop(_) => "DPoP",
            _ => "Bearer",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::RegisteredKey(_) => "bound to the agent's key",
            Self::Dpop(_) => "bound to the DPoP proof key",
            Self::Certificate(..) => "bound to the client certificate (RFC 8705)",
            Self::Bearer => "bearer token without key binding (allowed by the registry)",
        }
    }
}

/// A `DPoP` header binds the token to the proof's key (its `jti` is single
/// use); otherwise the agent's registered key, unless the registry lets this
/// agent have bearer tokens.
async fn key_binding(
    s: &State,
    dpop: &DpopHeader,
    client: &AuthenticatedClient,
) -> Result<Binding, AuthorityError> {
    if let Some(certificate) = &client.certificate {
        return match dpop {
            DpopHeader::Absent => Ok(Binding::Certificate(
                client.key.clone(),
                certificate.clone(),
            )),
            _ => Err(DpopRefusal::WithCertificate.into()),
        };
    }
    let proof = match dpop {
        DpopHeader::Absent => {
            return Ok(if client.agent.bearer_allowed {
                Binding::Bearer
            } else {
                Binding::RegisteredKey(client.key.clone())
            });
        }
        DpopHeader::Proof(proof) => proof.as_str(),
        DpopHeader::Unusable(why) => return Err(AuthorityError::Dpop(why.clone())),
    };
    let now = unix_now();
    let endpoint = s.endpoint("/oauth/token");
    let expect = DpopExpectations {
        htm: "POST",
        htu: &endpoint,
        access_token: None,
        now,
        max_age_secs: DEFAULT_DPOP_MAX_AGE_SECS,
        leeway_secs: DEFAULT_LEEWAY_SECS,
    };
    let verified = verify_dpop_proof(proof, &expect).map_err(DpopRefusal::Invalid)?;
    let used = agentauth_store::UsedAssertion {
        client_id: format!("dpop:{}", verified.jkt),
        jti: verified.jti,
        expires_at: verified.iat + DEFAULT_DPOP_MAX_AGE_SECS + DEFAULT_LEEWAY_SECS,
    };
    match s.store.consume_assertion(&used).await {
        Err(StoreError::ReplayedAssertion) => Err(DpopRefusal::Replayed.into()),
        other => other
            .map(|()| Binding::Dpop(verified.key))
            .map_err(Into::into),
    }
}

/// The task of a new client_credentials token: the given `txn` (refused if
/// revoked or started by another agent) or a fresh one, with its purpose
/// and request context, bounded.
async fn task_context(
    s: &State,
    req: &TokenRequest,
    txn: Option<&str>,
    client: &AuthenticatedClient,
    audience: &SpiffeId,
    attempt: &mut Attempt,
) -> Result<(Option<TaskId>, Option<String>, Option<String>), AuthorityError> {
    let purpose = bounded(req.purpose.as_deref(), "purpose", MAX_PURPOSE)?;
    let rctx = bounded(
        req.request_context.as_deref(),
        "request_context",
        MAX_REQUEST_CONTEXT,
    )?;
    if *audience == s.authority_id {
        return Ok((None, purpose, rctx));
    }
    let txn = match txn {
        Some(txn) => {
            let txn = TaskId::new(txn).map_err(|_| TokenRequestFault::TxnMalformed)?;
            attempt.txn = txn.to_string();
            if s.store.task_revoked(&txn).await? {
                return Err(TokenRequestFault::TaskRevoked(txn.to_string()).into());
            }
            // Checked again when the token is stored, against a racing start.
            if let Some(owner) = s.store.task_owner(&txn).await?
                && owner != client.agent.id
            {
                let txn = txn.to_string();
                return Err(crate::TaskRefusal::StartedByAnother { txn }.into());
            }
            txn
        }
        None => TaskId::generate(),
    };
    Ok((Some(txn), purpose, rctx))
}

/// An optional text parameter, refused when longer than `max` bytes.
fn bounded(
    value: Option<&str>,
    parameter: &'static str,
    max: usize,
) -> Result<Option<String>, TokenRequestFault> {
    match value {
        Some(v) if v.len() > max => Err(TokenRequestFault::TooLong { parameter, max }),
        Some(v) if !v.is_empty() => Ok(Some(v.to_owned())),
        _ => Ok(None),
    }
}

/// The lifetime to grant: the default, or what was asked up to the maximum.
fn lifetime(s: &State, asked: Option<&str>) -> Result<i64, AuthorityError> {
    let Some(asked) = asked else {
        return Ok(s.config.token_lifetime_secs);
    };
    let secs: i64 = asked
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(TokenRequestFault::Lifetime)?;
    Ok(secs.min(s.config.max_token_lifetime_secs))
}
