//! The OAuth 2.0 endpoints: metadata (RFC 8414), JWKS, token
//! (client_credentials with private_key_jwt), introspection (RFC 7662) and
//! revocation (RFC 7009).

mod introspect;
mod token;

use agentauth_api::ServerMetadata;
use agentauth_core::JwsAlg;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::server::AppState;

pub(crate) use introspect::{introspect, revoke};
pub(crate) use token::token;

pub use agentauth_api::TOKEN_EXCHANGE_GRANT;

/// Scopes every agent may request for the authority itself, beyond its permissions.
pub const AUTHORITY_IMPLICIT_SCOPES: [&str; 5] = [
    crate::audit::AUDIT_WRITE,
    crate::task::TASKS_COMPLETE,
    crate::policy::POLICY_READ,
    crate::svid::SVID_X509,
    crate::svid::SVID_JWT,
];

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn metadata(State(s): State<AppState>) -> Json<ServerMetadata> {
    Json(server_metadata(&s))
}

/// This authority's RFC 8414 metadata. `scopes_supported` lists only the
/// scopes every agent may ask of the authority itself: the registry's
/// permissions are not for anonymous readers.
pub(crate) fn server_metadata(s: &crate::server::State) -> ServerMetadata {
    let mut scopes: Vec<String> = AUTHORITY_IMPLICIT_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    scopes.sort();
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // Every JWS algorithm an agent may sign with, RFC 9864's `Ed25519` beside `EdDSA`.
    let algs = || JwsAlg::ALL.map(|a| a.as_str().to_owned()).to_vec();
    ServerMetadata {
        issuer: s.issuer.clone(),
        token_endpoint: s.endpoint("/oauth/token"),
        jwks_uri: s.endpoint("/.well-known/jwks.json"),
        introspection_endpoint: s.endpoint("/oauth/introspect"),
        revocation_endpoint: s.endpoint("/oauth/revoke"),
        grant_types_supported: strings(&["client_credentials", TOKEN_EXCHANGE_GRANT]),
        token_endpoint_auth_methods_supported: if s.config.tls {
            strings(&["private_key_jwt", "tls_client_auth"])
        } else {
            strings(&["private_key_jwt"])
        },
        token_endpoint_auth_signing_alg_values_supported: algs(),
        dpop_signing_alg_values_supported: algs(),
        // The admin credential is a Bearer token (RFC 8414 §2 lets
        // introspection list access token types beside client auth methods).
        introspection_endpoint_auth_methods_supported: strings(&["private_key_jwt", "Bearer"]),
        introspection_endpoint_auth_signing_alg_values_supported: algs(),
        revocation_endpoint_auth_methods_supported: strings(&["private_key_jwt"]),
        revocation_endpoint_auth_signing_alg_values_supported: algs(),
        response_types_supported: strings(&["token"]),
        scopes_supported: scopes,
        trust_domain: s.trust_domain.as_str().to_owned(),
        authority_id: s.authority_id.clone(),
        revocation_list_endpoint: s.endpoint("/v1/revocations"),
        revocation_stream_endpoint: s.endpoint("/v1/revocations/stream"),
        audit_events_endpoint: s.endpoint("/v1/audit/events"),
        policy_endpoint: s.endpoint("/v1/policy"),
        x509_svid_endpoint: s.endpoint("/v1/svids/x509"),
        jwt_svid_endpoint: s.endpoint("/v1/svids/jwt"),
        spiffe_bundle_endpoint: s.endpoint("/v1/bundle"),
        spiffe_bundle_map_endpoint: s.endpoint("/v1/bundles"),
        approval_polling_interval: s.config.approval_interval_secs,
        tls_client_certificate_bound_access_tokens: s.config.tls,
    }
}

/// `GET /.well-known/jwks.json`: the authority's public signing keys.
pub(crate) async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    let mut response = Json(s.keys().jwks(agentauth_core::unix_now())).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// RFC 6749 §5.2 for the OAuth endpoints: a 401 carries a `WWW-Authenticate`
/// challenge only for the scheme the client used in `Authorization` (`Basic`
/// gets `Basic realm="agentauth"`); a client that authenticated in the body
/// (private_key_jwt) gets none, so libraries read the JSON error and its
/// `error_description` instead of an opaque challenge.
pub(crate) fn challenge_only_for_used_scheme(
    request: &HeaderMap,
    mut response: Response,
) -> Response {
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    let used = request
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .filter(|scheme| {
            scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        });
    let headers = response.headers_mut();
    let Some(scheme) = used else {
        headers.remove(header::WWW_AUTHENTICATE);
        return response;
    };
    let ours = headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme));
    if !ours && let Ok(v) = HeaderValue::from_str(&format!("{scheme} realm=\"agentauth\"")) {
        headers.insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthorityError;

    fn refused(authorization: Option<&str>) -> Response {
        let mut request = HeaderMap::new();
        if let Some(v) = authorization {
            request.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        let error = AuthorityError::from(crate::ClientAuthFailure::AssertionMissing);
        challenge_only_for_used_scheme(&request, error.into_response())
    }

    #[test]
    fn a_client_that_authenticated_in_the_body_gets_no_challenge() {
        let r = refused(None);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn a_client_that_used_basic_is_challenged_with_basic() {
        let r = refused(Some("Basic YTpi"));
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"agentauth\""
        );
    }

    #[test]
    fn a_bearer_caller_keeps_the_bearer_challenge_with_its_error() {
        let r = refused(Some("Bearer wrong"));
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"agentauth\", error="),
            "{challenge}"
        );
    }

    #[test]
    fn other_statuses_are_left_alone() {
        let request = HeaderMap::new();
        let r = challenge_only_for_used_scheme(
            &request,
            AuthorityError::from(crate::BodyError::MissingParameter("token")).into_response(),
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
