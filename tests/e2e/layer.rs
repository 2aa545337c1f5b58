//! The SDK's verifying layer in front of the example customer agent, against
//! the real authority binary: every check, its answer and its audit record.

use std::time::{Duration, Instant};

use agentauth_core::{SigningKey, SpiffeId, b64url_encode};
use agentauth_sdk::{Client, Verifier, VerifierConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, id, scope, spiffe};

use crate::customer_agent;

/// An authority, the customer agent behind the layer, and the reader's client.
struct Scene {
    server: Server,
    customer_url: String,
    verifier: Verifier,
    reader_key: SigningKey,
    reader: Client,
}

impl Scene {
    async fn start(leeway_secs: i64) -> Self {
        Self::start_with_args(leeway_secs, &[]).await
    }

    /// Like [`Scene::start`], with extra `serve` flags.
    async fn start_with_args(leeway_secs: i64, args: &[&str]) -> Self {
        let server = Server::start_with(args, &[]).await;
        let customer_key = server.register("customer", &[]).await;
        let reader_key = server.register("reader", &["read:customer"]).await;
        server.register("orders", &[]).await;
        let mut config =
            VerifierConfig::new(&server.url, SpiffeId::parse(&id("customer")).unwrap());
        config.leeway_secs = leeway_secs;
        config.revocation_poll = Duration::from_millis(200);
        let verifier = Verifier::connect(config)
            .await
            .unwrap()
            .with_audit(server.client("customer", &customer_key));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let customer_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, customer_agent::router(&verifier)).into_future());
        let reader = server.client("reader", &reader_key);
        Self {
            server,
            customer_url,
            verifier,
            reader_key,
            reader,
        }
    }

    /// GET customer 42 with `token`, signed by the reader's key as the SDK does.
    async fn get_with(&self, token: Option<&str>) -> (StatusCode, String, Value) {
        let url = format!("{}/api/customer/42", self.customer_url);
        let mut request = self.server.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut request = request.build().unwrap();
        if token.is_some() {
            self.reader.sign(&mut request).unwrap();
        }
        answer(self.server.http.execute(request).await.unwrap()).await
    }

    async fn token(&self, audience: &str, scope: &str) -> String {
        self.reader
            .fetch_token(&spiffe(audience), &self::scope(scope), None)
            .await
            .unwrap()
            .token
    }

    /// Polls until the reader's `token` is refused, for at most `within`.
    async fn refused_within(&self, token: &str, within: Duration) -> Option<(Duration, Value)> {
        let started = Instant::now();
        while started.elapsed() < within {
            let (status, _, body) = self.get_with(Some(token)).await;
            if status == StatusCode::UNAUTHORIZED {
                return Some((started.elapsed(), body));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

fn assert_denied(result: (StatusCode, String, Value), status: StatusCode, check: &str) -> Value {
    let (got, challenge, body) = result;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["check"], check, "{body}");
    assert!(
        challenge.starts_with("Bearer realm=\"agentauth\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("error=\"{}\"", body["error"].as_str().unwrap())),
        "{challenge}"
    );
    assert!(!body["error_description"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn a_permitted_read_reaches_the_handler_with_the_verified_identity() {
    let scene = Scene::start(30).await;
    let customer = SpiffeId::parse(&id("customer")).unwrap();
    let request = scene
        .reader
        .http()
        .get(format!("{}/api/customer/42", scene.customer_url));
    let response = scene
        .reader
        .call(request, &customer, &scope("read:customer"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 42);
    assert_eq!(body["served_to"], id("reader"));

    // A second call reuses the cached token: the authority issued only one.
    let request = scene
        .reader
        .http()
        .get(format!("{}/api/customer/7", scene.customer_url));
    assert_eq!(
        scene
            .reader
            .call(request, &customer, &scope("read:customer"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let (_, audit) = scene
        .server
        .admin_json(Method::GET, "/v1/audit?kind=token.issued", None)
        .await;
    let issued_to_customer = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["audience"] == id("customer"))
        .count();
    assert_eq!(issued_to_customer, 1);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_at_the_right_check() {
    let scene = Scene::start(30).await;
    assert_denied(
        scene.get_with(None).await,
        StatusCode::UNAUTHORIZED,
        "token_present",
    );
    assert_denied(
        scene.get_with(Some("abc")).await,
        StatusCode::UNAUTHORIZED,
        "signature",
    );

    let good = scene.token("customer", "read:customer").await;
    let parts: Vec<&str> = good.split('.').collect();
    for alg in ["none", "HS256", "RS256"] {
        let header = b64url_encode(json!({"alg": alg, "typ": "at+jwt", "kid": "x"}).to_string());
        let forged = format!("{header}.{}.{}", parts[1], parts[2]);
        let body = assert_denied(
            scene.get_with(Some(&forged)).await,
            StatusCode::UNAUTHORIZED,
            "signature",
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("not allowed"),
            "{body}"
        );
    }
    let untyped = b64url_encode(json!({"alg": "EdDSA", "typ": "JWT"}).to_string());
    let forged = format!("{untyped}.{}.{}", parts[1], parts[2]);
    assert_denied(
        scene.get_with(Some(&forged)).await,
        StatusCode::UNAUTHORIZED,
        "signature",
    );

    // Claims changed after signing (scope widened): the signature no longer holds.
    let mut claims: Value =
        serde_json::from_slice(&agentauth_core::b64url_decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!("read:customer write:customer");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(claims.to_string()),
        parts[2]
    );
    let body = assert_denied(
        scene.get_with(Some(&tampered)).await,
        StatusCode::UNAUTHORIZED,
        "signature",
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );

    let for_orders = scene.token("orders", "read:customer").await;
    assert_denied(
        scene.get_with(Some(&for_orders)).await,
        StatusCode::UNAUTHORIZED,
        "audience",
    );
}

#[tokio::test]
async fn a_token_from_another_authority_is_refused() {
    let scene = Scene::start(30).await;
    let rogue = Server::start().await;
    let key = rogue.register("reader", &["read:customer"]).await;
    rogue.register("customer", &[]).await;
    let (_, body) = rogue
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    let foreign = body["access_token"].as_str().unwrap();
    let body = assert_denied(
        scene.get_with(Some(foreign)).await,
        StatusCode::UNAUTHORIZED,
        "signature",
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("unknown key"),
        "{body}"
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let scene = Scene::start(0).await;
    let short = scene
        .reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), Some(1))
        .await
        .unwrap();
    assert_eq!(scene.get_with(Some(&short.token)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_denied(
        scene.get_with(Some(&short.token)).await,
        StatusCode::UNAUTHORIZED,
        "time",
    );
}

#[tokio::test]
async fn a_missing_permission_is_403_insufficient_scope_naming_the_scope() {
    let scene = Scene::start(30).await;
    let token = scene
        .reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    let post = scene
        .server
        .http
        .post(format!("{}/api/customer", scene.customer_url))
        .json(&json!({"name": "Eve"}));
    let response = scene.reader.send(post, &token).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"write:customer\""),
        "{challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["check"], "permission");
}

#[tokio::test]
async fn a_revoked_token_stops_working_within_the_poll_interval() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    assert_eq!(scene.get_with(Some(&token)).await.0, StatusCode::OK);
    let (status, _) = scene
        .server
        .form_as(
            "reader",
            &scene.reader_key,
            "/oauth/revoke",
            &[("token", token.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (after, body) = scene
        .refused_within(&token, Duration::from_secs(5))
        .await
        .expect("refused within 5 s");
    assert_eq!(body["check"], "revocation");
    assert!(after < Duration::from_secs(5));
    // Other tokens of the same agent still work.
    let fresh = scene.token("customer", "read:customer").await;
    assert_eq!(scene.get_with(Some(&fresh)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn disabling_an_agent_stops_its_tokens_and_enabling_restores_them() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    let patch = |status: &'static str| {
        scene.server.admin_json(
            Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"status": status})),
        )
    };
    assert_eq!(patch("disabled").await.0, StatusCode::OK);
    let (_, body) = scene
        .refused_within(&token, Duration::from_secs(5))
        .await
        .expect("refused within 5 s");
    assert_eq!(body["check"], "revocation");
    assert_eq!(patch("active").await.0, StatusCode::OK);
    scene.verifier.refresh_revocations().await.unwrap();
    assert_eq!(scene.get_with(Some(&token)).await.0, StatusCode::OK);

    let (status, _) = scene
        .server
        .admin_json(Method::DELETE, "/v1/agents/reader", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = scene
        .refused_within(&token, Duration::from_secs(5))
        .await
        .expect("refused within 5 s");
    assert_eq!(body["check"], "revocation");

    // The name registered again, with a new key: the new agent works, the old token stays dead.
    let new_key = scene.server.register("reader", &["read:customer"]).await;
    let new_reader = scene.server.client("reader", &new_key);
    let fresh = new_reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    scene.verifier.refresh_revocations().await.unwrap();
    let get = scene
        .server
        .http
        .get(format!("{}/api/customer/42", scene.customer_url));
    assert_eq!(
        new_reader.send(get, &fresh).await.unwrap().status(),
        StatusCode::OK
    );
    // Signed with the old key, the new agent's token is refused: it is bound to the new key.
    assert_eq!(scene.get_with(Some(&fresh.token)).await.2["check"], "proof");
    let (status, _, body) = scene.get_with(Some(&token)).await;
    assert_eq!(
        (status, body["check"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revocation"))
    );
    assert_eq!(
        scene.server.introspect(&token).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn every_decision_of_the_layer_reaches_the_audit_log() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    assert_eq!(scene.get_with(Some(&token)).await.0, StatusCode::OK);
    assert_eq!(scene.get_with(None).await.0, StatusCode::UNAUTHORIZED);
    let for_orders = scene.token("orders", "read:customer").await;
    assert_eq!(
        scene.get_with(Some(&for_orders)).await.0,
        StatusCode::UNAUTHORIZED
    );
    scene.verifier.flush_audit().await;

    let (_, allowed) = scene
        .server
        .admin_json(Method::GET, "/v1/audit?kind=request.allowed", None)
        .await;
    let allowed = allowed["records"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(
        allowed[0]["actor"],
        id("customer"),
        "the reporting agent is the actor"
    );
    assert_eq!(allowed[0]["subject"], id("reader"));
    assert_eq!(allowed[0]["scope"], "read:customer");
    assert_eq!(allowed[0]["decision"], "allow");

    let (_, denied) = scene
        .server
        .admin_json(Method::GET, "/v1/audit?kind=request.denied", None)
        .await;
    let reasons: Vec<&str> = denied["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("token_present:"), "{reasons:?}");
    assert!(reasons[1].starts_with("audience:"), "{reasons:?}");
    assert!(
        denied["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["decision"] == "deny")
    );
}

#[tokio::test]
async fn the_audit_endpoint_refuses_what_an_agent_may_not_report() {
    let scene = Scene::start(30).await;
    let endpoint = format!("{}/v1/audit/events", scene.server.url);
    let no_token = scene
        .server
        .http
        .post(&endpoint)
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);

    let for_customer = scene.token("customer", "read:customer").await;
    let wrong_audience = scene
        .server
        .http
        .post(&endpoint)
        .bearer_auth(&for_customer)
        .json(&json!({"events": []}));
    assert_eq!(
        wrong_audience.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let token = scene
        .reader
        .fetch_token(
            &"spiffe://agentauth.local/authority".parse().unwrap(),
            &scope("audit:write"),
            None,
        )
        .await
        .unwrap();
    let forged_kind = json!({"events": [{"kind": "token.issued", "decision": "allow"}]});
    let unsigned = scene
        .server
        .http
        .post(&endpoint)
        .bearer_auth(&token.token)
        .json(&forged_kind)
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsigned.status(),
        StatusCode::UNAUTHORIZED,
        "a key-bound token needs its signature here too"
    );
    let response = scene
        .reader
        .send(scene.server.http.post(&endpoint).json(&forged_kind), &token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let before = scene.server.snapshot().await.audit_head;
    let report = json!({"events": [{"kind": "request.allowed", "decision": "allow", "subject": "x"}], "dropped": 3});
    let response = scene
        .reader
        .send(scene.server.http.post(&endpoint).json(&report), &token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, audit) = scene
        .server
        .admin_json(Method::GET, &format!("/v1/audit?since={before}"), None)
        .await;
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["actor"], id("reader"));
    assert_eq!(
        records[0]["audience"],
        id("reader"),
        "a reported decision is about a request to the reporter"
    );
    assert_eq!(records[0]["reported"], true, "and is marked as reported");
    assert_eq!(records[1]["kind"], "audit.dropped");
    assert_eq!(records[1]["reported"], true);
    assert!(records[1]["reason"].as_str().unwrap().contains('3'));

    // A decision about a request to another agent is not the reporter's to make.
    let before = scene.server.snapshot().await;
    let framing = json!({"events": [
        {"kind": "request.allowed", "decision": "allow", "subject": "x"},
        {"kind": "request.denied", "decision": "deny", "subject": "x", "audience": id("customer")}
    ]});
    let response = scene
        .reader
        .send(scene.server.http.post(&endpoint).json(&framing), &token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("addressed to itself"),
        "{body}"
    );
    assert_eq!(scene.server.snapshot().await, before, "refused whole");
}

#[tokio::test]
async fn an_agent_reporting_audit_events_is_rate_limited() {
    let scene = Scene::start_with_args(30, &["--audit-events-per-agent", "5"]).await;
    let token = scene
        .reader
        .fetch_token(
            &"spiffe://agentauth.local/authority".parse().unwrap(),
            &scope("audit:write"),
            None,
        )
        .await
        .unwrap();
    let endpoint = format!("{}/v1/audit/events", scene.server.url);
    let batch = |n: usize| {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"kind": "request.allowed", "decision": "allow", "subject": i.to_string()}))
            .collect();
        json!({ "events": events })
    };
    // The burst is twice the rate: ten now, then nothing until it refills.
    let response = scene
        .reader
        .send(scene.server.http.post(&endpoint).json(&batch(10)), &token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let before = scene.server.snapshot().await;
    let response = scene
        .reader
        .send(scene.server.http.post(&endpoint).json(&batch(3)), &token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("audit_events_per_agent"),
        "{body}"
    );
    assert_eq!(scene.server.snapshot().await, before, "nothing written");
}

/// Status, WWW-Authenticate and JSON body of a response.
async fn answer(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        challenge,
        response.json().await.unwrap_or(Value::Null),
    )
}

impl Scene {
    /// A signed request for customer 42 that tests can alter before sending.
    async fn signed_request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Request {
        let token = self.token("customer", "read:customer").await;
        let mut builder = self
            .server
            .http
            .request(method, format!("{}{path}", self.customer_url))
            .bearer_auth(token);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let mut request = builder.build().unwrap();
        self.reader.sign(&mut request).unwrap();
        request
    }

    async fn send(&self, request: reqwest::Request) -> (StatusCode, String, Value) {
        answer(self.server.http.execute(request).await.unwrap()).await
    }
}

#[tokio::test]
async fn a_token_bound_to_a_key_is_refused_without_a_signature() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    let unsigned = scene
        .server
        .http
        .get(format!("{}/api/customer/42", scene.customer_url))
        .bearer_auth(&token);
    let body = assert_denied(
        scene.send(unsigned.build().unwrap()).await,
        StatusCode::UNAUTHORIZED,
        "proof",
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no HTTP message signature tagged \"agentauth\""),
        "{body}"
    );
}

#[tokio::test]
async fn a_stolen_token_signed_with_another_key_is_refused() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    let thief = scene
        .server
        .client("orders", &SigningKey::generate_ed25519());
    let mut request = scene
        .server
        .http
        .get(format!("{}/api/customer/42", scene.customer_url))
        .bearer_auth(&token)
        .build()
        .unwrap();
    thief.sign(&mut request).unwrap();
    let body = assert_denied(scene.send(request).await, StatusCode::UNAUTHORIZED, "proof");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not signed by the key bound"),
        "{body}"
    );
}

#[tokio::test]
async fn a_changed_body_method_or_uri_breaks_the_signature() {
    let scene = Scene::start(30).await;
    // Body swapped, digest left: the digest no longer matches.
    let mut request = scene
        .signed_request(Method::POST, "/api/customer", Some(json!({"name": "Ann"})))
        .await;
    *request.body_mut() = Some(reqwest::Body::from(r#"{"name":"Mallory"}"#));
    let body = assert_denied(scene.send(request).await, StatusCode::UNAUTHORIZED, "proof");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Content-Digest"),
        "{body}"
    );

    // Body and digest both swapped: the signature no longer matches.
    let mut request = scene
        .signed_request(Method::POST, "/api/customer", Some(json!({"name": "Ann"})))
        .await;
    let evil = br#"{"name":"Mallory"}"#;
    request.headers_mut().insert(
        "content-digest",
        agentauth_core::content_digest(evil).parse().unwrap(),
    );
    *request.body_mut() = Some(reqwest::Body::from(evil.to_vec()));
    let body = assert_denied(scene.send(request).await, StatusCode::UNAUTHORIZED, "proof");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("does not verify over this request's signature base"),
        "{body}"
    );

    // Signed for customer 42, sent for customer 43.
    let mut request = scene
        .signed_request(Method::GET, "/api/customer/42", None)
        .await;
    *request.url_mut() = format!("{}/api/customer/43", scene.customer_url)
        .parse()
        .unwrap();
    assert_denied(scene.send(request).await, StatusCode::UNAUTHORIZED, "proof");
}

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let scene = Scene::start(30).await;
    let request = scene
        .signed_request(Method::GET, "/api/customer/42", None)
        .await;
    let replay = request.try_clone().unwrap();
    assert_eq!(scene.send(request).await.0, StatusCode::OK);
    let body = assert_denied(scene.send(replay).await, StatusCode::UNAUTHORIZED, "replay");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
}

/// A request to `url` with `token`, signed by `key` with `created` and
/// `expires` relative to now, whatever lifetime they give the signature.
fn signed_at(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: &[u8],
    key: &SigningKey,
    (created, expires): (i64, i64),
) -> reqwest::Request {
    use agentauth_core::{SignatureParams, SignedComponents, sign_request, unix_now};
    let digest = agentauth_core::content_digest(body);
    let authorization = format!("Bearer {token}");
    let now = unix_now();
    let params = SignatureParams {
        created: now + created,
        expires: now + expires,
        nonce: agentauth_core::signature_nonce(),
        keyid: key.public_jwk().thumbprint().0,
        alg: key.alg(),
    };
    let parts = SignedComponents {
        method: method.as_str(),
        target_uri: url,
        authorization: &authorization,
        content_digest: &digest,
    };
    let signed = sign_request(&parts, &params, key).unwrap();
    http.request(method, url)
        .header("authorization", &authorization)
        .header("content-type", "application/json")
        .header("content-digest", &digest)
        .header("signature-input", signed.signature_input)
        .header("signature", signed.signature)
        .body(body.to_vec())
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_expired_or_future_dated_signature_is_refused() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    let url = format!("{}/api/customer/42", scene.customer_url);
    for (times, mentions) in [((-200, -100), "expired"), ((120, 180), "future")] {
        let request = signed_at(
            &scene.server.http,
            Method::GET,
            &url,
            &token,
            b"",
            &scene.reader_key,
            times,
        );
        let body = assert_denied(scene.send(request).await, StatusCode::UNAUTHORIZED, "proof");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(mentions),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_signature_living_longer_than_the_replay_window_is_refused_by_the_layer() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    let url = format!("{}/api/customer/42", scene.customer_url);
    let sign = |times| {
        signed_at(
            &scene.server.http,
            Method::GET,
            &url,
            &token,
            b"",
            &scene.reader_key,
            times,
        )
    };
    // Expires 10^12 s ahead: replayable for the token's whole life, if accepted.
    let body = assert_denied(
        scene.send(sign((0, 1_000_000_000_000))).await,
        StatusCode::UNAUTHORIZED,
        "proof",
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("longer than the replay window of 60 s"),
        "{body}"
    );
    // One second beyond the default window is already too long.
    assert_denied(
        scene.send(sign((0, 61))).await,
        StatusCode::UNAUTHORIZED,
        "proof",
    );

    // Within the window the request passes once; its replay is refused.
    let request = sign((-20, 40));
    let replay = request.try_clone().unwrap();
    assert_eq!(scene.send(request).await.0, StatusCode::OK);
    let body = assert_denied(scene.send(replay).await, StatusCode::UNAUTHORIZED, "replay");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
}

#[tokio::test]
async fn the_authoritys_own_api_holds_signatures_to_the_replay_window() {
    let scene = Scene::start(30).await;
    let token = scene
        .reader
        .fetch_token(
            &"spiffe://agentauth.local/authority".parse().unwrap(),
            &scope("audit:write"),
            None,
        )
        .await
        .unwrap()
        .token;
    let endpoint = format!("{}/v1/audit/events", scene.server.url);
    let report =
        br#"{"events": [{"kind": "request.allowed", "decision": "allow", "subject": "x"}]}"#;
    let sign = |times| {
        signed_at(
            &scene.server.http,
            Method::POST,
            &endpoint,
            &token,
            report,
            &scene.reader_key,
            times,
        )
    };
    let before = scene.server.snapshot().await;
    let response = scene
        .server
        .http
        .execute(sign((0, 1_000_000_000_000)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("longer than the replay window of 60 s"),
        "{body}"
    );
    assert_eq!(
        scene.server.snapshot().await,
        before,
        "the refusal changed nothing"
    );

    let request = sign((-20, 40));
    let replay = request.try_clone().unwrap();
    let response = scene.server.http.execute(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = scene.server.http.execute(replay).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_any_check() {
    let scene = Scene::start(30).await;
    let big = "x".repeat(agentauth_sdk::MAX_BODY_BYTES + 1);
    let request = scene
        .server
        .http
        .post(format!("{}/api/customer", scene.customer_url))
        .body(big);
    let (status, _, body) = scene.send(request.build().unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["check"], "body_size");
}

#[tokio::test]
async fn revoking_a_key_stops_its_tokens_and_its_agent_authentication() {
    let scene = Scene::start(30).await;
    let token = scene.token("customer", "read:customer").await;
    assert_eq!(scene.get_with(Some(&token)).await.0, StatusCode::OK);
    let jkt = scene.reader_key.public_jwk().thumbprint().0;
    let (status, body) = scene
        .server
        .admin_json(
            Method::POST,
            "/v1/revocations",
            Some(json!({"kind": "key", "value": "not-a-thumbprint"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, _) = scene
        .server
        .admin_json(
            Method::POST,
            "/v1/revocations",
            Some(json!({"kind": "key", "value": jkt})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = scene
        .refused_within(&token, Duration::from_secs(5))
        .await
        .expect("refused within 5 s");
    assert_eq!(body["check"], "revocation");
    // The key's revocation publishes the tokens it authenticated too, and
    // the token's own entry is checked first.
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    let (status, body) = scene
        .server
        .token(
            "reader",
            &scene.reader_key,
            &id("customer"),
            "read:customer",
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    assert_eq!(
        scene.server.introspect(&token).await,
        json!({"active": false})
    );
}
