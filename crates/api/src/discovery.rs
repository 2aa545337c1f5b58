//! Discovery: the authority's RFC 8414 metadata
//! (`GET /.well-known/oauth-authorization-server`) and its signing keys
//! (`GET /.well-known/jwks.json`, RFC 7517).

use agentauth_core::SpiffeId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The authority's RFC 8414 metadata, with agentauth's own endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    /// Issuer URL, the exact `iss` of tokens.
    pub issuer: String,
    /// Where to get tokens.
    pub token_endpoint: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// RFC 7662 introspection.
    pub introspection_endpoint: String,
    /// RFC 7009 revocation.
    pub revocation_endpoint: String,
    /// `client_credentials` and the token-exchange grant.
    pub grant_types_supported: Vec<String>,
    /// `private_key_jwt`, and `tls_client_auth` when the authority serves TLS.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms client assertions may be signed with.
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// Algorithms DPoP proofs may be signed with (RFC 9449).
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// How callers of introspection authenticate: `private_key_jwt` for
    /// agents and `Bearer` (an RFC 7662 §2.1 access token type) for the admin.
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms client assertions at introspection may be signed with
    /// (RFC 8414 §2: required while `private_key_jwt` is listed).
    #[serde(default)]
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// How callers of revocation authenticate.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms client assertions at revocation may be signed with
    /// (RFC 8414 §2: required while `private_key_jwt` is listed).
    #[serde(default)]
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// RFC 8414 §2 marks this member REQUIRED although agentauth has no
    /// authorization endpoint, and validators (authlib) refuse a document
    /// without it; the value is `token`, which no client can use here.
    pub response_types_supported: Vec<String>,
    /// Every permission some agent holds, and the authority's implicit scopes.
    pub scopes_supported: Vec<String>,
    /// The trust domain of every agent.
    pub trust_domain: String,
    /// The authority's own SPIFFE ID, the audience of tokens for its API.
    pub authority_id: SpiffeId,
    /// The polled revocation list.
    pub revocation_list_endpoint: String,
    /// The revocation list as Server-Sent Events.
    pub revocation_stream_endpoint: String,
    /// Where verifying layers send their audit records.
    pub audit_events_endpoint: String,
    /// The active policy set for verifiers.
    pub policy_endpoint: String,
    /// Where an agent sends a CSR for an X.509-SVID.
    #[serde(default)]
    pub x509_svid_endpoint: String,
    /// Where an agent asks for a JWT-SVID.
    #[serde(default)]
    pub jwt_svid_endpoint: String,
    /// The SPIFFE trust bundle of the trust domain.
    #[serde(default)]
    pub spiffe_bundle_endpoint: String,
    /// The SPIFFE bundle map: this trust domain's bundle and every federated
    /// one, by trust domain name.
    #[serde(default)]
    pub spiffe_bundle_map_endpoint: String,
    /// Seconds between polls of a pending approval.
    pub approval_polling_interval: i64,
    /// RFC 8705: tokens bound to the client certificate of tls_client_auth
    /// (true when the authority serves TLS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_client_certificate_bound_access_tokens: bool,
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The published keys.
    pub keys: Vec<Jwk>,
}

