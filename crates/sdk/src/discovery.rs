//! The authority's RFC 8414 metadata, which tells the SDK where tokens, keys,
//! revocations and audit records go.

use serde::Deserialize;

use crate::SdkError;

/// The parts of the authority's RFC 8414 metadata the SDK uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// Issuer URL, the exact `iss` of tokens.
    pub issuer: String,
    /// Where to get tokens.
    pub token_endpoint: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// The polled revocation list.
    pub revocation_list_endpoint: String,
    /// Where verifying layers send their audit records.
    pub audit_events_endpoint: String,
    /// The authority's own SPIFFE ID, the audience of tokens for its API.
    pub authority_id: String,
    /// The trust domain of every agent.
    pub trust_domain: String,
    /// RFC 7662 introspection.
    pub introspection_endpoint: String,
}

impl Metadata {
    /// Fetches `/.well-known/oauth-authorization-server` from `authority_url`.
    pub async fn fetch(http: &reqwest::Client, authority_url: &str) -> Result<Self, SdkError> {
        let url = format!(
            "{}/.well-known/oauth-authorization-server",
            authority_url.trim_end_matches('/')
        );
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|e| SdkError::Authority(e.to_string()))?;
        if !response.status().is_success() {
            return Err(SdkError::Authority(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| SdkError::Authority(format!("metadata: {e}")))
    }
}
