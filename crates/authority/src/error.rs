//! `AuthorityError`, and the one place that maps each failure to an HTTP
//! status and an OAuth error code.

use agentauth_api::{OAuthError, PolicyProblem};
use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use thiserror::Error;

/// Every way an authority request fails. Each variant maps to exactly one
/// HTTP status and one machine-readable code, here and nowhere else.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The request is malformed or misses a parameter (OAuth `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// Client authentication failed (OAuth `invalid_client`).
    #[error("{0}")]
    InvalidClient(String),
    /// A requested permission is not held (OAuth `invalid_scope`).
    #[error("{0}")]
    InvalidScope(String),
    /// The target agent is missing, unknown or unusable (RFC 8707 `invalid_target`).
    #[error("{0}")]
    InvalidTarget(String),
    /// The grant type is not supported.
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// The DPoP proof is missing parts, stale, replayed or does not verify (RFC 9449).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// The client may not do this to that token (RFC 7009 §2.1).
    #[error("{0}")]
    UnauthorizedClient(String),
    /// No credential at all for an API that needs one (RFC 6750 §3.1: no error code in the challenge).
    #[error("{0}")]
    MissingCredential(String),
    /// A wrong credential for an API that needs one.
    #[error("{0}")]
    Unauthorized(String),
    /// The credential is valid but does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The named resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the endpoint accepts.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body has the wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A policy set does not parse or validate; each problem has a position.
    #[error("{}", describe_problems(.0))]
    InvalidPolicy(Vec<agentauth_policy::Problem>),
    /// The active policy set cannot decide, so nothing is issued (fail closed).
    #[error("{0}")]
    PolicyUnavailable(String),
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
    /// A person denied the request.
    #[error("{0}")]
    AccessDenied(String),
    /// The approval expired before anyone decided, or before the token was collected.
    #[error("{0}")]
    ExpiredToken(String),
    /// The approval does not belong to this request, or was already used.
    #[error("{0}")]
    InvalidGrant(String),
    /// A token exchange broke a delegation rule (RFC 8693).
    #[error(transparent)]
    Exchange(#[from] crate::issuance::ExchangeRefusal),
    /// The configuration cannot work; the authority does not start.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// Something broke on our side; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
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
            other => Self::InvalidRequest(other.to_string()),
        }
    }
}

impl AuthorityError {
    /// The message with internal details, for the operator (logs, CLI), never for clients.
    pub fn detail(&self) -> String {
        match self {
            Self::Internal(detail) => detail.clone(),
            other => other.to_string(),
        }
    }

    /// HTTP status and error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::InvalidClient(_) => (StatusCode::UNAUTHORIZED, "invalid_client"),
            Self::InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_scope"),
            Self::InvalidTarget(_) => (StatusCode::BAD_REQUEST, "invalid_target"),
            Self::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            Self::InvalidDpopProof(_) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
            Self::UnauthorizedClient(_) => (StatusCode::BAD_REQUEST, "unauthorized_client"),
            Self::MissingCredential(_) => (StatusCode::UNAUTHORIZED, "invalid_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request")
            }
            Self::InvalidPolicy(_) => (StatusCode::BAD_REQUEST, "invalid_policy"),
            Self::PolicyUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            Self::AuthorizationPending { .. } => (StatusCode::BAD_REQUEST, "authorization_pending"),
            Self::SlowDown { .. } => (StatusCode::BAD_REQUEST, "slow_down"),
            Self::AccessDenied(_) => (StatusCode::BAD_REQUEST, "access_denied"),
            Self::ExpiredToken(_) => (StatusCode::BAD_REQUEST, "expired_token"),
            Self::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
            Self::Exchange(refusal) => (StatusCode::BAD_REQUEST, refusal.code()),
            Self::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
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

/// A policy problem as the error body lists it.
fn problem(p: &agentauth_policy::Problem) -> PolicyProblem {
    PolicyProblem {
        file: p.file.clone(),
        line: p.line,
        column: p.column,
        message: p.message.clone(),
    }
}

impl From<agentauth_store::StoreError> for AuthorityError {
    fn from(e: agentauth_store::StoreError) -> Self {
        use agentauth_store::StoreError;
        match e {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => Self::NotFound(format!("{what} was not found")),
            StoreError::ReplayedAssertion => {
                Self::InvalidClient("the client assertion was already used".into())
            }
            StoreError::Stale(why) => Self::Conflict(why),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for AuthorityError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
