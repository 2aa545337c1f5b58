//! Request bodies and query strings, read with a hard size bound and parsed
//! strictly, so that every malformed request gets the same clear JSON error.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::AuthorityError;

/// Largest body any authority endpoint reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most parameters a form body may have: the OAuth endpoints know about
/// twenty, so more is never a legitimate request.
pub(crate) const MAX_FORM_PARAMETERS: usize = 64;

/// Why a request's body or query string could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The `Content-Type` is not the one the endpoint takes.
    #[error("the body must be {expected}")]
    WrongContentType {
        /// The media type the endpoint takes.
        expected: &'static str,
    },
    /// The body is larger than the endpoint accepts.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The endpoint's bound, in bytes.
        limit: usize,
    },
    /// The JSON body does not parse into the endpoint's request type.
    #[error("the JSON body is invalid: {0}")]
    Json(#[source] serde_json::Error),
    /// The form body is not `application/x-www-form-urlencoded` text.
    #[error("the form body is malformed")]
    MalformedForm(#[source] serde_urlencoded::de::Error),
    /// A form parameter appears twice (RFC 6749 §3.2).
    #[error("the parameter \"{0}\" is repeated")]
    RepeatedParameter(String),
    /// The form has more parameters than any endpoint takes.
    #[error("the form has more than {limit} parameters")]
    TooManyParameters {
        /// The bound.
        limit: usize,
    },
    /// The form body does not parse into the endpoint's request type.
    #[error("the form body is invalid: {0}")]
    Form(#[source] serde_urlencoded::de::Error),
    /// The query string does not parse into the endpoint's query type; the
    /// cause names the parameter.
    #[error("the query string is invalid: {}", innermost(.0))]
    Query(#[source] QueryRejection),
    /// A required parameter is missing.
    #[error("{0} is missing")]
    MissingParameter(&'static str),
}

/// The deepest cause of an error: for a query string, the parameter and
/// what is wrong with it (`limit: invalid digit found in string`).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The essence (type/subtype) of a `Content-Type` header value.
fn essence(headers: &http::HeaderMap) -> &str {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type.split(';').next().unwrap_or("").trim()
}

fn require_type(headers: &http::HeaderMap, expected: &'static str) -> Result<(), BodyError> {
    if essence(headers).eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(BodyError::WrongContentType { expected })
    }
}

async fn read_bounded(
    req: Request,
    expected: &'static str,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    require_type(req.headers(), expected)?;
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| BodyError::TooLarge { limit })
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
        let parsed = serde_json::from_slice(&bytes).map_err(BodyError::Json)?;
        Ok(JsonBody(parsed))
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
        Ok(FormBody(parse_form(&bytes)?))
    }
}

/// Parses a form body into `T` exactly as [`FormBody`] does once the body is
/// read: repeated and surplus parameters refused first. Public for fuzzing and tests.
pub fn parse_form<T: DeserializeOwned>(form: &[u8]) -> Result<T, BodyError> {
    check_parameters(form)?;
    serde_urlencoded::from_bytes(form).map_err(BodyError::Form)
}

/// Refuses a form with too many parameters or a repeated one, in one pass
/// over the names (linear, whatever the attacker sends).
fn check_parameters(form: &[u8]) -> Result<(), BodyError> {
    let mut seen = std::collections::HashSet::new();
    for (name, _) in form_urlencoded::parse(form) {
        if seen.len() == MAX_FORM_PARAMETERS {
            return Err(BodyError::TooManyParameters {
                limit: MAX_FORM_PARAMETERS,
            });
        }
        if !seen.insert(name.clone()) {
            return Err(BodyError::RepeatedParameter(
                name.chars().take(64).collect(),
            ));
        }
    }
    Ok(())
}

/// The query string parsed into `T` (an absent query parses as empty).
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AuthorityError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, AuthorityError> {
        let Query(parsed) = Query::try_from_uri(&parts.uri).map_err(BodyError::Query)?;
        Ok(QueryParams(parsed))
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
            .map_err(|_| BodyError::TooLarge {
                limit: MAX_BODY_BYTES,
            })?;
        Ok(Self { parts, body })
    }
}

impl RawRequest {
    /// The body as JSON of type `T` (`application/json` required).
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, BodyError> {
        require_type(&self.parts.headers, "application/json")?;
        serde_json::from_slice(&self.body).map_err(BodyError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<i64>,
    }

    async fn query(uri: &str) -> Result<Page, AuthorityError> {
        let (mut parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        QueryParams::<Page>::from_request_parts(&mut parts, &())
            .await
            .map(|QueryParams(p)| p)
    }

    #[tokio::test]
    async fn a_query_that_does_not_parse_is_a_query_error() {
        assert!(query("/x").await.is_ok());
        assert_eq!(query("/x?limit=5").await.unwrap().limit, Some(5));
        let err = query("/x?limit=many").await.unwrap_err();
        assert!(
            matches!(err, AuthorityError::Body(BodyError::Query(_))),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the query string is invalid: limit: invalid digit found in string"
        );
    }

    #[tokio::test]
    async fn a_repeated_form_parameter_is_named() {
        let req = http::Request::post("/x")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(axum::body::Body::from("a=1&a=2"))
            .unwrap();
        let err = FormBody::<std::collections::HashMap<String, String>>::from_request(req, &())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthorityError::Body(BodyError::RepeatedParameter(p)) if p == "a"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_body_of_another_type_is_refused_before_it_is_read() {
        let req = http::Request::post("/x")
            .header(CONTENT_TYPE, "text/plain")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let err = JsonBody::<serde_json::Value>::from_request(req, &())
            .await
            .unwrap_err();
        assert_eq!(
            err.status_and_code().0,
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn a_form_is_checked_in_one_pass_and_bounded() {
        assert!(check_parameters(b"grant_type=x&scope=a+b&resource=r").is_ok());
        assert!(matches!(
            check_parameters(b"scope=a&grant_type=x&scope=b"),
            Err(BodyError::RepeatedParameter(name)) if name == "scope"
        ));
        // A percent-encoded name is the same parameter.
        assert!(matches!(
            check_parameters(b"scope=a&%73cope=b"),
            Err(BodyError::RepeatedParameter(_))
        ));
        // The review's 64 KiB form with 17,505 distinct names is refused at
        // the bound, without comparing every name with every other.
        let flood: Vec<String> = (0..17_505).map(|i| format!("p{i}=")).collect();
        assert!(matches!(
            check_parameters(flood.join("&").as_bytes()),
            Err(BodyError::TooManyParameters {
                limit: MAX_FORM_PARAMETERS
            })
        ));
        let most: Vec<String> = (0..MAX_FORM_PARAMETERS).map(|i| format!("p{i}=")).collect();
        assert!(check_parameters(most.join("&").as_bytes()).is_ok());
    }
}
