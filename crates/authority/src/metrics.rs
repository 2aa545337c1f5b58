//! What the authority counts for operators, served as OpenMetrics text at
//! `GET /metrics`: requests and their latency per route, tokens issued and
//! refused by grant and reason, revocations, feed subscribers, pending
//! approvals and store failures. Every label takes a bounded set of values
//! (route templates, grants, OAuth error codes); no agent name or token is
//! ever a label.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::Refusal;
use crate::server::AppState;

/// Most pending approvals counted at one scrape.
const PENDING_APPROVALS_COUNTED: i64 = 10_000;
/// Least time between two scrapes that read the store: `/metrics` is
/// public, so a flood of scrapes costs the store at most one read a second.
const STORE_READ_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A route and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

/// A route, method and status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    route: String,
    method: String,
    status: u16,
}

/// A grant type, as the token endpoint names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant: &'static str,
}

/// A grant type and the OAuth error code of a refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    grant: &'static str,
    reason: &'static str,
}

/// The grant a token request asked for, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// `client_credentials`.
    ClientCredentials,
    /// RFC 8693 token exchange.
    TokenExchange,
    /// Anything else, or a form that could not be read.
    Other,
}

impl Grant {
    /// The grant of a request's `grant_type`.
    pub(crate) fn of(grant_type: Option<&str>) -> Self {
        match grant_type {
            Some("client_credentials") => Self::ClientCredentials,
            Some(agentauth_api::TOKEN_EXCHANGE_GRANT) => Self::TokenExchange,
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "token_exchange",
            Self::Other => "other",
        }
    }
}

/// The authority's metrics; one per running authority.
pub(crate) struct Metrics {
    registry: Registry,
    latency: Family<RouteLabels, Histogram>,
    answers: Family<AnswerLabels, Counter>,
    issued: Family<GrantLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    store_errors: Counter,
    audit_append: Histogram,
    feed_subscribers: Gauge,
    pending_approvals: Gauge,
    /// Revocation feed entries published (by any replica), read from the
    /// store at each scrape from where the last one stopped.
    revocations: Counter<u64, AtomicU64>,
    feed_head: std::sync::atomic::AtomicI64,
    /// When a scrape last read the store.
    store_read_at: std::sync::Mutex<Option<Instant>>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("agentauth");
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.1 ms to about 1.6 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 15))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route and method",
            latency.clone(),
        );
        let answers = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "http_responses",
            "Answers by route, method and status code",
            answers.clone(),
        );
        let issued = Family::<GrantLabels, Counter>::default();
        registry.register(
            "tokens_issued",
            "Access tokens issued, by grant (token_exchange counts exchanges)",
            issued.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "tokens_refused",
            "Token requests refused, by grant and OAuth error code",
            refused.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Requests that failed because the store failed or could not take the write",
            store_errors.clone(),
        );
        let audit_append = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register(
            "audit_append_seconds",
            "Time to commit an issued token with its audit record (the group commit included)",
            audit_append.clone(),
        );
        let feed_subscribers = Gauge::default();
        registry.register(
            "revocation_feed_subscribers",
            "Open revocation streams (GET /v1/revocations/stream)",
            feed_subscribers.clone(),
        );
        let pending_approvals = Gauge::default();
        registry.register(
            "approvals_pending",
            "Token requests waiting for a person's approval (counted up to 10000)",
            pending_approvals.clone(),
        );
        let revocations = Counter::<u64, AtomicU64>::default();
        registry.register(
            "revocations",
            "Revocation feed entries published (agents, tokens, tasks, keys; by any replica)",
            revocations.clone(),
        );
        Self {
            registry,
            latency,
            answers,
            issued,
            refused,
            store_errors,
            audit_append,
            feed_subscribers,
            pending_approvals,
            revocations,
            feed_head: std::sync::atomic::AtomicI64::new(0),
            store_read_at: std::sync::Mutex::new(None),
        }
    }

    /// A token issued by `grant`.
    pub(crate) fn issued(&self, grant: Grant) {
        self.issued
            .get_or_create(&GrantLabels {
                grant: grant.label(),
            })
            .inc();
    }

    /// A token request for `grant` refused with OAuth error `reason`.
    pub(crate) fn refused(&self, grant: Grant, reason: &'static str) {
        self.refused
            .get_or_create(&RefusalLabels {
                grant: grant.label(),
                reason,
            })
            .inc();
    }

    /// An issued token and its audit record took `elapsed` to commit.
    pub(crate) fn audit_appended(&self, elapsed: std::time::Duration) {
        self.audit_append.observe(elapsed.as_secs_f64());
    }

    /// The text of `GET /metrics`, with the gauges read now.
    async fn render(&self, s: &crate::server::State) -> Result<String, std::fmt::Error> {
        self.feed_subscribers
            .set(i64::try_from(s.feed.open_streams()).unwrap_or(i64::MAX));
        if self.store_read_due() {
            self.read_store(s).await;
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Whether this scrape reads the store (and marks it read if so).
    fn store_read_due(&self) -> bool {
        let mut last = self.store_read_at.lock().expect("metrics lock");
        if last.is_some_and(|at| at.elapsed() < STORE_READ_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The gauges and counters that come from the store.
    async fn read_store(&self, s: &crate::server::State) {
        // A scrape while the store is down still answers, without these.
        if let Ok(pending) = s
            .store
            .approvals(
                Some(agentauth_store::ApprovalStatus::Pending),
                PENDING_APPROVALS_COUNTED,
            )
            .await
        {
            self.pending_approvals
                .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        }
        let seen = self.feed_head.load(Ordering::Relaxed);
        if let Ok(head) = crate::revocation::newest(&*s.store, seen).await {
            // Whatever a concurrent scrape counted already is not counted again.
            let before = self.feed_head.fetch_max(head, Ordering::Relaxed);
            if before < head {
                self.revocations
                    .inc_by(u64::try_from(head - before).unwrap_or(0));
            }
        }
    }
}

/// Times and counts every routed request (a route layer, so the route is
/// its template, never the path as sent).
pub(crate) async fn observe(
    State(s): State<AppState>,
    route: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_str().to_owned();
    s.metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    s.metrics
        .answers
        .get_or_create(&AnswerLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    if response
        .extensions()
        .get::<Refusal>()
        .is_some_and(|r| r.store_fault)
    {
        s.metrics.store_errors.inc();
    }
    response
}

/// `GET /metrics`: OpenMetrics text, for Prometheus to scrape.
pub(crate) async fn scrape(State(s): State<AppState>) -> Response {
    match s.metrics.render(&s).await {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_labelled_by_grant_and_reason_only() {
        let m = Metrics::new();
        m.issued(Grant::of(Some("client_credentials")));
        m.issued(Grant::of(Some("client_credentials")));
        m.refused(Grant::of(Some("password")), "unsupported_grant_type");
        m.refused(
            Grant::of(Some("urn:ietf:params:oauth:grant-type:token-exchange")),
            "invalid_grant",
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert!(
            text.contains("agentauth_tokens_issued_total{grant=\"client_credentials\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "agentauth_tokens_refused_total{grant=\"other\",reason=\"unsupported_grant_type\"} 1\n"
        ));
        assert!(text.contains(
            "agentauth_tokens_refused_total{grant=\"token_exchange\",reason=\"invalid_grant\"} 1\n"
        ));
        assert!(text.ends_with("# EOF\n"));
    }
}
