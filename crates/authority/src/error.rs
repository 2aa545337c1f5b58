//! `AuthorityError`, and the one place that maps each failure to an HTTP
//! status and an OAuth error code.
//!
//! Each domain names its own refusals (`RegistryRefusal`, `ApprovalRefusal`,
//! …) next to the rules they come from, one variant per failed rule; this
//! module decides, for every one of them, what the client is told.

use agentauth_api::{OAuthError, PolicyProblem};
use agentauth_store::StoreError;
use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use thiserror::Error;

use crate::approval::ApprovalRefusal;
use crate::audit::{ApiTokenRefusal, AuditRefusal};
use crate::body::BodyError;
use crate::client_auth::ClientAuthFailure;
use crate::delegation::DelegationRefusal;
use crate::issuance::{DpopRefusal, ExchangeRefusal, TokenRequestFault};
use crate::policy::PolicyRefusal;
use crate::registry::RegistryRefusal;
use crate::revocation::RevocationRefusal;
use crate::task::TaskRefusal;

/// Every way an authority request fails. Each variant maps to exactly one
/// HTTP status and one machine-readable code, here and nowhere else.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The request body or query string is unreadable or malformed.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// No credential at all for an API that needs one (RFC 6750 §3.1: no
    /// error code in the challenge).
    #[error("{0}")]
    MissingCredential(Needed),
    /// A Bearer credential was presented where only the admin credential
    /// is accepted, and it is not the admin credential.
    #[error("the admin credential is not valid")]
    AdminCredentialInvalid,
    /// Client authentication (private_key_jwt) failed.
    #[error(transparent)]
    ClientAuth(#[from] ClientAuthFailure),
    /// An agent's access token for the authority's own API was refused.
    #[error(transparent)]
    ApiToken(#[from] ApiTokenRefusal),
    /// A token request broke a rule of the token endpoint.
    #[error(transparent)]
    TokenRequest(#[from] TokenRequestFault),
    /// The DPoP proof of a token request was refused (RFC 9449).
    #[error(transparent)]
    Dpop(#[from] DpopRefusal),
    /// A token exchange broke a delegation rule (RFC 8693).
    #[error(transparent)]
    Exchange(#[from] ExchangeRefusal),
    /// A registration, spawn or registry change broke a registry rule.
    #[error(transparent)]
    Registry(#[from] RegistryRefusal),
    /// A certificate signing request was refused.
    #[error(transparent)]
    Svid(#[from] crate::svid::SvidRefusal),
    /// A federation request was refused, or the bundle could not be fetched.
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationRefusal),
    /// A node's join token, attestation or call was refused.
    #[error(transparent)]
    Node(#[from] crate::node::NodeRefusal),
    /// A delegation grant broke a grant rule.
    #[error(transparent)]
    Delegation(#[from] DelegationRefusal),
    /// An approval was refused, or a decision on one is malformed.
    #[error(transparent)]
    Approval(#[from] ApprovalRefusal),
    /// A policy request was refused, or policy cannot decide.
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    /// A policy set does not parse or validate; each problem has a position.
    #[error("{}", describe_problems(.0))]
    InvalidPolicy(Vec<agentauth_policy::Problem>),
    /// An audit query or reported batch broke an audit rule.
    #[error(transparent)]
    Audit(#[from] AuditRefusal),
    /// A revocation request, or a read of the feed, was refused.
    #[error(transparent)]
    Revocation(#[from] RevocationRefusal),
    /// A task operation was refused.
    #[error(transparent)]
    Task(#[from] TaskRefusal),
    /// An operator could not be added, or lacks the rights an API needs.
    #[error(transparent)]
    Operator(#[from] crate::operator::OperatorRefusal),
    /// An agent asked to revoke a token issued to another client (RFC 7009 §2.1).
    #[error("the token was not issued to this client")]
    TokenOfAnotherClient,
    /// The named resource does not exist.
    #[error(transparent)]
    NotFound(#[from] Missing),
    /// The store refused a write: a duplicate, a missing record, or a record
    /// no longer in a state that allows the change.
    #[error(transparent)]
    Stored(StoreError),
    /// A person has not yet decided on the request (RFC 8628 §3.5 shape).
    #[error("a person must approve this request; poll again with approval_id")]
    AuthorizationPending {
        /// The approval to poll with.
        approval_id: String,
        /// Seconds to wait between polls.
        interval: i64,
        /// Seconds until the approval expires.
        expires_in: i64,
    },
    /// The agent polled sooner than `interval` after its last poll.
    #[error("polling too fast: wait at least {interval} seconds between polls")]
    SlowDown {
        /// Seconds to wait between polls.
        interval: i64,
    },
    /// A rate limit of the token endpoint was reached (429 with `Retry-After`).
    #[error(transparent)]
    RateLimited(#[from] crate::throttle::Throttled),
    /// The store could not take the write now (its queue is full, or its
    /// writer has stopped); nothing was written (503 with `Retry-After`).
    #[error("the authority cannot record this now; nothing was recorded, retry shortly")]
    Busy(StoreError),
    /// The configuration cannot work; the authority does not start.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The store failed (a database error other than a refusal); details
    /// are logged, not returned, and counted in `/metrics`.
    #[error("internal error")]
    StoreFailed(String),
    /// Something broke on our side; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// Put on every error response, for the request metrics: the OAuth code and
/// whether the store was at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The response's `error` code.
    pub(crate) code: &'static str,
    /// The store failed or could not take the write.
    pub(crate) store_fault: bool,
}

/// Which credential a request without any should have carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Needed {
    /// The admin credential.
    #[error("this API needs the admin credential as a Bearer token")]
    Admin,
    /// An agent's access token for the authority.
    #[error("an access token for the authority is required")]
    AgentToken,
    /// The admin credential, or an agent's token that may spawn agents.
    #[error(
        "this API needs the admin credential, or an agent's access token for the authority with \"agents:spawn\", as a Bearer token"
    )]
    AdminOrSpawnToken,
}

/// A named resource that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Missing {
    /// No registered agent has this name (or SPIFFE ID).
    #[error("agent \"{0}\" was not found")]
    Agent(String),
    /// No token ever carried this task.
    #[error("task \"{0}\" was not found")]
    Task(String),
    /// No approval has this ID.
    #[error("approval {0} was not found")]
    Approval(String),
    /// No federated trust domain has this name.
    #[error("no federated trust domain {0}")]
    FederatedDomain(String),
    /// No CA in the bundle has this serial number.
    #[error("no CA with serial {0}")]
    Ca(String),
    /// No node has this name.
    #[error("no node {0}")]
    Node(String),
    /// No policy set has this version.
    #[error("policy set version {0} was not found")]
    PolicyVersion(i64),
    /// A dry run names neither files nor a version, and no set is active.
    #[error("no policy set is active: name a version or give files")]
    NoActivePolicy,
}

fn describe_problems(problems: &[agentauth_policy::Problem]) -> String {
    match problems {
        [] => "the policy set is invalid".into(),
        [one] => format!("the policy set is invalid: {one}"),
        [first, rest @ ..] => format!(
            "the policy set is invalid: {first} (and {} more problems)",
            rest.len()
        ),
    }
}

impl From<agentauth_policy::PolicyError> for AuthorityError {
    fn from(e: agentauth_policy::PolicyError) -> Self {
        match e {
            agentauth_policy::PolicyError::Invalid(problems) => Self::InvalidPolicy(problems),
            other => Self::Policy(PolicyRefusal::Query(other)),
        }
    }
}

const BAD_REQUEST: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "invalid_request");

fn node_code(e: &crate::node::NodeRefusal) -> (StatusCode, &'static str) {
    use crate::node::NodeRefusal as N;
    match e {
        N::JoinToken => (StatusCode::UNAUTHORIZED, "invalid_grant"),
        N::NotANode => (StatusCode::UNAUTHORIZED, "invalid_client"),
        N::Evicted(_) | N::NotAssigned(_) => (StatusCode::FORBIDDEN, "access_denied"),
        N::Name | N::Ttl | N::TooManyTokens | N::Audience => BAD_REQUEST,
    }
}
const BAD_SCOPE: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "invalid_scope");
const BAD_TARGET: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "invalid_target");
const BAD_GRANT: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "invalid_grant");
const FORBIDDEN: (StatusCode, &str) = (StatusCode::FORBIDDEN, "insufficient_scope");
const INVALID_TOKEN: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "invalid_token");

impl AuthorityError {
    /// The message with internal details, for the operator (logs, CLI), never for clients.
    pub fn detail(&self) -> String {
        match self {
            Self::Internal(detail) | Self::StoreFailed(detail) => detail.clone(),
            Self::Busy(cause) => cause.to_string(),
            other => other.to_string(),
        }
    }

    /// HTTP status and OAuth error code: the one place that decides them.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Body(e) => body_code(e),
            Self::MissingCredential(_) => (StatusCode::UNAUTHORIZED, "invalid_request"),
            Self::AdminCredentialInvalid => INVALID_TOKEN,
            Self::ClientAuth(_) => (StatusCode::UNAUTHORIZED, "invalid_client"),
            Self::ApiToken(e) => api_token_code(e),
            Self::TokenRequest(e) => token_request_code(e),
            Self::Dpop(_) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
            Self::Exchange(e) => exchange_code(e),
            Self::Registry(e) => registry_code(e),
            Self::Revocation(RevocationRefusal::TooManyStreams) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            Self::Delegation(_) | Self::Audit(_) | Self::Revocation(_) | Self::Svid(_) => {
                BAD_REQUEST
            }
            Self::Federation(crate::federation::FederationRefusal::Fetch { .. }) => {
                (StatusCode::BAD_GATEWAY, "bundle_unavailable")
            }
            Self::Federation(crate::federation::FederationRefusal::Exists(_)) => {
                (StatusCode::CONFLICT, "conflict")
            }
            Self::Federation(_) => BAD_REQUEST,
            Self::Node(e) => node_code(e),
            Self::Approval(e) => approval_code(e),
            Self::Policy(e) => policy_code(e),
            Self::InvalidPolicy(_) => (StatusCode::BAD_REQUEST, "invalid_policy"),
            Self::Task(TaskRefusal::NotStarter { .. }) => FORBIDDEN,
            Self::Task(_) => BAD_REQUEST,
            Self::Operator(crate::operator::OperatorRefusal::NotAdmin(_)) => FORBIDDEN,
            Self::Operator(_) => BAD_REQUEST,
            Self::TokenOfAnotherClient => (StatusCode::BAD_REQUEST, "unauthorized_client"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Stored(StoreError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Stored(_) => (StatusCode::CONFLICT, "conflict"),
            Self::AuthorizationPending { .. } => (StatusCode::BAD_REQUEST, "authorization_pending"),
            Self::SlowDown { .. } => (StatusCode::BAD_REQUEST, "slow_down"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            Self::Config(_) | Self::Internal(_) | Self::StoreFailed(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
        }
    }

    /// Whether this only says "not yet" to a polling agent (nothing to audit).
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            Self::AuthorizationPending { .. } | Self::SlowDown { .. }
        )
    }

    /// The error body: code, description, and the members some codes add.
    fn body(&self) -> OAuthError {
        let (_, code) = self.status_and_code();
        let mut body = OAuthError::new(code, self.to_string());
        match self {
            Self::InvalidPolicy(problems) => {
                body.problems = Some(problems.iter().map(problem).collect());
            }
            Self::AuthorizationPending {
                approval_id,
                interval,
                expires_in,
            } => {
                body.approval_id = Some(approval_id.clone());
                body.interval = Some(*interval);
                body.expires_in = Some(*expires_in);
            }
            Self::SlowDown { interval } => body.interval = Some(*interval),
            _ => {}
        }
        body
    }
}

fn body_code(e: &BodyError) -> (StatusCode, &'static str) {
    match e {
        BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
        BodyError::WrongContentType { .. } => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request")
        }
        _ => BAD_REQUEST,
    }
}

fn api_token_code(e: &ApiTokenRefusal) -> (StatusCode, &'static str) {
    match e {
        ApiTokenRefusal::LacksPermission(_) => FORBIDDEN,
        _ => INVALID_TOKEN,
    }
}

fn token_request_code(e: &TokenRequestFault) -> (StatusCode, &'static str) {
    use TokenRequestFault as F;
    match e {
        F::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        F::TargetsDiffer | F::TargetMissing | F::UnknownTarget(_) | F::TargetUnusable { .. } => {
            BAD_TARGET
        }
        F::ScopeMalformed(_) | F::ScopeMissing | F::ScopeNotHeld(_) => BAD_SCOPE,
        _ => BAD_REQUEST,
    }
}

/// A refused audience is `invalid_target`, a refused scope `invalid_scope`,
/// every other delegation rule `invalid_request`.
fn exchange_code(e: &ExchangeRefusal) -> (StatusCode, &'static str) {
    use ExchangeRefusal as R;
    match e {
        R::AuthorityAudience | R::NoGrant { .. } => BAD_TARGET,
        R::ScopeMissing | R::ScopeMalformed(_) | R::ScopeBeyond { .. } => BAD_SCOPE,
        _ => BAD_REQUEST,
    }
}

fn registry_code(e: &RegistryRefusal) -> (StatusCode, &'static str) {
    match e {
        RegistryRefusal::DelegatedSpawn | RegistryRefusal::SpawnWithdrawn => FORBIDDEN,
        _ => BAD_REQUEST,
    }
}

fn approval_code(e: &ApprovalRefusal) -> (StatusCode, &'static str) {
    use ApprovalRefusal as R;
    match e {
        R::Unknown | R::AlreadyUsed | R::DifferentRequest { .. } => BAD_GRANT,
        R::Denied { .. } => (StatusCode::BAD_REQUEST, "access_denied"),
        R::Expired { .. } => (StatusCode::BAD_REQUEST, "expired_token"),
        R::NotAnApprover { .. } => (StatusCode::FORBIDDEN, "not_an_approver"),
        _ => BAD_REQUEST,
    }
}

fn policy_code(e: &PolicyRefusal) -> (StatusCode, &'static str) {
    match e {
        PolicyRefusal::NoLongerLoads { .. } => (StatusCode::CONFLICT, "conflict"),
        PolicyRefusal::Unavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        PolicyRefusal::PermitsNone { .. } => BAD_SCOPE,
        _ => BAD_REQUEST,
    }
}

/// A policy problem as the error body lists it.
fn problem(p: &agentauth_policy::Problem) -> PolicyProblem {
    PolicyProblem {
        file: p.file.clone(),
        line: p.line,
        column: p.column,
        message: p.message.clone(),
    }
}

impl From<StoreError> for AuthorityError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::Stale(_) => {
                Self::Stored(e)
            }
            StoreError::ReplayedAssertion => Self::ClientAuth(ClientAuthFailure::Replayed),
            StoreError::SubjectRevoked => Self::Exchange(ExchangeRefusal::SubjectRevoked(
                agentauth_core::Revoked::Token,
            )),
            StoreError::TaskOfAnother(txn) => Self::Task(TaskRefusal::StartedByAnother { txn }),
            StoreError::TooManyChildren(limit) => {
                Self::Registry(RegistryRefusal::TooManyChildren {
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                })
            }
            StoreError::Overloaded | StoreError::Unavailable(_) => Self::Busy(e),
            other => Self::StoreFailed(other.to_string()),
        }
    }
}

impl IntoResponse for AuthorityError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Internal(detail) => tracing::error!(%detail, "request failed"),
            Self::StoreFailed(detail) => tracing::error!(%detail, "request failed in the store"),
            Self::Busy(cause) => tracing::warn!(%cause, "request refused: the store is busy"),
            _ => {}
        }
        let mut response = (status, Json(self.body())).into_response();
        response.extensions_mut().insert(Refusal {
            code,
            store_fault: matches!(self, Self::StoreFailed(_) | Self::Busy(_)),
        });
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::Revocation(RevocationRefusal::TooManyStreams) = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Self::Busy(_) = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::RateLimited(throttled) = &self {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(throttled.retry_after_secs),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self {
                Self::MissingCredential(_) => "Bearer realm=\"agentauth\"".to_owned(),
                _ => format!("Bearer realm=\"agentauth\", error=\"{code}\""),
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: impl Into<AuthorityError>) -> (u16, &'static str) {
        let (status, code) = e.into().status_and_code();
        (status.as_u16(), code)
    }

    #[test]
    fn each_domain_refusal_maps_to_the_code_of_its_rule() {
        assert_eq!(
            code(BodyError::TooLarge { limit: 1 }),
            (413, "request_too_large")
        );
        let media = BodyError::WrongContentType {
            expected: "application/json",
        };
        assert_eq!(code(media), (415, "invalid_request"));
        assert_eq!(
            code(BodyError::MissingParameter("token")),
            (400, "invalid_request")
        );
        assert_eq!(code(ClientAuthFailure::Replayed), (401, "invalid_client"));
        assert_eq!(code(ApiTokenRefusal::AgentDeleted), (401, "invalid_token"));
        let lacks = ApiTokenRefusal::LacksPermission("audit:write");
        assert_eq!(code(lacks), (403, "insufficient_scope"));
        assert_eq!(
            code(RegistryRefusal::DelegatedSpawn),
            (403, "insufficient_scope")
        );
        assert_eq!(code(RegistryRefusal::TooManyTags), (400, "invalid_request"));
        assert_eq!(
            code(StoreError::TooManyChildren(16)),
            (400, "invalid_request")
        );
        let deep = RegistryRefusal::SpawnTooDeep { depth: 5, limit: 4 };
        assert_eq!(code(deep), (400, "invalid_request"));
        let grant = TokenRequestFault::UnsupportedGrantType("password".into());
        assert_eq!(code(grant), (400, "unsupported_grant_type"));
        assert_eq!(
            code(TokenRequestFault::TargetMissing),
            (400, "invalid_target")
        );
        assert_eq!(
            code(TokenRequestFault::ScopeMissing),
            (400, "invalid_scope")
        );
        assert_eq!(code(TokenRequestFault::Lifetime), (400, "invalid_request"));
        assert_eq!(code(DpopRefusal::Replayed), (400, "invalid_dpop_proof"));
        let none = PolicyRefusal::PermitsNone {
            version: 1,
            denied: vec![],
        };
        assert_eq!(code(none), (400, "invalid_scope"));
        let broken = PolicyRefusal::Unavailable { version: 2 };
        assert_eq!(code(broken), (503, "temporarily_unavailable"));
        let stale = PolicyRefusal::NoLongerLoads {
            version: 2,
            why: "x".into(),
        };
        assert_eq!(code(stale), (409, "conflict"));
        assert_eq!(code(AuditRefusal::BatchTooLarge), (400, "invalid_request"));
        let full = RevocationRefusal::TooManyStreams;
        assert_eq!(code(full), (503, "temporarily_unavailable"));
        let starter = TaskRefusal::NotStarter {
            agent: "a".into(),
            txn: "t".into(),
        };
        assert_eq!(code(starter), (403, "insufficient_scope"));
        let joined = TaskRefusal::StartedByAnother { txn: "t".into() };
        assert_eq!(code(joined), (400, "invalid_request"));
        assert_eq!(code(Missing::PolicyVersion(9)), (404, "not_found"));
        assert_eq!(
            code(StoreError::Conflict("agent".into())),
            (409, "conflict")
        );
        assert_eq!(
            code(StoreError::NotFound("agent".into())),
            (404, "not_found")
        );
        assert_eq!(code(StoreError::Corrupt("x".into())), (500, "server_error"));
    }

    #[test]
    fn a_replayed_assertion_from_the_store_is_a_client_authentication_failure() {
        let e = AuthorityError::from(StoreError::ReplayedAssertion);
        assert!(matches!(
            e,
            AuthorityError::ClientAuth(ClientAuthFailure::Replayed)
        ));
        let e = AuthorityError::from(StoreError::Corrupt("row 7".into()));
        assert_eq!(e.to_string(), "internal error");
        assert_eq!(e.detail(), "stored data is corrupt: row 7");
    }

    #[test]
    fn a_policy_query_error_keeps_its_typed_cause() {
        let cause = agentauth_policy::RequestError::Name(agentauth_policy::Cause(
            std::sync::Arc::new(std::io::Error::other("bad name")),
        ));
        let e = AuthorityError::from(agentauth_policy::PolicyError::Request(cause));
        assert!(
            matches!(
                &e,
                AuthorityError::Policy(PolicyRefusal::Query(
                    agentauth_policy::PolicyError::Request(_)
                ))
            ),
            "{e:?}"
        );
        assert_eq!(e.status_and_code().1, "invalid_request");
    }

    #[test]
    fn a_missing_credential_challenge_carries_no_error_code() {
        let missing = AuthorityError::MissingCredential(Needed::Admin).into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"agentauth\""
        );
        let wrong = AuthorityError::AdminCredentialInvalid.into_response();
        assert_eq!(
            wrong.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"agentauth\", error=\"invalid_token\""
        );
    }

    #[test]
    fn too_many_streams_says_when_to_retry() {
        let full = AuthorityError::from(RevocationRefusal::TooManyStreams).into_response();
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.headers()[header::RETRY_AFTER], "5");
        assert_eq!(full.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn a_busy_store_is_a_503_that_says_when_to_retry_and_hides_its_cause() {
        for cause in [
            StoreError::Overloaded,
            StoreError::Unavailable("disk I/O error at /var/lib/x".into()),
        ] {
            let e = AuthorityError::from(cause);
            assert!(matches!(e, AuthorityError::Busy(_)), "{e:?}");
            assert_eq!(code(e), (503, "temporarily_unavailable"));
        }
        let e = AuthorityError::from(StoreError::Unavailable("disk I/O error".into()));
        assert_eq!(e.detail(), "the database is unavailable: disk I/O error");
        assert!(!e.to_string().contains("disk"));
        let busy = e.into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        assert_eq!(busy.headers()[header::CACHE_CONTROL], "no-store");
    }
}
