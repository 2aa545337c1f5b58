//! `SdkError`: every way an SDK call fails on the client side.

use thiserror::Error;

/// The authority endpoint an SDK call used, to say which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// The RFC 8414 metadata document.
    Metadata,
    /// The JWKS with the authority's signing keys.
    Jwks,
    /// The token endpoint.
    Token,
    /// The revocation list (`GET /v1/revocations`).
    RevocationList,
    /// The active policy set (`GET /v1/policy`).
    PolicySet,
    /// The X.509-SVID endpoint (`POST /v1/svids/x509`).
    X509Svid,
    /// The JWT-SVID endpoint (`POST /v1/svids/jwt`).
    JwtSvid,
    /// The SPIFFE bundle map (`GET /v1/bundles`).
    BundleMap,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Metadata => "metadata document",
            Self::Jwks => "JWKS",
            Self::Token => "token endpoint",
            Self::RevocationList => "revocation list",
            Self::PolicySet => "policy set endpoint",
            Self::X509Svid => "X.509-SVID endpoint",
            Self::JwtSvid => "JWT-SVID endpoint",
            Self::BundleMap => "bundle map",
        })
    }
}

impl SdkError {
    pub(crate) fn unreachable(endpoint: Endpoint) -> impl FnOnce(reqwest::Error) -> Self {
        move |cause| Self::AuthorityUnreachable { endpoint, cause }
    }

    pub(crate) fn unreadable<E>(endpoint: Endpoint) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| Self::AuthorityAnswer {
            endpoint,
            cause: Box::new(e),
        }
    }
}

/// Every way an SDK call fails on the client side.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The authority could not be reached.
    #[error("authority unreachable: its {endpoint} could not be fetched: {cause}")]
    AuthorityUnreachable {
        /// What the SDK asked for.
        endpoint: Endpoint,
        /// The transport error.
        cause: reqwest::Error,
    },
    /// The authority answered with a status the API does not promise.
    #[error("the authority's {endpoint} answered HTTP {status}")]
    AuthorityStatus {
        /// What the SDK asked for.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
    },
    /// The authority's answer is not the body the API promises.
    #[error("the authority's {endpoint} answered something unreadable: {cause}")]
    AuthorityAnswer {
        /// What the SDK asked for.
        endpoint: Endpoint,
        /// Why it could not be read (a body or JSON error).
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The token endpoint refused the request with an OAuth error.
    #[error("token request refused ({error}): {description}")]
    TokenRefused {
        /// HTTP status.
        status: u16,
        /// OAuth error code, e.g. `invalid_scope`.
        error: String,
        /// The authority's explanation.
        description: String,
    },
    /// A person must approve the request first: wait with
    /// [`crate::Client::wait_for_approval`].
    #[error("the token request waits for a person's approval ({})", .0.approval_id)]
    ApprovalPending(crate::PendingApproval),
    /// A person denied the request.
    #[error("a person denied the token request: {0}")]
    ApprovalDenied(String),
    /// Nobody decided before the approval expired.
    #[error("the approval expired before anyone decided: {0}")]
    ApprovalExpired(String),
    /// Waiting for an approval took longer than the caller allowed.
    #[error("gave up waiting for approval {0}")]
    ApprovalTimedOut(String),
    /// An authority endpoint other than the token endpoint refused the
    /// request with an error body.
    #[error("the authority's {endpoint} refused ({error}): {description}")]
    Refused {
        /// What the SDK asked for.
        endpoint: Endpoint,
        /// HTTP status.
        status: u16,
        /// Machine-readable code, e.g. `invalid_request`.
        error: String,
        /// The authority's explanation.
        description: String,
    },
    /// The SPIFFE Workload API could not be reached, refused, or sent an
    /// SVID that cannot be used.
    #[error("the Workload API: {0}")]
    WorkloadApi(String),
    /// A key pair or certificate signing request could not be made here.
    #[error("making a key or CSR failed: {0}")]
    KeyGeneration(String),
    /// The client itself refused: the agent does not hold the permission.
    #[error("this agent does not hold \"{0}\"; refusing before sending")]
    PermissionNotHeld(String),
    /// The call to the other agent failed in transport.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The request body is a stream and cannot be digested for its signature.
    #[error("only requests with a buffered body can be signed")]
    UnsignableBody,
    /// A request could not be signed.
    #[error("signing the request failed: {0}")]
    Signature(#[from] agentauth_core::HttpSigError),
    /// Bad input to the SDK (identity, scope, key).
    #[error(transparent)]
    Core(#[from] agentauth_core::Error),
}

#[cfg(test)]
mod tests {
    use agentauth_core::{SigningKey, SpiffeId};

    use super::*;
    use crate::Client;

    #[tokio::test]
    async fn an_unreachable_authority_names_the_endpoint_that_failed() {
        let me = SpiffeId::parse("spiffe://agentauth.local/agent/a").unwrap();
        let client = Client::new("http://127.0.0.1:1", me, SigningKey::generate_ed25519());
        let err = client
            .token(
                &SpiffeId::parse("spiffe://agentauth.local/agent/b").unwrap(),
                &agentauth_core::Scope::parse("read:x").unwrap(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                SdkError::AuthorityUnreachable {
                    endpoint: Endpoint::Metadata,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("authority unreachable: its metadata document"),
            "{err}"
        );
    }
}
