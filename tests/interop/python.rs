//! The Python libraries: authlib, PyJWT, joserfc and http-message-signatures.

use agentauth_core::SigningKey;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::id;
use crate::toolchain::{Lang, run};
use crate::{Scene, ok};

#[tokio::test]
async fn authlib_metadata_validator_accepts_our_metadata() {
    let scene = Scene::start().await;
    let input = json!({"issuer": scene.server.url});
    let Some(answer) = run(Lang::Python, "authlib_validates_metadata", input).await else {
        return;
    };
    ok(answer);
}

#[tokio::test]
async fn authlib_private_key_jwt_with_its_defaults_gets_a_token() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_p256();
    scene.register("reader", &["read:customer"], &key).await;
    let input = scene.input("reader", &key);
    let Some(answer) = run(Lang::Python, "authlib_private_key_jwt_gets_a_token", input).await
    else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["has_access_token"], true);
    // authlib's documented defaults: an hour-long assertion addressed to the token endpoint.
    assert_eq!(answer["assertion_lifetime"], 3600, "{answer}");
    assert_eq!(
        answer["assertion_aud"],
        format!("{}/oauth/token", scene.server.url)
    );
}

#[tokio::test]
async fn pyjwt_verifies_our_tokens_on_our_jwks() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_ed25519();
    scene.register("reader", &["read:customer"], &key).await;
    let mut input = scene.input("reader", &key);
    input["token"] = scene.token("reader", &key).await.into();
    let Some(answer) = run(Lang::Python, "pyjwt_verifies_a_token_on_the_jwks", input).await else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["sub"], id("reader"));
    assert_eq!(answer["alg"], "EdDSA");
}

#[tokio::test]
async fn joserfc_verifies_our_tokens_on_our_jwks() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_ed25519();
    scene.register("reader", &["read:customer"], &key).await;
    let mut input = scene.input("reader", &key);
    input["token"] = scene.token("reader", &key).await.into();
    let Some(answer) = run(Lang::Python, "joserfc_verifies_a_token_on_the_jwks", input).await
    else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["sub"], id("reader"));
    assert_eq!(answer["typ"], "at+jwt");
}

#[tokio::test]
async fn a_http_message_signatures_request_with_its_own_label_and_order_passes_the_layer() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_ed25519();
    scene.register("reader", &["read:customer"], &key).await;
    let mut input = scene.input("reader", &key);
    input["token"] = scene.token("reader", &key).await.into();
    input["keyid"] = key.public_jwk().thumbprint().0.into();
    let Some(answer) = run(
        Lang::Python,
        "http_message_signatures_request_passes_the_layer",
        input,
    )
    .await
    else {
        return;
    };
    let answer = ok(answer);
    let signature_input = answer["signature_input"].as_str().unwrap();
    // The library's own label and parameter order (created, keyid, alg, …), not ours.
    assert!(signature_input.starts_with("pyhms="), "{signature_input}");
    let at = |p: &str| signature_input.find(p).unwrap();
    assert!(at(";created=") < at(";keyid=") && at(";keyid=") < at(";expires="));
    assert_eq!(answer["status"], 200, "{answer:#}");
    assert_eq!(answer["body"]["served_to"], id("reader"));
}

#[tokio::test]
async fn our_sdk_signatures_verify_in_http_message_signatures() {
    let scene = Scene::start().await;
    let key = SigningKey::generate_ed25519();
    scene.register("reader", &["read:customer"], &key).await;
    let token = scene.token("reader", &key).await;
    let client = scene.server.client("reader", &key);
    let url = format!(
        "{}/api/customer",
        scene.customer_url.trim_end_matches("/42")
    );
    let body = r#"{"name":"Ann"}"#;
    let mut request = client
        .http()
        .request(Method::POST, &url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .build()
        .unwrap();
    client.sign(&mut request).unwrap();
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().into()))
        .collect();
    let input = json!({
        "method": "POST", "url": url, "headers": headers, "body": body,
        "public_jwk": key.public_jwk().to_json(),
    });
    let Some(answer) = run(
        Lang::Python,
        "sdk_signature_verifies_in_http_message_signatures",
        input,
    )
    .await
    else {
        return;
    };
    let answer = ok(answer);
    assert_eq!(answer["labels"], json!(["agentauth"]));
    assert_eq!(
        answer["covered"],
        json!([
            "\"@method\"",
            "\"@target-uri\"",
            "\"authorization\"",
            "\"content-digest\"",
            "\"@signature-params\""
        ])
    );
    assert_eq!(answer["digest_matches"], true);
}
