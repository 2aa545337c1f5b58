//! What an operator watches: `/metrics` scraped and read with a Prometheus
//! text parser, `/healthz` and `/readyz`, and readiness following a
//! PostgreSQL that goes away and comes back (through a loopback proxy the
//! test cuts).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentauth_store::ScratchDatabase;
use prometheus_parse::{Sample, Scrape, Value as Metric};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::support::{Server, id, scope, spiffe};

/// `GET /metrics`, parsed.
async fn scrape(s: &Server) -> Scrape {
    let response = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(&s.admin),
        "the admin credential is never a metric"
    );
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s: &Sample| match &s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            Metric::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Metric::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_count_tokens_refusals_revocations_and_requests_and_parse_as_prometheus_text() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let reader = s.client("reader", &key);
    let (audience, read) = (spiffe("customer"), scope("read:customer"));
    let one = reader.fetch_token(&audience, &read, None).await.unwrap();
    reader.fetch_token(&audience, &read, None).await.unwrap();
    // A scope the reader does not hold, and a grant nobody supports.
    assert!(
        reader
            .fetch_token(&audience, &scope("write:customer"), None)
            .await
            .is_err()
    );
    let (status, _) = s.form("/oauth/token", &[("grant_type", "password")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A revocation, and a subscriber to the feed kept open while scraping.
    let jti = crate::support::claims(&one.token).jti;
    let (status, body) = s
        .admin_json(
            Method::POST,
            "/v1/revocations",
            Some(json!({"kind": "token", "value": jti})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stream = s
        .http
        .get(format!("{}/v1/revocations/stream", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);

    let m = scrape(&s).await;
    let issued = value(
        &m,
        "agentauth_tokens_issued_total",
        &[("grant", "client_credentials")],
    );
    assert_eq!(issued, Some(2.0));
    let refused = |grant, reason| {
        value(
            &m,
            "agentauth_tokens_refused_total",
            &[("grant", grant), ("reason", reason)],
        )
    };
    assert_eq!(refused("client_credentials", "invalid_scope"), Some(1.0));
    assert_eq!(refused("other", "unsupported_grant_type"), Some(1.0));
    assert_eq!(
        value(&m, "agentauth_revocations_total", &[]),
        Some(1.0),
        "one token revoked"
    );
    assert_eq!(
        value(&m, "agentauth_revocation_feed_subscribers", &[]),
        Some(1.0)
    );
    assert_eq!(value(&m, "agentauth_approvals_pending", &[]), Some(0.0));
    assert_eq!(value(&m, "agentauth_store_errors_total", &[]), Some(0.0));
    // Latency per route template (never the path as sent), and answers by status.
    let token_route = [("route", "/oauth/token"), ("method", "POST")];
    let timed = value(
        &m,
        "agentauth_http_request_duration_seconds_count",
        &token_route,
    )
    .or_else(|| value(&m, "agentauth_http_request_duration_seconds", &token_route));
    assert_eq!(timed, Some(4.0), "four token requests were timed");
    let appended = value(&m, "agentauth_audit_append_seconds_count", &[])
        .or_else(|| value(&m, "agentauth_audit_append_seconds", &[]));
    assert_eq!(
        appended,
        Some(2.0),
        "two tokens committed with their records"
    );
    // (A route with a `{parameter}` is labelled by its template too; this
    // parser cannot read braces in a label value, so the check uses another.)
    let listing = [
        ("route", "/v1/agents"),
        ("method", "GET"),
        ("status", "401"),
    ];
    assert_eq!(
        value(&m, "agentauth_http_responses_total", &listing),
        None,
        "nothing was asked of that route yet"
    );
    let refused = s
        .http
        .get(format!("{}/v1/agents", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let m = scrape(&s).await;
    assert_eq!(
        value(&m, "agentauth_http_responses_total", &listing),
        Some(1.0)
    );
    drop(stream);
    s.stop().await;
}

#[tokio::test]
async fn healthz_says_alive_and_readyz_checks_store_and_keys() {
    let s = Server::start().await;
    let alive = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status(), StatusCode::OK);
    let (status, body) = ready(&s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"ready": true, "checks": {"store": "ok", "keys": "ok", "shutting_down": false}})
    );
    s.stop().await;
}

async fn ready(s: &Server) -> (StatusCode, Value) {
    let response = s
        .http
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// A loopback TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    running: Option<JoinSet<()>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Self {
            addr,
            upstream: upstream.to_owned(),
            running: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            // Connections live in this set, so cutting the proxy closes them.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.running = Some(tasks);
    }

    /// Closes the listener and every connection through it.
    async fn cut(&mut self) {
        if let Some(mut tasks) = self.running.take() {
            tasks.shutdown().await;
        }
    }

    /// Listens again on the same port.
    async fn restore(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        self.serve(socket.listen(128).unwrap());
    }
}

/// Four loops of reader → customer token requests against `s` until `stop`
/// is set; every answer's status, in order, per loop.
fn token_load(
    s: &Server,
    key: &agentauth_core::SigningKey,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> JoinSet<Vec<StatusCode>> {
    let mut loops = JoinSet::new();
    for _ in 0..4 {
        let (http, url, key, stop) = (s.http.clone(), s.url.clone(), key.clone(), stop.clone());
        loops.spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let assertion = agentauth_core::ClientAssertionClaims::sign(
                    &key,
                    &id("reader"),
                    &url,
                    agentauth_core::random_b64(16),
                    agentauth_core::unix_now(),
                );
                let response = http
                    .post(format!("{url}/oauth/token"))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            agentauth_core::CLIENT_ASSERTION_TYPE,
                        ),
                        ("client_assertion", &assertion),
                        ("resource", &id("customer")),
                        ("scope", "read:customer"),
                    ])
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .expect("an answer, not a hang");
                let status = response.status();
                if status != StatusCode::OK && status != StatusCode::SERVICE_UNAVAILABLE {
                    eprintln!(
                        "odd answer {status}: {}",
                        response.text().await.unwrap_or_default()
                    );
                }
                statuses.push(status);
            }
            statuses
        });
    }
    loops
}

