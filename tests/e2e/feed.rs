//! The revocation stream (`GET /v1/revocations/stream`, Server-Sent Events)
//! and the SDK verifier that follows it: catch-up, resumption after
//! `Last-Event-ID`, prompt denial without polling, and what routes do while
//! the feed is down (fail open by default, fail closed on request).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use agentauth_core::SpiffeId;
use agentauth_sdk::{AccessToken, Client, Verifier, VerifierConfig};
use axum::Router;
use axum::routing::get;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, command, id, scope, spiffe};

/// One Server-Sent Event as the test reads it.
#[derive(Debug)]
struct Event {
    id: String,
    event: String,
    data: Value,
}

/// An open revocation stream.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(server: &Server, last_event_id: Option<&str>, query: &str) -> Self {
        let mut request = server
            .http
            .get(format!("{}/v1/revocations/stream{query}", server.url));
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), if one comes `within`.
    async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                let mut data = None;
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("id", v)) => event.id = v.trim().to_owned(),
                        Some(("event", v)) => event.event = v.trim().to_owned(),
                        Some(("data", v)) => data = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
                if let Some(data) = data {
                    event.data = serde_json::from_str(&data).unwrap();
                    return Some(event);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// The next `n` events, failing the test if they do not come within 5 s.
    async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..n {
            let event = self.next(Duration::from_secs(5)).await;
            events.push(event.unwrap_or_else(|| panic!("only {} of {n} events", events.len())));
        }
        events
    }
}

