//! The Node libraries: openid-client, jose and dpop.

use agentauth_core::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::id;
use crate::toolchain::{Lang, run};
use crate::{Scene, ok};

#[tokio::test]
async fn openid_client_discovers_the_metadata() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_p256();
    scene.register("reader", &["read:customer"], &key).await;
    let input = scene.input("reader", &key);
    let Some(answer) = run(Lang::Node, "openid_client_discovers_the_metadata", input).await else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["issuer"], scene.server.url);
    assert_eq!(
        answer["token_endpoint"],
        format!("{}/oauth/token", scene.server.url)
    );
}

#[tokio::test]
async fn openid_client_es256_client_assertion_gets_a_token() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_p256();
    scene.register("reader", &["read:customer"], &key).await;
    let input = scene.input("reader", &key);
    let Some(answer) = run(
        Lang::Node,
        "openid_client_private_key_jwt_gets_a_token",
        input,
    )
    .await
    else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["token_type"], "bearer");
    assert_eq!(answer["sent"]["assertion_algs"], json!(["ES256"]));
}

/// openid-client gets a DPoP-bound token with a client key and a DPoP key
/// made by `generate` and calls the layer with it; its answer, once the
/// binding and the call are checked, or `None` when the run was skipped.
async fn openid_client_dpop_call(generate: fn() -> SigningKey) -> Option<serde_json::Value> {
    let scene = Scene::start().await;
    let key = generate();
    scene.register("reader", &["read:customer"], &key).await;
    let mut input = scene.input("reader", &key);
    let dpop_key = generate();
    input["dpop_jwk"] = dpop_key.to_private_jwk();
    let answer = run(
        Lang::Node,
        "openid_client_dpop_token_calls_the_layer",
        input,
    )
    .await?;
    let answer = ok(answer);
    assert_eq!(answer["token_type"], "dpop");
    assert_eq!(
        answer["token_cnf"]["jkt"],
        dpop_key.public_jwk().thumbprint().0
    );
    assert_eq!(answer["status"], 200, "{answer:#}");
    assert_eq!(answer["body"]["served_to"], id("reader"));
    Some(answer)
}

#[tokio::test]
async fn openid_client_es256_dpop_token_calls_the_layer() {
    openid_client_dpop_call(SigningKey::generate_p256).await;
}

#[tokio::test]
async fn openid_client_with_an_ed25519_key_gets_a_token_and_a_dpop_bound_call_through() {
    let Some(answer) = openid_client_dpop_call(SigningKey::generate_ed25519).await else {
        return;
    };
    // openid-client 6 names Ed25519 keys' signatures with RFC 9864's `Ed25519`.
    assert_eq!(answer["sent"]["assertion_algs"], json!(["Ed25519"]));
    assert_eq!(answer["sent"]["dpop_algs"], json!(["Ed25519", "Ed25519"]));
}

#[tokio::test]
async fn a_dpop_library_ed25519_proof_passes_the_layer() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_ed25519();
    scene.register("reader", &["read:customer"], &key).await;
    let mut input = scene.input("reader", &key);
    input["dpop_jwk"] = SigningKey::generate_ed25519().to_private_jwk();
    let Some(answer) = run(Lang::Node, "dpop_library_proof_calls_the_layer", input).await else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["proof_alg"], "Ed25519");
    assert_eq!(answer["status"], 200, "{answer:#}");
    assert_eq!(answer["body"]["served_to"], id("reader"));
}

#[tokio::test]
async fn openid_client_exchanges_a_token() {
    let scene = Scene::start().await;
    let planner = SigningKey::generate_ed25519();
    let executor = SigningKey::generate_p256();
    scene
        .register("planner", &["read:customer"], &planner)
        .await;
    scene
        .register("executor", &["read:customer"], &executor)
        .await;
    for (from, to) in [("planner", "executor"), ("executor", "customer")] {
        let grant = json!({"to": to, "permissions": ["read:customer"]});
        let path = format!("/v1/agents/{from}/delegations");
        let (status, body) = scene
            .server
            .admin_json(Method::POST, &path, Some(grant))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = scene
        .server
        .token("planner", &planner, &id("executor"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut input = scene.input("executor", &executor);
    input["subject_token"] = body["access_token"].clone();
    let Some(answer) = run(Lang::Node, "openid_client_exchanges_a_token", input).await else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(answer["claims"]["sub"], id("planner"));
    assert_eq!(answer["claims"]["act"]["sub"], id("executor"));
    assert_eq!(answer["claims"]["aud"], id("customer"));
}

#[tokio::test]
async fn openid_client_introspects_a_token_addressed_to_it() {
    let scene = Scene::start().await;
    let reader = SigningKey::generate_ed25519();
    let billing = SigningKey::generate_p256();
    scene.register("reader", &["read:billing"], &reader).await;
    scene.register("billing", &[], &billing).await;
    let (status, body) = scene
        .server
        .token("reader", &reader, &id("billing"), "read:billing")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut input = scene.input("billing", &billing);
    input["token"] = body["access_token"].clone();
    let Some(answer) = run(Lang::Node, "openid_client_introspects_a_token", input).await else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], id("reader"));
    assert_eq!(answer["aud"], id("billing"));
}

#[tokio::test]
async fn openid_client_revokes_its_token() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_p256();
    scene.register("reader", &["read:customer"], &key).await;
    let token = scene.token("reader", &key).await;
    assert_eq!(scene.server.introspect(&token).await["active"], true);
    let mut input = scene.input("reader", &key);
    input["token"] = token.clone().into();
    let Some(answer) = run(Lang::Node, "openid_client_revokes_a_token", input).await else {
        return;
    };
    ok(answer);
    assert_eq!(scene.server.introspect(&token).await["active"], false);
}

#[tokio::test]
async fn openid_client_reads_the_error_description_of_a_refused_client() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_ed25519();
    scene.register("reader", &["read:customer"], &key).await;
    // Another key than the registered one: client authentication fails.
    let input = scene.input("reader", &SigningKey::generate_ed25519());
    let Some(answer) = run(Lang::Node, "openid_client_reads_a_refusal", input).await else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["refused"], true);
    // Not an opaque WWWAuthenticateChallengeError: the OAuth error and its description.
    assert_eq!(answer["kind"], "ResponseBodyError", "{answer:#}");
    assert_eq!(answer["error"], "invalid_client");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("signature verification failed"),
        "{answer:#}"
    );
}

#[tokio::test]
async fn jose_verifies_our_tokens_on_our_jwks() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_ed25519();
    scene.register("reader", &["read:customer"], &key).await;
    let mut input = scene.input("reader", &key);
    input["token"] = scene.token("reader", &key).await.into();
    let Some(answer) = run(Lang::Node, "jose_verifies_a_token_on_the_jwks", input).await else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["sub"], id("reader"));
    assert_eq!(answer["alg"], "EdDSA");
}