/// Polls `/readyz` until it answers `want`, for at most `within`.
async fn ready_becomes(s: &Server, want: StatusCode, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = ready(s).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} ({body}) for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Multi-threaded: `Server::spawn` blocks its thread until the banner, and
// the proxy must carry the authority's first connections meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_postgresql_going_away_and_coming_back() {
    let Some(scratch) = ScratchDatabase::for_test("readiness_follows_postgresql").await else {
        return;
    };
    // postgres://USER@HOST:PORT/DB → the same through the proxy.
    let (head, rest) = scratch.url.split_once('@').unwrap();
    let (host, db) = rest.split_once('/').unwrap();
    let mut proxy = Proxy::start(host).await;
    let through = format!("{head}@{}/{db}", proxy.addr);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::spawn(&dir.path().join("data"), Some(&through), &[], &[]);
    ready_becomes(&s, StatusCode::OK, Duration::from_secs(5)).await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let reader = s.client("reader", &key);
    let (audience, read) = (spiffe("customer"), scope("read:customer"));
    reader.fetch_token(&audience, &read, None).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = token_load(&s, &key, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.cut().await;
    let body = ready_becomes(&s, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10)).await;
    assert_eq!(body["error"], "not_ready", "{body}");
    assert_ne!(body["checks"]["store"], "ok", "{body}");
    // A token request now fails cleanly: 503 with Retry-After, not a hang.
    let started = Instant::now();
    let response = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                agentauth_core::CLIENT_ASSERTION_TYPE,
            ),
            ("client_assertion", &s.assertion("reader", &key)),
            ("resource", &id("customer")),
            ("scope", "read:customer"),
        ])
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(35));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let refusal: Value = response.json().await.unwrap();
    assert_eq!(refusal["error"], "temporarily_unavailable", "{refusal}");

    proxy.restore().await;
    ready_becomes(&s, StatusCode::OK, Duration::from_secs(20)).await;
    reader.fetch_token(&audience, &read, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Under load through the outage: every answer was a token or a clean
    // 503, the outage showed, and each loop ended served again.
    let mut refused = 0;
    while let Some(statuses) = load.join_next().await {
        let statuses = statuses.unwrap();
        for status in &statuses {
            assert!(
                [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(status),
                "an answer other than 200 or 503 under load: {statuses:?}"
            );
        }
        refused += statuses.iter().filter(|s| **s != StatusCode::OK).count();
        assert_eq!(statuses.last(), Some(&StatusCode::OK), "{statuses:?}");
    }
    assert!(refused > 0, "no request met the outage");
    let m = scrape(&s).await;
    assert!(
        value(&m, "agentauth_store_errors_total", &[]).unwrap() >= 1.0,
        "the refused request counted as a store error"
    );
    drop(s);
    scratch.drop_database().await.unwrap();
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_then_exits() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = Server::start().await;
    let body = json!({
        "name": "late",
        "permissions": ["read:customer"],
        "public_jwk": agentauth_core::SigningKey::generate_ed25519().public_jwk().to_json(),
    })
    .to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let addr = s.url.strip_prefix("http://").unwrap().to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/agents HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.admin,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Half the body is in: the request is in flight when SIGTERM arrives.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "no new connection is accepted once shutdown began"
    );
    conn.write_all(rest).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(true), "exit 0");
    let name = agentauth_core::AgentName::new("late").unwrap();
    assert!(s.store().await.agent(&name).await.unwrap().is_some());
}