/// One published public key: its key members, then `kid`, `alg` and `use`,
/// which the authority always sets and RFC 7517 leaves optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// The key itself (`kty`, `crv`, `x`, `y`), and any other member.
    #[serde(flatten)]
    pub params: Map<String, Value>,
    /// Key ID, the `kid` of the tokens it signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one JWS algorithm the key signs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::shape::pinned;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_metadata_names_every_endpoint() {
        let at = |path: &str| format!("http://a{path}");
        let metadata = ServerMetadata {
            issuer: "http://a".into(),
            token_endpoint: at("/oauth/token"),
            jwks_uri: at("/.well-known/jwks.json"),
            introspection_endpoint: at("/oauth/introspect"),
            revocation_endpoint: at("/oauth/revoke"),
            grant_types_supported: strings(&["client_credentials", "urn:x"]),
            token_endpoint_auth_methods_supported: strings(&["private_key_jwt"]),
            token_endpoint_auth_signing_alg_values_supported: strings(&["EdDSA"]),
            dpop_signing_alg_values_supported: strings(&["ES256"]),
            introspection_endpoint_auth_methods_supported: strings(&["private_key_jwt", "Bearer"]),
            introspection_endpoint_auth_signing_alg_values_supported: strings(&["Ed25519"]),
            revocation_endpoint_auth_methods_supported: strings(&["private_key_jwt"]),
            revocation_endpoint_auth_signing_alg_values_supported: strings(&["ES256"]),
            response_types_supported: strings(&["token"]),
            scopes_supported: strings(&["audit:write"]),
            trust_domain: "td".into(),
            authority_id: "spiffe://td/authority".parse().unwrap(),
            revocation_list_endpoint: at("/v1/revocations"),
            revocation_stream_endpoint: at("/v1/revocations/stream"),
            audit_events_endpoint: at("/v1/audit/events"),
            policy_endpoint: at("/v1/policy"),
            x509_svid_endpoint: at("/v1/svids/x509"),
            jwt_svid_endpoint: at("/v1/svids/jwt"),
            spiffe_bundle_endpoint: at("/v1/bundle"),
            spiffe_bundle_map_endpoint: at("/v1/bundles"),
            approval_polling_interval: 5,
            tls_client_certificate_bound_access_tokens: false,
        };
        pinned(
            &metadata,
            r#"
{
  "issuer": "http://a",
  "token_endpoint": "http://a/oauth/token",
  "jwks_uri": "http://a/.well-known/jwks.json",
  "introspection_endpoint": "http://a/oauth/introspect",
  "revocation_endpoint": "http://a/oauth/revoke",
  "grant_types_supported": [
    "client_credentials",
    "urn:x"
  ],
  "token_endpoint_auth_methods_supported": [
    "private_key_jwt"
  ],
  "token_endpoint_auth_signing_alg_values_supported": [
    "EdDSA"
  ],
  "dpop_signing_alg_values_supported": [
    "ES256"
  ],
  "introspection_endpoint_auth_methods_supported": [
    "private_key_jwt",
    "Bearer"
  ],
  "introspection_endpoint_auth_signing_alg_values_supported": [
    "Ed25519"
  ],
  "revocation_endpoint_auth_methods_supported": [
    "private_key_jwt"
  ],
  "revocation_endpoint_auth_signing_alg_values_supported": [
    "ES256"
  ],
  "response_types_supported": [
    "token"
  ],
  "scopes_supported": [
    "audit:write"
  ],
  "trust_domain": "td",
  "authority_id": "spiffe://td/authority",
  "revocation_list_endpoint": "http://a/v1/revocations",
  "revocation_stream_endpoint": "http://a/v1/revocations/stream",
  "audit_events_endpoint": "http://a/v1/audit/events",
  "policy_endpoint": "http://a/v1/policy",
  "x509_svid_endpoint": "http://a/v1/svids/x509",
  "jwt_svid_endpoint": "http://a/v1/svids/jwt",
  "spiffe_bundle_endpoint": "http://a/v1/bundle",
  "spiffe_bundle_map_endpoint": "http://a/v1/bundles",
  "approval_polling_interval": 5
}"#,
        );
    }

    #[test]
    fn a_published_key_is_its_members_then_kid_alg_and_use() {
        let Value::Object(params) = json!({"crv": "Ed25519", "kty": "OKP", "x": "abc"}) else {
            unreachable!()
        };
        let jwks = Jwks {
            keys: vec![Jwk {
                params,
                kid: Some("k1".into()),
                alg: Some("EdDSA".into()),
                key_use: Some("sig".into()),
            }],
        };
        let expected = r#"
{
  "keys": [
    {
      "crv": "Ed25519",
      "kty": "OKP",
      "x": "abc",
      "kid": "k1",
      "alg": "EdDSA",
      "use": "sig"
    }
  ]
}"#;
        pinned(&jwks, expected);
    }

    #[test]
    fn a_key_without_kid_alg_or_use_still_reads() {
        let key: Jwk =
            serde_json::from_str(r#"{"kty": "OKP", "crv": "Ed25519", "x": "abc"}"#).expect("reads");
        assert_eq!((key.kid, key.alg, key.key_use), (None, None, None));
        assert_eq!(key.params.len(), 3);
    }
}
