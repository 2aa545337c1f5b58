//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009).
//! Callers are the admin (Bearer) or an agent (private_key_jwt).

use agentauth_api::{Introspection, TokenForm, TokenRevoked};
use agentauth_core::AuditKind;
use agentauth_core::{AccessClaims, DEFAULT_LEEWAY_SECS, Decision, Rejection, SpiffeId};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use serde::Serialize;

use crate::AuthorityError;
use crate::admin::bearer;
use crate::audit::{event, request_id};
use crate::body::{BodyError, FormBody};
use crate::client_auth::{ClientCredentials, authenticate};
use crate::server::{AppState, State as AuthorityState};
use crate::standing::{self, Door};

/// Who is asking.
enum Caller {
    /// The admin, or an operator with the admin's rights.
    Admin(crate::Principal),
    Agent(SpiffeId),
}

async fn caller(
    s: &AuthorityState,
    headers: &HeaderMap,
    form: &TokenForm,
    path: &str,
) -> Result<Caller, AuthorityError> {
    if bearer(headers).is_some() {
        return Ok(Caller::Admin(s.admin.require(headers)?));
    }
    let creds = ClientCredentials {
        assertion_type: form.client_assertion_type.as_deref(),
        assertion: form.client_assertion.as_deref(),
        client_id: form.client_id.as_deref(),
        certificate: None,
    };
    let mut claimed = String::new();
    let client = authenticate(s, &creds, &s.endpoint(path), &mut claimed).await?;
    s.store.consume_assertion(&client.assertion).await?;
    Ok(Caller::Agent(client.agent.id))
}

fn no_store(body: impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /oauth/introspect`: an agent may introspect only tokens addressed to it.
pub(crate) async fn introspect(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<FormBody<TokenForm>, AuthorityError>,
) -> Response {
    let answer = async {
        let FormBody(form) = form?;
        introspection(&s, &headers, &form).await
    };
    let response = answer.await.unwrap_or_else(IntoResponse::into_response);
    super::challenge_only_for_used_scheme(&headers, response)
}

async fn introspection(
    s: &AuthorityState,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Response, AuthorityError> {
    let caller = caller(s, headers, form, "/oauth/introspect").await?;
    let token = presented(form)?;
    let body = match standing_of(s, &caller, token).await? {
        Some(claims) => Introspection {
            claims: Some(claims),
            active: true,
            token_type: Some("Bearer".to_owned()),
        },
        None => Introspection {
            claims: None,
            active: false,
            token_type: None,
        },
    };
    Ok(no_store(body))
}

/// `POST /oauth/revoke`: an agent may revoke only tokens issued to it; unknown
/// or expired tokens are answered 200 as RFC 7009 §2.2 asks.
pub(crate) async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<FormBody<TokenForm>, AuthorityError>,
) -> Response {
    let answer = async {
        let FormBody(form) = form?;
        let caller = caller(&s, &headers, &form, "/oauth/revoke").await?;
        let token = presented(&form)?;
        revoke_presented(&s, &caller, token, &request_id(&headers)).await?;
        Ok::<_, AuthorityError>(no_store(TokenRevoked {}))
    };
    let response = answer.await.unwrap_or_else(IntoResponse::into_response);
    super::challenge_only_for_used_scheme(&headers, response)
}

fn presented(form: &TokenForm) -> Result<&str, AuthorityError> {
    Ok(form
        .token
        .as_deref()
        .ok_or(BodyError::MissingParameter("token"))?)
}

/// The claims of `token` if it stands by the one token check, for `caller`:
/// the admin sees any token, an agent only tokens addressed to it.
async fn standing_of(
    s: &AuthorityState,
    caller: &Caller,
    token: &str,
) -> Result<Option<AccessClaims>, AuthorityError> {
    let audience = match caller {
        Caller::Admin(_) => None,
        Caller::Agent(id) => Some(id),
    };
    match standing::check(s, token, Door::Introspection { audience }).await {
        Ok(claims) => Ok(Some(claims)),
        Err(Rejection::View(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

/// Revokes a token this authority issued (and all exchanged from it); an
/// agent may revoke only tokens issued to it. A token that is not ours, or
/// expired, is ignored as RFC 7009 §2.2 asks.
async fn revoke_presented(
    s: &AuthorityState,
    caller: &Caller,
    token: &str,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let Some(claims) = standing::issued_here(s, token).await else {
        return Ok(());
    };
    let actor = match caller {
        Caller::Admin(who) => who.actor(),
        Caller::Agent(id) if *id == claims.client_id => id.to_string(),
        Caller::Agent(_) => {
            return Err(AuthorityError::TokenOfAnotherClient);
        }
    };
    let mut audit = event(
        AuditKind::TokenRevoked,
        &actor,
        &claims.jti,
        Decision::Allow,
    );
    audit.audience = claims.aud.to_string();
    audit.scope = claims.scope.to_string();
    audit.request_id = request_id.to_owned();
    s.store
        .revoke_token(&claims.jti, claims.exp + DEFAULT_LEEWAY_SECS, &audit)
        .await?;
    s.revocations_changed();
    Ok(())
}
