//! The authority's RFC 8414 metadata, which tells the SDK where tokens, keys,
//! revocations and audit records go.

use std::ops::Deref;

use agentauth_api::ServerMetadata;

use crate::{Endpoint, SdkError};

/// The authority's RFC 8414 metadata, as fetched; its members are those of
/// [`ServerMetadata`], reachable through `Deref`.
#[derive(Debug, Clone)]
pub struct Metadata(ServerMetadata);

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
            .map_err(SdkError::unreachable(Endpoint::Metadata))?;
        if !response.status().is_success() {
            return Err(SdkError::AuthorityStatus {
                endpoint: Endpoint::Metadata,
                status: response.status().as_u16(),
            });
        }
        response
            .json()
            .await
            .map(Self)
            .map_err(SdkError::unreadable(Endpoint::Metadata))
    }
}

impl Deref for Metadata {
    type Target = ServerMetadata;

    fn deref(&self) -> &ServerMetadata {
        &self.0
    }
}
