//! Why the verifying layer refused a request, and the RFC 6750 answer it gives.

use std::convert::Infallible;

use agentauth_api::LayerDenial;
use agentauth_core::{JwsError, Rejection, TokenError};
use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The request checks, in the order the layer runs them (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Check {
    /// A Bearer token is present.
    TokenPresent,
    /// Structure, `typ`/`alg` allow-list and signature.
    Signature,
    /// `iss` is the trusted authority.
    Issuer,
    /// `aud` is this agent.
    Audience,
    /// `exp` and `nbf` within leeway.
    Time,
    /// The request is signed by the token's `cnf` key and unchanged, and,
    /// over mutual TLS, the token's agent is the connection's peer.
    Proof,
    /// The request's nonce was not seen before.
    Replay,
    /// Neither the token, its task nor its agents are revoked or disabled.
    Revocation,
    /// On routes that fail closed: the revocation list is current (the
    /// feed was reachable within the grace period).
    RevocationFeed,
    /// The route's permission is in the token's scope.
    Permission,
    /// The authority's active policy set permits the permission in this
    /// request's context.
    Policy,
    /// The body fits the layer's bound.
    BodySize,
}

impl Check {
    /// The name the JSON body and the audit use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenPresent => "token_present",
            Self::Signature => "signature",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Time => "time",
            Self::Proof => "proof",
            Self::Replay => "replay",
            Self::Revocation => "revocation",
            Self::RevocationFeed => "revocation_feed",
            Self::Permission => "permission",
            Self::Policy => "policy",
            Self::BodySize => "body_size",
        }
    }
}

/// A refused request: which check failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The failed check.
    pub check: Check,
    /// One plain sentence.
    pub description: String,
    /// The permission the route needs, for `insufficient_scope`.
    pub required: Option<String>,
}

impl Denial {
    /// A denial at `check`.
    pub fn new(check: Check, description: impl Into<String>) -> Self {
        Self {
            check,
            description: description.into(),
            required: None,
        }
    }

    /// 403 for a missing permission or a policy denial, 503 for a stale revocation list, 401
    /// for everything else.
    pub fn status(&self) -> StatusCode {
        match self.check {
            Check::Permission | Check::Policy => StatusCode::FORBIDDEN,
            Check::BodySize => StatusCode::PAYLOAD_TOO_LARGE,
            Check::RevocationFeed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 error code (OAuth's `temporarily_unavailable` for a
    /// stale revocation list: the token is not at fault).
    pub fn error_code(&self) -> &'static str {
        match self.check {
            Check::TokenPresent | Check::BodySize => "invalid_request",
            Check::Permission | Check::Policy => "insufficient_scope",
            Check::RevocationFeed => "temporarily_unavailable",
            _ => "invalid_token",
        }
    }

    fn challenge(&self) -> String {
        // Header values must be visible ASCII; quotes would end the parameter early.
        let description: String = self
            .description
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                    '\''
                } else {
                    c
                }
            })
            .collect();
        let mut value = format!(
            "Bearer realm=\"agentauth\", error=\"{}\", error_description=\"{description}\"",
            self.error_code()
        );
        if let Some(scope) = &self.required {
            value.push_str(&format!(", scope=\"{scope}\""));
        }
        value
    }
}

/// Where the one token check of core refused a token, in the layer's terms.
impl From<Rejection<Infallible>> for Denial {
    fn from(rejection: Rejection<Infallible>) -> Self {
        let check = match &rejection {
            Rejection::Token(TokenError::IssuerMismatch(_)) => Check::Issuer,
            Rejection::Token(TokenError::AudienceMismatch(_)) => Check::Audience,
            Rejection::Token(TokenError::Expired | TokenError::NotYetValid) => Check::Time,
            Rejection::Token(TokenError::Jws(JwsError::UnknownKey(_))) => {
                return Self::new(Check::Signature, "the token is signed by an unknown key");
            }
            Rejection::Token(_) => Check::Signature,
            Rejection::Proof(e) if e.is_replay() => Check::Replay,
            Rejection::Proof(_) => Check::Proof,
            Rejection::Revoked(_) => Check::Revocation,
            Rejection::View(never) => match *never {},
        };
        Self::new(check, rejection.to_string())
    }
}

impl IntoResponse for Denial {
    fn into_response(self) -> Response {
        let body = LayerDenial {
            error: self.error_code().to_owned(),
            error_description: self.description.clone(),
            check: self.check.as_str().to_owned(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if self.check == Check::RevocationFeed {
            // Nothing is wrong with the credential: no challenge, try again soon.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else if let Ok(v) = HeaderValue::from_str(&self.challenge()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denials_are_403_with_the_scope_in_the_challenge() {
        let mut d = Denial::new(Check::Permission, "needs \"read:customer\"");
        d.required = Some("read:customer".into());
        let r = d.into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"read:customer\""), "{challenge}");
        assert!(challenge.contains("needs 'read:customer'"), "{challenge}");
    }

    #[test]
    fn a_stale_revocation_list_is_503_without_a_challenge() {
        let r = Denial::new(Check::RevocationFeed, "feed unreachable").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn token_failures_are_401_invalid_token() {
        let r = Denial::new(Check::Audience, "wrong audience ü").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"agentauth\", error=\"invalid_token\""));
    }
}
