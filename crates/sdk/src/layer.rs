//! The tower layer that guards an axum route: every check of [`Verifier`],
//! then the route's permission, then one audit record per decision.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use agentauth_api::ReportedEvent;
use agentauth_core::Decision;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::Request;
use http::request::Parts;
use tower::{Layer, Service};

use crate::policy::RouteContext;
use crate::{Check, Denial, VerifiedAgent, Verifier};

/// Largest request body the layer reads to check its digest.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Verifies the caller's token and, if set, demands a permission.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Verifier,
    required: Option<String>,
    fail_closed: bool,
    route: RouteContext,
}

impl AuthLayer {
    pub(crate) fn new(verifier: Verifier, required: Option<String>) -> Self {
        Self {
            verifier,
            required,
            fail_closed: false,
            route: RouteContext::default(),
        }
    }

    /// Tells policies how sensitive this route is (`context.sensitivity`,
    /// e.g. `high`); `unspecified` otherwise.
    pub fn sensitivity(mut self, sensitivity: &str) -> Self {
        self.route.sensitivity = Some(sensitivity.to_owned());
        self
    }

    /// Declares the typed resource this route serves: policies see
    /// `Resource::"<request path>"` of this `kind`, in this agent, instead of
    /// the agent itself.
    pub fn resource(mut self, kind: &str) -> Self {
        self.route.resource_kind = Some(kind.to_owned());
        self
    }

    /// Refuses requests (503, [`Check::RevocationFeed`]) while the revocation
    /// feed has been unreachable for longer than its grace period, instead
    /// of the default: keep verifying against the last known list.
    pub fn fail_closed(mut self) -> Self {
        self.fail_closed = true;
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
            required: self.required.clone(),
            fail_closed: self.fail_closed,
            route: self.route.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around a route.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Verifier,
    required: Option<String>,
    fail_closed: bool,
    route: RouteContext,
}

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let required = self.required.clone();
        let fail_closed = self.fail_closed;
        let route_context = self.route.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // Only an audit record or a denial's log line needs these; with
            // audit shipping off, an allowed request builds neither.
            let route = |parts: &Parts| format!("{} {}", parts.method, parts.uri.path());
            let request_id = |parts: &Parts| header(&parts.headers, "x-request-id");
            let token = bearer(&parts.headers).map(str::to_owned);
            // The body is part of what the signature covers, so it is read (bounded) first.
            let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
                .await
                .map_err(|_| {
                    Denial::new(
                        Check::BodySize,
                        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                    )
                });
            let outcome = match &body {
                Ok(bytes) => {
                    authorize(
                        &verifier,
                        &parts,
                        bytes,
                        token.as_deref(),
                        required.as_deref(),
                        fail_closed,
                        &route_context,
                    )
                    .await
                }
                Err(denial) => Err(denial.clone()),
            };
            match (outcome, body) {
                (Ok(agent), Ok(bytes)) => {
                    verifier.counters().allowed();
                    verifier.audit_with(|| {
                        event(
                            &verifier,
                            Some(&agent),
                            "request.allowed",
                            Decision::Allow,
                            route(&parts),
                            request_id(&parts),
                        )
                    });
                    let mut req = Request::from_parts(parts, Body::from(bytes));
                    req.extensions_mut().insert(agent);
                    inner.call(req).await
                }
                (Err(denial), _) | (Ok(_), Err(denial)) => {
                    let route = route(&parts);
                    verifier.counters().denied(denial.check);
                    tracing::info!(check = denial.check.as_str(), reason = %denial.description, %route, "request denied");
                    verifier.audit_with(|| {
                        let mut e = event(
                            &verifier,
                            None,
                            "request.denied",
                            Decision::Deny,
                            route,
                            request_id(&parts),
                        );
                        e.reason = format!("{}: {}", denial.check.as_str(), denial.description);
                        e.scope = required.unwrap_or_default();
                        e.subject = token.as_deref().ok().map(peek_client).unwrap_or_default();
                        e
                    });
                    Ok(denial.into_response())
                }
            }
        })
    }
}

/// The checks in order: token present, then the verifier's checks, then the
/// permission, then the local policy decision with the request's context.
async fn authorize(
    verifier: &Verifier,
    parts: &Parts,
    body: &[u8],
    token: Result<&str, &Denial>,
    required: Option<&str>,
    fail_closed: bool,
    route: &RouteContext,
) -> Result<VerifiedAgent, Denial> {
    let token = token.map_err(Clone::clone)?;
    let agent = verifier
        .verify_request(parts, body, token, fail_closed)
        .await?;
    // Over mutual TLS the caller is known by its certificate: a token of
    // another agent is refused on this connection, whoever holds its key.
    if let Some(crate::mtls::PeerId(peer)) = parts.extensions.get::<crate::mtls::PeerId>()
        && *peer != agent.agent
    {
        return Err(Denial::new(
            Check::Proof,
            format!(
                "the token's agent {} is not the TLS peer {peer}",
                agent.agent
            ),
        ));
    }
    if let Some(permission) = required
        && !agent.scope.contains(permission)
    {
        let mut d = Denial::new(
            Check::Permission,
            format!("the token does not grant \"{permission}\""),
        );
        d.required = Some(permission.to_owned());
        return Err(d);
    }
    if let Some(permission) = required {
        verifier
            .check_policy(&agent, permission, route, parts)
            .await?;
    }
    Ok(agent)
}

fn bearer(headers: &http::HeaderMap) -> Result<&str, Denial> {
    let missing = || {
        Denial::new(
            Check::TokenPresent,
            "no Bearer or DPoP access token was presented",
        )
    };
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    match value.split_once(' ') {
        Some((scheme, token))
            if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop"))
                && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(missing()),
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(64).collect())
        .unwrap_or_default()
}

/// For a denied request, who the token claims to be — unverified, for the audit only.
fn peek_client(token: &str) -> String {
    let Ok(compact) = agentauth_core::parse_access_token(token) else {
        return String::new();
    };
    compact
        .peek_claims::<serde_json::Value>()
        .ok()
        .and_then(|c| {
            c.get("client_id")
                .and_then(|v| v.as_str())
                .map(|s| format!("unverified:{}", truncate(s)))
        })
        .unwrap_or_default()
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn event(
    verifier: &Verifier,
    agent: Option<&VerifiedAgent>,
    kind: &'static str,
    decision: Decision,
    route: String,
    request_id: String,
) -> ReportedEvent {
    ReportedEvent {
        kind: kind.to_owned(),
        subject: agent.map(|a| a.agent.to_string()).unwrap_or_default(),
        audience: verifier.audience().to_string(),
        scope: agent.map(|a| a.scope.to_string()).unwrap_or_default(),
        decision,
        reason: route,
        request_id,
        txn: agent
            .and_then(|a| a.txn.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default(),
        chain: agent
            .map(|a| a.claims.actor_chain_text())
            .unwrap_or_default(),
        purpose: agent
            .and_then(|a| a.claims.purpose.clone())
            .unwrap_or_default(),
        time_ms: Some(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        ),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedAgent {
    type Rejection = Denial;

    /// The identity the layer verified; a route without the layer is refused
    /// rather than served unauthenticated.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Denial> {
        parts
            .extensions
            .get::<VerifiedAgent>()
            .cloned()
            .ok_or_else(|| {
                Denial::new(
                    Check::TokenPresent,
                    "this route is not protected by the agentauth layer",
                )
            })
    }
}
