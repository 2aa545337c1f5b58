//! The OAuth token endpoints: `POST /oauth/token` (client credentials and
//! RFC 8693 token exchange), `POST /oauth/introspect` (RFC 7662) and
//! `POST /oauth/revoke` (RFC 7009).

use agentauth_core::AccessClaims;
use serde::{Deserialize, Serialize};

/// The RFC 8693 token-exchange grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The RFC 8693 §3 token type URI of access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The form of `POST /oauth/token`. Unknown parameters are ignored
/// (RFC 6749 §3.2); absent ones are left out of the form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// `client_credentials` or [`TOKEN_EXCHANGE_GRANT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
    /// The private_key_jwt assertion type (RFC 7523).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_type: Option<String>,
    /// The signed client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion: Option<String>,
    /// The agent's SPIFFE ID, if given it must match the assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated permissions; refused whole if any is not held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The target agent (RFC 8707).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The target agent, as `resource` (RFC 8693).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Requested lifetime in seconds, capped by the authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// The task to join (client_credentials); minted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
    /// A short statement of intent for the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The original request that started the task, or its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_context: Option<String>,
    /// RFC 8693: the token the actor received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<String>,
    /// RFC 8693: must be [`ACCESS_TOKEN_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
    /// RFC 8693: not supported (the actor authenticates as the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_token: Option<String>,
    /// RFC 8693: if given, must be [`ACCESS_TOKEN_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
    /// The approval of an earlier identical request that answered
    /// `authorization_pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

/// A successful answer of `POST /oauth/token` (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The signed JWT.
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a token bound to a DPoP proof's key.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
    /// The granted scope, space-separated.
    #[serde(default)]
    pub scope: String,
    /// Always [`ACCESS_TOKEN_TYPE`].
    #[serde(default)]
    pub issued_token_type: String,
    /// The task the token belongs to; `null` for tokens for the authority.
    #[serde(default)]
    pub txn: Option<String>,
}

/// The form of `POST /oauth/introspect` and `POST /oauth/revoke`: the token,
/// and the agent's client authentication unless the admin calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenForm {
    /// The token to introspect or revoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Accepted and ignored: only access tokens exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<String>,
    /// The private_key_jwt assertion type (RFC 7523).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_type: Option<String>,
    /// The signed client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion: Option<String>,
    /// The agent's SPIFFE ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The answer of `POST /oauth/introspect` (RFC 7662 §2.2): `{"active": false}`
/// for a token that does not stand, else its claims with `active` and `token_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Introspection {
    /// The token's claims, when it is active.
    #[serde(flatten)]
    pub claims: Option<AccessClaims>,
    /// Whether the token stands: valid, unexpired, unrevoked.
    pub active: bool,
    /// `Bearer` when active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// The answer of `POST /oauth/revoke`: an empty object, also for unknown
/// tokens (RFC 7009 §2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {}

#[cfg(test)]
mod tests {
    use agentauth_core::Scope;

    use super::*;
    use crate::shape::pinned;

    #[test]
    fn a_token_response_carries_its_task_even_when_null() {
        let mut response = TokenResponse {
            access_token: "eyJ.x.y".into(),
            token_type: "DPoP".into(),
            expires_in: 300,
            scope: "read:db".into(),
            issued_token_type: ACCESS_TOKEN_TYPE.into(),
            txn: Some("txn-1".into()),
        };
        pinned(
            &response,
            r#"
{
  "access_token": "eyJ.x.y",
  "token_type": "DPoP",
  "expires_in": 300,
  "scope": "read:db",
  "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
  "txn": "txn-1"
}"#,
        );
        response.txn = None;
        let written = serde_json::to_value(&response).unwrap();
        assert!(written["txn"].is_null() && written.get("txn").is_some());
    }

    #[test]
    fn a_token_request_form_leaves_absent_parameters_out() {
        let request = TokenRequest {
            grant_type: Some("client_credentials".into()),
            scope: Some("read:db".into()),
            resource: Some("spiffe://td/agent/db".into()),
            ..TokenRequest::default()
        };
        pinned(
            &request,
            r#"
{
  "grant_type": "client_credentials",
  "scope": "read:db",
  "resource": "spiffe://td/agent/db"
}"#,
        );
    }

    #[test]
    fn an_active_introspection_is_the_claims_then_active_and_type() {
        let claims = AccessClaims {
            iss: "http://authority".into(),
            sub: "spiffe://td/agent/a".parse().unwrap(),
            aud: "spiffe://td/agent/b".parse().unwrap(),
            client_id: "spiffe://td/agent/a".parse().unwrap(),
            scope: Scope::parse("read:db").unwrap(),
            exp: 200,
            iat: 100,
            nbf: 100,
            jti: "j1".into(),
            cnf: None,
            act: None,
            txn: Some("txn-1".parse().unwrap()),
            purpose: None,
            rctx: None,
        };
        pinned(
            &Introspection {
                claims: Some(claims),
                active: true,
                token_type: Some("Bearer".into()),
            },
            r#"
{
  "iss": "http://authority",
  "sub": "spiffe://td/agent/a",
  "aud": "spiffe://td/agent/b",
  "client_id": "spiffe://td/agent/a",
  "scope": "read:db",
  "exp": 200,
  "iat": 100,
  "nbf": 100,
  "jti": "j1",
  "txn": "txn-1",
  "active": true,
  "token_type": "Bearer"
}"#,
        );
    }

    #[test]
    fn an_inactive_introspection_says_only_that() {
        pinned(
            &Introspection {
                claims: None,
                active: false,
                token_type: None,
            },
            r#"
{
  "active": false
}"#,
        );
    }

    #[test]
    fn a_revocation_answer_is_an_empty_object() {
        pinned(&TokenRevoked {}, "{}");
    }
}
