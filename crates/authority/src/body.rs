//! Request bodies, read with a hard size bound and parsed strictly, so that
//! every malformed body gets the same clear JSON error.

use axum::extract::{FromRequest, Request};
use http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::AuthorityError;

/// Largest body any authority endpoint reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

async fn read_bounded(
    req: Request,
    expected_type: &str,
    limit: usize,
) -> Result<bytes::Bytes, AuthorityError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(expected_type) {
        return Err(AuthorityError::UnsupportedMediaType(format!(
            "the body must be {expected_type}"
        )));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| AuthorityError::PayloadTooLarge(limit))
}

/// A JSON body (`application/json`) of at most `LIMIT` bytes parsed into
/// `T`; unknown fields are refused when `T` says `deny_unknown_fields`.
#[derive(Debug)]
pub(crate) struct JsonBody<T, const LIMIT: usize = MAX_BODY_BYTES>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S>
    for JsonBody<T, LIMIT>
{
    type Rejection = AuthorityError;

    async fn from_request(req: Request, _: &S) -> Result<Self, AuthorityError> {
        let bytes = read_bounded(req, "application/json", LIMIT).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AuthorityError::InvalidRequest(format!("the JSON body is invalid: {e}")))
    }
}

/// A form body (`application/x-www-form-urlencoded`), as OAuth endpoints take.
/// A repeated parameter is refused (RFC 6749 §3.2).
#[derive(Debug)]
pub(crate) struct FormBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormBody<T> {
    type Rejection = AuthorityError;

    async fn from_request(req: Request, _: &S) -> Result<Self, AuthorityError> {
        let bytes = read_bounded(req, "application/x-www-form-urlencoded", MAX_BODY_BYTES).await?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| AuthorityError::InvalidRequest("the form body is malformed".into()))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(AuthorityError::InvalidRequest(format!(
                    "the parameter \"{name}\" is repeated"
                )));
            }
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(FormBody)
            .map_err(|e| AuthorityError::InvalidRequest(format!("the form body is invalid: {e}")))
    }
}

/// A whole request with its body read (bounded), for endpoints that must
/// check a proof of possession over the body before parsing it.
#[derive(Debug)]
pub(crate) struct RawRequest {
    pub(crate) parts: http::request::Parts,
    pub(crate) body: bytes::Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawRequest {
    type Rejection = AuthorityError;

    async fn from_request(req: Request, _: &S) -> Result<Self, AuthorityError> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| AuthorityError::PayloadTooLarge(MAX_BODY_BYTES))?;
        Ok(Self { parts, body })
    }
}

impl RawRequest {
    /// The body as JSON of type `T` (`application/json` required).
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, AuthorityError> {
        let content_type = self
            .parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(AuthorityError::UnsupportedMediaType(
                "the body must be application/json".into(),
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| AuthorityError::InvalidRequest(format!("the JSON body is invalid: {e}")))
    }
}