/// Revokes `token` as the admin (RFC 7009).
async fn revoke(server: &Server, token: &str) {
    let response = server
        .http
        .post(format!("{}/oauth/revoke", server.url))
        .bearer_auth(&server.admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A fresh token of the reader for the customer, as the raw JWT and its `jti`.
async fn reader_token(server: &Server, key: &agentauth_core::SigningKey) -> (String, String) {
    let (status, body) = server
        .token("reader", key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims: Value = agentauth_core::parse_access_token(&token)
        .unwrap()
        .peek_claims()
        .unwrap();
    (token, claims["jti"].as_str().unwrap().to_owned())
}

async fn stream_sends_the_backlog_then_new_entries_and_resumes(server: Server) {
    let key = server.register("reader", &["read:customer"]).await;
    server.register("customer", &[]).await;
    let (first, first_jti) = reader_token(&server, &key).await;
    let (second, second_jti) = reader_token(&server, &key).await;
    revoke(&server, &first).await;
    revoke(&server, &second).await;

    // The backlog, oldest first, one event per entry.
    let mut stream = Stream::open(&server, None, "").await;
    let backlog = stream.take(2).await;
    assert_eq!(
        backlog.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["1", "2"]
    );
    for (event, jti) in backlog.iter().zip([&first_jti, &second_jti]) {
        assert_eq!(event.event, "revocation");
        assert_eq!(event.data["seq"].to_string(), event.id);
        assert_eq!(event.data["kind"], "token");
        assert_eq!(event.data["subject"], jti.as_str());
        assert_eq!(event.data["action"], "revoke");
        assert!(event.data["created_at"].is_i64());
        assert!(event.data["expires_at"].is_i64());
    }
    // Nothing more until something is revoked; then it comes at once.
    assert!(stream.next(Duration::from_millis(300)).await.is_none());
    let (third, third_jti) = reader_token(&server, &key).await;
    let revoked_at = Instant::now();
    revoke(&server, &third).await;
    let event = stream.next(Duration::from_secs(1)).await.expect("pushed");
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (event.id.as_str(), &event.data["subject"]),
        ("3", &json!(third_jti))
    );
    let (status, _) = server
        .admin_json(
            Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let event = stream.next(Duration::from_secs(1)).await.expect("pushed");
    assert_eq!(event.id, "4");
    assert_eq!(event.data["kind"], "agent");
    assert_eq!(event.data["subject"], id("reader"));
    assert_eq!(event.data["action"], "revoke");
    drop(stream);

    // After a disconnect, Last-Event-ID resumes right after the last event seen.
    let mut resumed = Stream::open(&server, Some("2"), "").await;
    let ids: Vec<String> = resumed.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["3", "4"]);
    assert!(resumed.next(Duration::from_millis(300)).await.is_none());
    // `?since=` does the same for clients that cannot set the header; the header wins.
    let mut since = Stream::open(&server, None, "?since=3").await;
    assert_eq!(since.take(1).await[0].id, "4");
    let mut both = Stream::open(&server, Some("1"), "?since=3").await;
    assert_eq!(both.take(1).await[0].id, "2");

    for bad in ["x", "-1", "1.5"] {
        let response = server
            .http
            .get(format!("{}/v1/revocations/stream", server.url))
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_stream_sends_the_backlog_then_new_entries_and_resumes_after_last_event_id() {
    stream_sends_the_backlog_then_new_entries_and_resumes(Server::start().await).await;
}

#[tokio::test]
async fn the_stream_works_the_same_on_postgresql() {
    let Some(server) = Server::start_postgres().await else {
        return;
    };
    stream_sends_the_backlog_then_new_entries_and_resumes(server).await;
}

#[tokio::test]
async fn a_stopping_authority_ends_its_streams_instead_of_waiting_for_them() {
    let mut server = Server::start().await;
    let mut stream = Stream::open(&server, None, "").await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(true));
    assert!(stream.next(Duration::from_secs(2)).await.is_none());
}

/// An authority, a verifier for `customer` that polls only every minute,
/// and the reader with a token for the customer.
struct Scene {
    server: Server,
    verifier: Verifier,
    reader: Client,
    token: AccessToken,
    customer_url: String,
}

impl Scene {
    async fn start(feed_grace: Duration, router: fn(&Verifier) -> Router) -> Self {
        let server = Server::start().await;
        server.register("customer", &[]).await;
        let reader_key = server.register("reader", &["read:customer"]).await;
        let mut config =
            VerifierConfig::new(&server.url, SpiffeId::parse(&id("customer")).unwrap());
        config.revocation_poll = Duration::from_secs(60);
        config.feed_grace = feed_grace;
        let verifier = Verifier::connect(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let customer_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, router(&verifier)).into_future());
        let reader = server.client("reader", &reader_key);
        let token = reader
            .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
            .await
            .unwrap();
        Self {
            server,
            verifier,
            reader,
            token,
            customer_url,
        }
    }

    /// A signed GET of `path` with the reader's token: status and JSON body.
    async fn get(&self, path: &str, token: &AccessToken) -> (StatusCode, Value) {
        let request = self.server.http.get(format!("{}{path}", self.customer_url));
        let response = self.reader.send(request, token).await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn a_verifier_refuses_a_revoked_token_within_a_second_without_polling() {
    let scene = Scene::start(Duration::from_secs(10), open_and_closed).await;
    // The stream is open once the verifier has connected; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let token = scene
            .reader
            .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
            .await
            .unwrap();
        assert_eq!(scene.get("/open", &token).await.0, StatusCode::OK);
        let seq = scene.verifier.last_applied_seq();
        revoke(&scene.server, &token.token).await;
        let revoked = Instant::now();
        let refused = loop {
            let (status, body) = scene.get("/open", &token).await;
            if status == StatusCode::UNAUTHORIZED {
                break body;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "still served {:?} after the revocation (poll interval 60 s)",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(refused["check"], "revocation", "{refused}");
        assert_eq!(refused["error_description"], "the token has been revoked");
        assert_eq!(scene.verifier.last_applied_seq(), seq + 1);
    }
    // The reader's other token is untouched.
    assert_eq!(scene.get("/open", &scene.token).await.0, StatusCode::OK);
    scene.server.stop().await;
}

/// The same read served twice: failing open (default) and failing closed.
fn open_and_closed(verifier: &Verifier) -> Router {
    async fn ok() -> &'static str {
        "{}"
    }
    Router::new()
        .route("/open", get(ok).layer(verifier.require("read:customer")))
        .route(
            "/closed",
            get(ok).layer(verifier.require_fresh("read:customer")),
        )
}

/// `agentauth serve` again on the same data dir and address.
fn restart(server: &Server) -> Child {
    let listen = server.url.trim_start_matches("http://");
    command()
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(&server.data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn while_the_feed_is_down_fail_closed_routes_refuse_and_fail_open_routes_serve() {
    let mut scene = Scene::start(Duration::from_secs(1), open_and_closed).await;
    let token = scene.token.clone();
    assert_eq!(scene.get("/open", &token).await.0, StatusCode::OK);
    assert_eq!(scene.get("/closed", &token).await.0, StatusCode::OK);
    // Longer than the grace with the stream open and no poll: still fresh.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(scene.verifier.revocation_feed_fresh());
    assert_eq!(scene.get("/closed", &token).await.0, StatusCode::OK);

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &scene.server.pid().to_string()])
        .status();
    assert_eq!(scene.server.wait_exit(Duration::from_secs(10)), Some(true));
    let stopped = Instant::now();
    // Within the grace (counted from the stream's end), both routes still serve.
    let (status, _) = scene.get("/closed", &token).await;
    if stopped.elapsed() < Duration::from_millis(500) {
        assert_eq!(status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!scene.verifier.revocation_feed_fresh());
    let response = scene
        .reader
        .send(
            scene
                .server
                .http
                .get(format!("{}/closed", scene.customer_url)),
            &token,
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("www-authenticate").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["check"], "revocation_feed", "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert_eq!(scene.get("/open", &token).await.0, StatusCode::OK);
    // A token the verifier has never seen revoked is still checked in full.
    let (status, body) = scene
        .get(
            "/closed",
            &AccessToken {
                token: "garbage".into(),
                ..token.clone()
            },
        )
        .await;
    assert_eq!(
        (status, &body["check"]),
        (StatusCode::UNAUTHORIZED, &json!("signature"))
    );

    // The authority comes back: the verifier reconnects and the route serves again.
    let mut again = restart(&scene.server);
    let back = Instant::now();
    loop {
        if scene.get("/closed", &token).await.0 == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "the fail-closed route did not recover after the authority restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(scene.verifier.revocation_feed_fresh());
    let _ = again.kill();
    let _ = again.wait();
    scene.server.stop().await;
}

#[tokio::test]
async fn while_the_authority_is_down_audit_records_wait_in_a_bounded_buffer_and_arrive_after() {
    let mut server = Server::start().await;
    let customer_key = server.register("customer", &["audit:write"]).await;
    let reader_key = server.register("reader", &["read:customer"]).await;
    let mut config = VerifierConfig::new(&server.url, spiffe("customer"));
    config.audit_buffer = 5;
    config.feed_grace = Duration::from_secs(1);
    let verifier = Verifier::connect(config)
        .await
        .unwrap()
        .with_audit(server.client("customer", &customer_key));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let customer_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, open_and_closed(&verifier)).into_future());
    let reader = server.client("reader", &reader_key);
    let token = reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    let http = server.http.clone();
    let get = |path: &'static str| {
        let request = http.get(format!("{customer_url}{path}"));
        let (reader, token) = (&reader, &token);
        async move { reader.send(request, token).await.unwrap().status() }
    };
    assert_eq!(get("/open").await, StatusCode::OK);
    verifier.flush_audit().await;
    assert_eq!(verifier.audit_stats().delivered, 1);

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(true));
    // Keys and the revocation list are cached: the fail-open route serves.
    for _ in 0..8 {
        assert_eq!(get("/open").await, StatusCode::OK);
    }
    verifier.flush_audit().await;
    let stats = verifier.audit_stats();
    assert_eq!(
        (stats.buffered, stats.dropped, stats.delivered),
        (5, 3, 1),
        "five held for later, three beyond the bound dropped"
    );
    // Past the feed's grace, the fail-closed route refuses (and that
    // decision is dropped too: the buffer is full).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get("/closed").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(verifier.audit_stats().dropped, 4);

    let mut again = restart(&server);
    let back = Instant::now();
    while verifier.audit_stats().buffered > 0 {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the buffered audit records were not delivered after the authority came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        verifier.flush_audit().await;
    }
    assert_eq!(verifier.audit_stats().delivered, 6);
    let records = server.audit_records("?agent=customer&limit=1000").await;
    let allowed = records
        .iter()
        .filter(|r| r["kind"] == "request.allowed" && r["reported"] == true)
        .count();
    assert_eq!(allowed, 6, "{records:#?}");
    let dropped: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "audit.dropped")
        .collect();
    assert_eq!(dropped.len(), 1, "{records:#?}");
    assert!(
        dropped[0]["reason"].as_str().unwrap().contains('4'),
        "{}",
        dropped[0]
    );
    let _ = again.kill();
    let _ = again.wait();
    server.stop().await;
}
