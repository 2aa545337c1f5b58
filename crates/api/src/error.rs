//! Error bodies: the authority's (RFC 6749 §5.2 with the members some errors
//! add) and a verifying layer's refusal.

use serde::{Deserialize, Serialize};

use crate::policy::PolicyProblem;

/// What every authority endpoint answers when it refuses: an OAuth error
/// code, a sentence for a person, and for some codes the details to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// The machine-readable code, e.g. `invalid_scope`.
    pub error: String,
    /// What went wrong, in one sentence (optional in RFC 6749, always sent here).
    #[serde(default)]
    pub error_description: String,
    /// `invalid_policy`: every problem of the refused policy set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<PolicyProblem>>,
    /// `authorization_pending`: the approval to poll with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// `authorization_pending` and `slow_down`: seconds to wait between polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// `authorization_pending`: seconds until the approval expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

impl OAuthError {
    /// An error with only a code and a description.
    pub fn new(error: impl Into<String>, error_description: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            error_description: error_description.into(),
            problems: None,
            approval_id: None,
            interval: None,
            expires_in: None,
        }
    }
}

/// What an agent's verifying layer answers when it refuses a request: an
/// OAuth error that also names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDenial {
    /// The OAuth code, e.g. `invalid_token` or `insufficient_scope`.
    pub error: String,
    /// Why, in one sentence.
    pub error_description: String,
    /// The check that failed, e.g. `signature`, `revocation`, `policy`.
    pub check: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::pinned;

    #[test]
    fn a_plain_error_has_only_code_and_description() {
        pinned(
            &OAuthError::new("invalid_scope", "the agent does not hold \"write:db\""),
            r#"
{
  "error": "invalid_scope",
  "error_description": "the agent does not hold \"write:db\""
}"#,
        );
    }

    #[test]
    fn a_pending_approval_says_what_to_poll_with() {
        let pending = OAuthError {
            approval_id: Some("apr-1".into()),
            interval: Some(5),
            expires_in: Some(600),
            ..OAuthError::new(
                "authorization_pending",
                "a person must approve this request",
            )
        };
        pinned(
            &pending,
            r#"
{
  "error": "authorization_pending",
  "error_description": "a person must approve this request",
  "approval_id": "apr-1",
  "interval": 5,
  "expires_in": 600
}"#,
        );
    }

    #[test]
    fn an_invalid_policy_lists_its_problems() {
        let invalid = OAuthError {
            problems: Some(vec![PolicyProblem {
                file: "a.cedar".into(),
                line: 3,
                column: 7,
                message: "unknown attribute".into(),
            }]),
            ..OAuthError::new("invalid_policy", "the policy set is invalid")
        };
        pinned(
            &invalid,
            r#"
{
  "error": "invalid_policy",
  "error_description": "the policy set is invalid",
  "problems": [
    {
      "file": "a.cedar",
      "line": 3,
      "column": 7,
      "message": "unknown attribute"
    }
  ]
}"#,
        );
    }

    #[test]
    fn an_error_without_a_description_still_reads() {
        let read: OAuthError = serde_json::from_str(r#"{"error": "server_error"}"#).unwrap();
        assert_eq!(read, OAuthError::new("server_error", ""));
    }

    #[test]
    fn a_layer_denial_names_the_check() {
        pinned(
            &LayerDenial {
                error: "invalid_token".into(),
                error_description: "the token has expired".into(),
                check: "time".into(),
            },
            r#"
{
  "error": "invalid_token",
  "error_description": "the token has expired",
  "check": "time"
}"#,
        );
    }
}
