//! `POST /oauth/token`: the HTTP face of [`crate::issuance`]. It reads the
//! form and what the request adds (request ID, peer address, `DPoP` header),
//! asks for a token and renders the RFC 6749 §5.1 answer.

use agentauth_api::{ACCESS_TOKEN_TYPE, TokenRequest, TokenResponse};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};

use crate::AuthorityError;
use crate::audit::request_id;
use crate::body::FormBody;
use crate::issuance::{
    Attempt, DpopHeader, DpopRefusal, Issued, TokenCall, audit_refusal, request_token,
};
use crate::metrics::Grant;
use crate::policy::PeerIp;
use crate::server::AppState;

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(s): State<AppState>,
    PeerIp(peer): PeerIp,
    certificate: Option<axum::Extension<crate::tls::ClientCertificate>>,
    headers: HeaderMap,
    form: Result<FormBody<TokenRequest>, AuthorityError>,
) -> Response {
    let grant = match &form {
        Ok(FormBody(req)) => Grant::of(req.grant_type.as_deref()),
        Err(_) => Grant::Other,
    };
    let call = TokenCall {
        request_id: request_id(&headers),
        peer,
        dpop: dpop_header(&headers),
        certificate: certificate.map(|axum::Extension(c)| c),
    };
    // Before the form is parsed or any signature checked: a flood from one
    // address costs a map lookup each, and is neither audited one by one.
    if let Err(throttled) = s.throttle.address(peer) {
        tracing::warn!(%peer, "token request refused: {throttled}");
        s.metrics.refused(grant, "rate_limited");
        return AuthorityError::from(throttled).into_response();
    }
    let outcome = match form {
        Ok(FormBody(req)) => request_token(&s, &req, &call).await,
        Err(malformed) => {
            audit_refusal(&s, &Attempt::default(), &malformed, &call).await;
            Err(malformed)
        }
    };
    match outcome {
        Ok(issued) => {
            s.metrics.issued(grant);
            render(issued)
        }
        Err(error) => {
            // Pending approvals are "not yet", not refusals.
            if !error.is_pending() {
                s.metrics.refused(grant, error.status_and_code().1);
            }
            super::challenge_only_for_used_scheme(&headers, error.into_response())
        }
    }
}

/// The request's one `DPoP` header, if any.
fn dpop_header(headers: &HeaderMap) -> DpopHeader {
    let mut proofs = headers.get_all("dpop").iter();
    match (proofs.next(), proofs.next()) {
        (None, _) => DpopHeader::Absent,
        (Some(proof), None) => match proof.to_str() {
            Ok(proof) => DpopHeader::Proof(proof.to_owned()),
            Err(_) => DpopHeader::Unusable(DpopRefusal::NotText),
        },
        (Some(_), Some(_)) => DpopHeader::Unusable(DpopRefusal::Repeated),
    }
}

/// The token response, never cached.
fn render(issued: Issued) -> Response {
    let body = TokenResponse {
        access_token: issued.access_token,
        token_type: issued.token_type.to_owned(),
        expires_in: issued.expires_in,
        scope: issued.scope,
        issued_token_type: ACCESS_TOKEN_TYPE.to_owned(),
        txn: issued.txn,
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
