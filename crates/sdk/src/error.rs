//! `SdkError`: every way an SDK call fails on the client side.

use thiserror::Error;

/// Every way an SDK call fails on the client side.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The authority could not be reached or answered garbage.
    #[error("authority unreachable or invalid response: {0}")]
    Authority(String),
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
