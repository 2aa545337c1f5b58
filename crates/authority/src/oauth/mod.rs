//! The OAuth 2.0 endpoints: metadata (RFC 8414), JWKS, token
//! (client_credentials with private_key_jwt), introspection (RFC 7662) and
//! revocation (RFC 7009).

mod introspect;
mod token;

use agentauth_api::ServerMetadata;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{HeaderValue, header};

use crate::server::AppState;

pub(crate) use introspect::{introspect, revoke};
pub(crate) use token::token;

pub use agentauth_api::TOKEN_EXCHANGE_GRANT;

/// Scopes every agent may request for the authority itself, beyond its permissions.
pub const AUTHORITY_IMPLICIT_SCOPES: [&str; 2] =
    [crate::audit::AUDIT_WRITE, crate::task::TASKS_COMPLETE];

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn metadata(State(s): State<AppState>) -> Json<ServerMetadata> {
    let mut scopes: Vec<String> = match s.store.agents().await {
        Ok(agents) => agents.iter().flat_map(|a| a.permissions.to_vec()).collect(),
        Err(_) => Vec::new(),
    };
    scopes.extend(AUTHORITY_IMPLICIT_SCOPES.iter().map(|s| (*s).to_owned()));
    scopes.sort();
    scopes.dedup();
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Json(ServerMetadata {
        issuer: s.issuer.clone(),
        token_endpoint: s.endpoint("/oauth/token"),
        jwks_uri: s.endpoint("/.well-known/jwks.json"),
        introspection_endpoint: s.endpoint("/oauth/introspect"),
        revocation_endpoint: s.endpoint("/oauth/revoke"),
        grant_types_supported: strings(&["client_credentials", TOKEN_EXCHANGE_GRANT]),
        token_endpoint_auth_methods_supported: strings(&["private_key_jwt"]),
        token_endpoint_auth_signing_alg_values_supported: strings(&["EdDSA", "ES256"]),
        dpop_signing_alg_values_supported: strings(&["EdDSA", "ES256"]),
        introspection_endpoint_auth_methods_supported: strings(&["private_key_jwt"]),
        revocation_endpoint_auth_methods_supported: strings(&["private_key_jwt"]),
        response_types_supported: strings(&["token"]),
        scopes_supported: scopes,
        trust_domain: s.trust_domain.as_str().to_owned(),
        authority_id: s.authority_id.as_str().to_owned(),
        revocation_list_endpoint: s.endpoint("/v1/revocations"),
        revocation_stream_endpoint: s.endpoint("/v1/revocations/stream"),
        audit_events_endpoint: s.endpoint("/v1/audit/events"),
        policy_endpoint: s.endpoint("/v1/policy"),
        approval_polling_interval: s.config.approval_interval_secs,
    })
}

/// `GET /.well-known/jwks.json`: the authority's public signing keys.
pub(crate) async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    let mut response = Json(s.keys.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
