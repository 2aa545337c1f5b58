//! DPoP (RFC 9449) as the alternative proof of possession, and the registry's
//! bearer opt-out, against the real binary and the example customer agent.

use agentauth_core::{SigningKey, SpiffeId, b64url_decode, create_dpop_proof, unix_now};
use agentauth_sdk::{AccessToken, Client, Verifier, VerifierConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, id, scope, spiffe};

use crate::customer_agent;

struct Scene {
    server: Server,
    customer_url: String,
    reader_key: SigningKey,
    reader: Client,
    _verifier: Verifier,
}

impl Scene {
    async fn start(reader_bearer_allowed: bool) -> Self {
        let server = Server::start().await;
        server.register("customer", &[]).await;
        let reader_key = SigningKey::generate_ed25519();
        let body = json!({"name": "reader", "permissions": ["read:customer"], "public_jwk": reader_key.public_jwk().to_json(), "bearer_allowed": reader_bearer_allowed});
        assert_eq!(
            server
                .admin_json(Method::POST, "/v1/agents", Some(body))
                .await
                .0,
            StatusCode::CREATED
        );
        let verifier = Verifier::connect(VerifierConfig::new(
            &server.url,
            SpiffeId::parse(&id("customer")).unwrap(),
        ))
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let customer_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, customer_agent::router(&verifier)).into_future());
        let reader = server.client("reader", &reader_key);
        Self {
            server,
            customer_url,
            reader_key,
            reader,
            _verifier: verifier,
        }
    }

    fn url(&self) -> String {
        format!("{}/api/customer/42", self.customer_url)
    }

    async fn dpop_token(&self) -> AccessToken {
        let client = self.server.client("reader", &self.reader_key).with_dpop();
        client
            .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
            .await
            .unwrap()
    }

    async fn get(&self, authorization: &str, proofs: &[String]) -> (StatusCode, Value) {
        let mut request = self
            .server
            .http
            .get(self.url())
            .header("authorization", authorization);
        for proof in proofs {
            request = request.header("dpop", proof);
        }
        let response = request.send().await.unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn a_dpop_client_gets_a_dpop_bound_token_and_calls_with_proofs() {
    let scene = Scene::start(false).await;
    let metadata: Value = scene
        .server
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            scene.server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["EdDSA", "Ed25519", "ES256"])
    );

    let client = scene.server.client("reader", &scene.reader_key).with_dpop();
    let token = client
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    assert_eq!(
        claims(&token.token)["cnf"]["jkt"],
        scene.reader_key.public_jwk().thumbprint().0
    );
    for _ in 0..2 {
        let response = client
            .send(client.http().get(scene.url()), &token)
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "each call carries a fresh proof"
        );
    }
    let (_, audit) = scene
        .server
        .admin_json(Method::GET, "/v1/audit?kind=token.issued", None)
        .await;
    assert!(
        audit["records"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("DPoP"),
        "{audit}"
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_and_replayed_dpop_proofs() {
    let scene = Scene::start(false).await;
    let token_endpoint = format!("{}/oauth/token", scene.server.url);
    let form = |assertion: String| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            (
                "client_assertion_type".to_owned(),
                agentauth_core::CLIENT_ASSERTION_TYPE.to_owned(),
            ),
            ("client_assertion".to_owned(), assertion),
            ("resource".to_owned(), id("customer")),
            ("scope".to_owned(), "read:customer".to_owned()),
        ]
    };
    let post = |proofs: Vec<String>, assertion: String| {
        let mut request = scene
            .server
            .http
            .post(&token_endpoint)
            .form(&form(assertion));
        for p in proofs {
            request = request.header("dpop", p);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let good = create_dpop_proof(&scene.reader_key, "POST", &token_endpoint, None, unix_now());
    let (status, body) = post(
        vec![good.clone()],
        scene.server.assertion("reader", &scene.reader_key),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");

    let cases = [
        (vec![good], "already used"),
        (
            vec![create_dpop_proof(
                &scene.reader_key,
                "POST",
                "http://elsewhere/oauth/token",
                None,
                unix_now(),
            )],
            "URI",
        ),
        (
            vec![create_dpop_proof(
                &scene.reader_key,
                "GET",
                &token_endpoint,
                None,
                unix_now(),
            )],
            "method",
        ),
        (
            vec![create_dpop_proof(
                &scene.reader_key,
                "POST",
                &token_endpoint,
                None,
                unix_now() - 3600,
            )],
            "",
        ),
        (
            vec![
                create_dpop_proof(&scene.reader_key, "POST", &token_endpoint, None, unix_now()),
                create_dpop_proof(&scene.reader_key, "POST", &token_endpoint, None, unix_now()),
            ],
            "exactly one",
        ),
        (vec!["not-a-proof".to_owned()], ""),
    ];
    for (proofs, mentions) in cases {
        let (status, body) =
            post(proofs, scene.server.assertion("reader", &scene.reader_key)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "{body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(mentions),
            "{body} should mention {mentions}"
        );
    }
}

#[tokio::test]
async fn the_layer_checks_dpop_proofs_and_refuses_downgrade_to_bearer() {
    let scene = Scene::start(false).await;
    let token = scene.dpop_token().await;
    let t = &token.token;
    let proof = |key: &SigningKey, method: &str, uri: &str, for_token: &str| {
        create_dpop_proof(key, method, uri, Some(for_token), unix_now())
    };
    let url = scene.url();

    let good = proof(&scene.reader_key, "GET", &url, t);
    assert_eq!(
        scene
            .get(&format!("DPoP {t}"), std::slice::from_ref(&good))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = scene.get(&format!("DPoP {t}"), &[good]).await;
    assert_eq!(
        (status, body["check"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replay"))
    );

    let downgrade = scene.get(&format!("Bearer {t}"), &[]).await;
    assert_eq!(
        (downgrade.0, downgrade.1["check"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("proof")),
        "a DPoP-bound token sent as plain Bearer"
    );
    let thief = SigningKey::generate_ed25519();
    let other_token = scene.dpop_token().await.token;
    let cases = [
        (vec![], "needs a DPoP proof"),
        (vec![proof(&scene.reader_key, "POST", &url, t)], "method"),
        (
            vec![proof(
                &scene.reader_key,
                "GET",
                &format!("{}/api/customer/43", scene.customer_url),
                t,
            )],
            "URI",
        ),
        (
            vec![proof(&scene.reader_key, "GET", &url, &other_token)],
            "ath",
        ),
        (
            vec![proof(&thief, "GET", &url, t)],
            "not made with the key bound",
        ),
    ];
    for (proofs, mentions) in cases {
        let (status, body) = scene.get(&format!("DPoP {t}"), &proofs).await;
        assert_eq!(
            (status, body["check"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("proof")),
            "{body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(mentions),
            "{body} should mention {mentions}"
        );
    }
}

#[tokio::test]
async fn only_an_agent_the_registry_allows_gets_a_bearer_token() {
    let bound = Scene::start(false).await;
    let token = bound
        .reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    assert!(claims(&token.token).get("cnf").is_some());

    let opted_out = Scene::start(true).await;
    let (_, view) = opted_out
        .server
        .admin_json(Method::GET, "/v1/agents/reader", None)
        .await;
    assert_eq!(view["bearer_allowed"], true);
    let token = opted_out
        .reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    assert!(claims(&token.token).get("cnf").is_none());
    assert_eq!(
        opted_out
            .get(&format!("Bearer {}", token.token), &[])
            .await
            .0,
        StatusCode::OK,
        "no proof needed"
    );
    let (_, audit) = opted_out
        .server
        .admin_json(Method::GET, "/v1/audit?kind=token.issued", None)
        .await;
    assert!(
        audit["records"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("without key binding"),
        "{audit}"
    );

    // Turning the opt-out off binds the next token again.
    let (status, _) = opted_out
        .server
        .admin_json(
            Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"bearer_allowed": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = opted_out
        .reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    assert!(claims(&token.token).get("cnf").is_some());
}

#[tokio::test]
async fn revoking_the_agent_key_stops_a_dpop_token_it_authenticated_for_another_key() {
    let scene = Scene::start(false).await;
    let dpop_key = SigningKey::generate_ed25519();
    let endpoint = format!("{}/oauth/token", scene.server.url);
    let assertion = scene.server.assertion("reader", &scene.reader_key);
    let customer = id("customer");
    let response = scene
        .server
        .http
        .post(&endpoint)
        .header(
            "dpop",
            create_dpop_proof(&dpop_key, "POST", &endpoint, None, unix_now()),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                agentauth_core::CLIENT_ASSERTION_TYPE,
            ),
            ("client_assertion", &assertion),
            ("resource", &customer),
            ("scope", "read:customer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims(&token)["cnf"]["jkt"],
        dpop_key.public_jwk().thumbprint().0,
        "bound to the proof's key, not the agent's"
    );
    let call = || create_dpop_proof(&dpop_key, "GET", &scene.url(), Some(&token), unix_now());
    let (status, body) = scene.get(&format!("DPoP {token}"), &[call()]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let agent_key = scene.reader_key.public_jwk().thumbprint().0;
    let (status, body) = scene
        .server
        .admin_json(
            Method::POST,
            "/v1/revocations",
            Some(json!({"kind": "key", "value": agent_key})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(scene.server.introspect(&token).await["active"], false);
    let jti = claims(&token)["jti"].clone();
    assert!(
        scene
            .server
            .feed()
            .await
            .iter()
            .any(|e| e["kind"] == "token" && e["subject"] == jti),
        "the token is revoked on the feed"
    );
    let mut status = StatusCode::OK;
    for _ in 0..50 {
        (status, _) = scene.get(&format!("DPoP {token}"), &[call()]).await;
        if status != StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the verifier refuses it");
}
