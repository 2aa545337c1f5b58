//! The authority's signing keys: `GET /v1/keys` lists them with where each is
//! in its life, `POST /v1/keys/rotate` adds one.

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/keys/rotate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyRotation {
    /// Sign with the new key at once instead of after the publish lead (a
    /// second later if the key signing now began this very second).
    /// For a key believed compromised: verifiers that cache the JWKS meet
    /// an unknown key until they fetch it again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub now: bool,
}

/// One signing key as the admin API shows it; never its private part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyView {
    /// Key ID (the JWK thumbprint), the `kid` of what it signs.
    pub kid: String,
    /// JWS algorithm.
    pub alg: String,
    /// `published` (not signing yet), `signing`, `retired` (still published
    /// while tokens it signed may live) or `expired` (no longer published).
    pub phase: String,
    /// When it was made, seconds since the epoch.
    pub created_at: i64,
    /// When it starts (or started) signing.
    pub signs_from: i64,
    /// When a newer key took over from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
    /// When it leaves the JWKS, once retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_until: Option<i64>,
}

/// The answer of `GET /v1/keys`: every signing key, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyList {
    /// The keys.
    pub keys: Vec<SigningKeyView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_body_may_be_empty_and_refuses_unknown_members() {
        let empty: KeyRotation = serde_json::from_str("{}").unwrap();
        assert!(!empty.now);
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
        let now: KeyRotation = serde_json::from_str(r#"{"now":true}"#).unwrap();
        assert!(now.now);
        assert!(serde_json::from_str::<KeyRotation>(r#"{"later":true}"#).is_err());
    }

    #[test]
    fn a_key_leaves_out_the_times_it_does_not_have() {
        let key = SigningKeyView {
            kid: "k".into(),
            alg: "EdDSA".into(),
            phase: "signing".into(),
            created_at: 1,
            signs_from: 2,
            retired_at: None,
            published_until: None,
        };
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            serde_json::json!({"kid": "k", "alg": "EdDSA", "phase": "signing",
                               "created_at": 1, "signs_from": 2})
        );
    }
}