#[tokio::test]
async fn an_agent_mounts_its_layers_decisions_by_check_as_prometheus_metrics() {
    use agentauth_sdk::{AccessToken, Verifier, VerifierConfig};
    use axum::Router;
    use axum::routing::get;

    let s = Server::start().await;
    let customer_key = s.register("customer", &["audit:write"]).await;
    let reader_key = s.register("reader", &["read:customer"]).await;
    let verifier = Verifier::connect(VerifierConfig::new(&s.url, spiffe("customer")))
        .await
        .unwrap()
        .with_audit(s.client("customer", &customer_key));
    async fn ok() -> &'static str {
        "{}"
    }
    let app = Router::new()
        .route("/data", get(ok).layer(verifier.require("read:customer")))
        .route("/admin", get(ok).layer(verifier.require("write:customer")))
        .route("/metrics", verifier.metrics());
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    let reader = s.client("reader", &reader_key);
    let token = reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    let send = |path: &str, token: &AccessToken| {
        let request = s.http.get(format!("{base}{path}"));
        let (reader, token) = (&reader, token.clone());
        async move { reader.send(request, &token).await.unwrap().status() }
    };
    for _ in 0..3 {
        assert_eq!(send("/data", &token).await, StatusCode::OK);
    }
    assert_eq!(send("/admin", &token).await, StatusCode::FORBIDDEN);
    let garbage = AccessToken {
        token: "garbage".into(),
        ..token.clone()
    };
    assert_eq!(send("/data", &garbage).await, StatusCode::UNAUTHORIZED);
    let bare = s.http.get(format!("{base}/data")).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    verifier.flush_audit().await;

    let response = s.http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&token.token), "no token is ever a metric");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let decisions = |decision, check| {
        value(
            &scrape,
            "agentauth_layer_decisions_total",
            &[("decision", decision), ("check", check)],
        )
    };
    assert_eq!(decisions("allow", "all"), Some(3.0), "{text}");
    assert_eq!(decisions("deny", "permission"), Some(1.0), "{text}");
    assert_eq!(decisions("deny", "signature"), Some(1.0), "{text}");
    assert_eq!(decisions("deny", "token_present"), Some(1.0), "{text}");
    assert_eq!(decisions("deny", "revocation"), None, "{text}");
    let single = |name| value(&scrape, name, &[]);
    assert_eq!(single("agentauth_layer_audit_delivered_total"), Some(6.0));
    assert_eq!(single("agentauth_layer_audit_buffered"), Some(0.0));
    assert_eq!(single("agentauth_layer_audit_dropped_total"), Some(0.0));
    assert_eq!(single("agentauth_layer_revocation_feed_fresh"), Some(1.0));
    assert!(single("agentauth_layer_revocation_seq").is_some());

    // A registry the agent already serves takes the same series.
    let mut registry = agentauth_sdk::prometheus_client::registry::Registry::default();
    verifier.register_metrics(&mut registry);
    let mut own = String::new();
    agentauth_sdk::prometheus_client::encoding::text::encode(&mut own, &registry).unwrap();
    assert!(
        own.contains("agentauth_layer_decisions_total{decision=\"allow\",check=\"all\"} 3"),
        "{own}"
    );
    s.stop().await;
}

/// What an OTLP/HTTP collector on loopback received: every decoded export.
type Received = std::sync::Arc<
    std::sync::Mutex<
        Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    >,
>;

/// A collector that takes `POST /v1/traces` (protobuf) and keeps each export.
async fn collector() -> (String, Received) {
    use axum::body::Bytes;
    use prost::Message as _;
    let received = Received::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let export = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                    .expect("an OTLP trace export in protobuf");
                kept.lock().unwrap().push(export);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    (url, received)
}

// Multi-threaded: `Server::spawn` blocks its thread until the banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_each_request_is_a_span_at_the_collector() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;

    let (endpoint, received) = collector().await;
    let mut s = Server::start_with(&["--otlp-endpoint", &endpoint], &[]).await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    // A clean stop sends what is still buffered.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status();
    assert_eq!(s.wait_exit(Duration::from_secs(15)), Some(true));

    let exports = received.lock().unwrap().clone();
    assert!(!exports.is_empty(), "the collector received nothing");
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(Any::StringValue(s)) => s.clone(),
        _ => String::new(),
    };
    let mut services = Vec::new();
    let mut token_spans = Vec::new();
    for export in &exports {
        for resource in &export.resource_spans {
            for attribute in resource.resource.iter().flat_map(|r| &r.attributes) {
                if attribute.key == "service.name" {
                    services.push(text(&attribute.value));
                }
            }
            for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                let attributes: std::collections::HashMap<_, _> = span
                    .attributes
                    .iter()
                    .map(|a| (a.key.clone(), text(&a.value)))
                    .collect();
                let everything = format!("{span:?}");
                assert!(!everything.contains(&token), "a span holds a whole token");
                if attributes.get("uri").is_some_and(|u| u == "/oauth/token") {
                    assert_eq!(attributes["method"], "POST", "{attributes:?}");
                    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
                    token_spans.push(span.clone());
                }
            }
        }
    }
    assert!(services.iter().all(|s| s == "agentauth"), "{services:?}");
    assert!(!services.is_empty());
    assert_eq!(token_spans.len(), 1, "one span for the one token request");
    let registrations = exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter(|span| {
            span.attributes
                .iter()
                .any(|a| a.key == "uri" && text(&a.value) == "/v1/agents")
        })
        .count();
    assert_eq!(registrations, 2, "one span per registration");
}

#[tokio::test]
async fn without_an_otlp_endpoint_nothing_is_sent() {
    let (endpoint, received) = collector().await;
    // The collector is up, but nobody names it: traces are off by default.
    let s = Server::start_with(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let (status, _) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(received.lock().unwrap().is_empty());
}
