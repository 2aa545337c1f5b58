//! What third-party libraries rely on, against the real binary: RFC 9421
//! signatures as received and selected by tag, RFC 8414 metadata members,
//! RFC 9864 `Ed25519` beside `EdDSA`, the client assertion lifetime setting,
//! and RFC 6749 §5.2 challenges. (`tests/interop` runs the libraries themselves.)

use agentauth_core::{
    CLIENT_ASSERTION_TYPE, Header, JwsAlg, SigningKey, SpiffeId, b64url_encode, content_digest,
    random_b64, sign_compact, unix_now,
};
use agentauth_sdk::{Verifier, VerifierConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::customer_agent;
use crate::support::{Server, id};

/// A client assertion for `name` with the given header `alg` and lifetime.
fn assertion(s: &Server, name: &str, key: &SigningKey, alg: JwsAlg, lifetime: i64) -> String {
    let now = unix_now();
    let claims = json!({
        "iss": id(name), "sub": id(name), "aud": s.url, "iat": now,
        "exp": now + lifetime, "jti": random_b64(16),
    });
    let header = Header {
        alg,
        typ: None,
        kid: None,
        jwk: None,
    };
    sign_compact(&header, &claims, key)
}

/// A DPoP proof for the token endpoint whose header says `alg`, signed by `key`.
fn dpop_proof(s: &Server, key: &SigningKey, alg: JwsAlg) -> String {
    let header = Header {
        alg,
        typ: Some("dpop+jwt".into()),
        kid: None,
        jwk: Some(key.public_jwk().to_json()),
    };
    let claims = json!({"jti": random_b64(16), "htm": "POST", "htu": format!("{}/oauth/token", s.url), "iat": unix_now()});
    sign_compact(&header, &claims, key)
}

async fn post_token(
    s: &Server,
    assertion: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Option<String>, Value) {
    let audience = id("customer");
    let response = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .headers(
            extra
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("resource", audience.as_str()),
            ("scope", "read:customer"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, response.json().await.unwrap())
}

async fn reader_scene(args: &[&str]) -> (Server, SigningKey) {
    let s = Server::start_with(args, &[]).await;
    s.register("customer", &[]).await;
    let key = s.register("reader", &["read:customer"]).await;
    (s, key)
}

#[tokio::test]
async fn the_metadata_lists_signing_algs_for_every_private_key_jwt_endpoint() {
    let s = Server::start().await;
    let m: Value = s
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let algs = json!(["EdDSA", "Ed25519", "ES256"]);
    for member in [
        "token_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
        "dpop_signing_alg_values_supported",
    ] {
        assert_eq!(m[member], algs, "{member}");
    }
    assert_eq!(
        m["introspection_endpoint_auth_methods_supported"],
        json!(["private_key_jwt", "Bearer"])
    );
    assert_eq!(
        m["revocation_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
}

#[tokio::test]
async fn an_assertion_and_a_dpop_proof_named_ed25519_get_a_token() {
    let (s, key) = reader_scene(&[]).await;
    let named = assertion(&s, "reader", &key, JwsAlg::Ed25519, 60);
    let (status, _, body) = post_token(&s, &named, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let proof = dpop_proof(&s, &key, JwsAlg::Ed25519);
    let fresh = assertion(&s, "reader", &key, JwsAlg::Ed25519, 60);
    let (status, _, body) = post_token(&s, &fresh, &[("dpop", &proof)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
}

#[tokio::test]
async fn an_es256_header_over_an_ed25519_key_is_refused_naming_the_rule() {
    let (s, key) = reader_scene(&[]).await;
    let mislabelled = assertion(&s, "reader", &key, JwsAlg::ES256, 60);
    let (status, _, body) = post_token(&s, &mislabelled, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let why = body["error_description"].as_str().unwrap();
    assert!(why.contains("\"ES256\" does not fit the key"), "{why}");

    let proof = dpop_proof(&s, &key, JwsAlg::ES256);
    let fresh = assertion(&s, "reader", &key, JwsAlg::EdDSA, 60);
    let (status, _, body) = post_token(&s, &fresh, &[("dpop", &proof)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_dpop_proof");
    let why = body["error_description"].as_str().unwrap();
    assert!(why.contains("\"ES256\" does not fit the key"), "{why}");
}

#[tokio::test]
async fn an_hour_long_assertion_is_accepted_by_default_and_used_only_once() {
    let (s, key) = reader_scene(&[]).await;
    let hour = assertion(&s, "reader", &key, JwsAlg::EdDSA, 3600);
    let (status, _, body) = post_token(&s, &hour, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Its jti is kept until its exp: a replay within the hour is refused.
    let (status, _, body) = post_token(&s, &hour, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
}

#[tokio::test]
async fn a_lowered_assertion_lifetime_refuses_naming_the_setting_and_value() {
    let (s, key) = reader_scene(&["--max-client-assertion-lifetime-secs", "600"]).await;
    let hour = assertion(&s, "reader", &key, JwsAlg::EdDSA, 3600);
    let (status, _, body) = post_token(&s, &hour, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let why = body["error_description"].as_str().unwrap();
    assert!(
        why.contains("max_client_assertion_lifetime_secs = 600"),
        "{why}"
    );
    let ten_minutes = assertion(&s, "reader", &key, JwsAlg::EdDSA, 600);
    assert_eq!(post_token(&s, &ten_minutes, &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn invalid_client_challenges_only_the_scheme_the_client_used() {
    let (s, key) = reader_scene(&[]).await;
    let stranger = SigningKey::generate_ed25519();
    let forged = assertion(&s, "reader", &stranger, JwsAlg::EdDSA, 60);
    let (status, challenge, body) = post_token(&s, &forged, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        challenge, None,
        "private_key_jwt uses no Authorization header"
    );
    assert!(!body["error_description"].as_str().unwrap().is_empty());

    let basic = format!("Basic {}", b64url_encode("reader:secret"));
    let response = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .header("authorization", basic)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"agentauth\""
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(!body["error_description"].as_str().unwrap().is_empty());

    // Introspection: an agent's assertion gets no challenge, a wrong admin Bearer a Bearer one.
    let bad = assertion(&s, "reader", &stranger, JwsAlg::EdDSA, 60);
    let response = s
        .http
        .post(format!("{}/oauth/introspect", s.url))
        .form(&[
            ("token", "x"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &bad),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").is_none());
    let response = s
        .http
        .post(format!("{}/oauth/introspect", s.url))
        .bearer_auth("not-the-admin")
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"agentauth\""),
        "{challenge}"
    );
    let _ = key;
}

/// The customer agent behind the layer, and a token for the reader bound to its key.
async fn layer_scene() -> (Server, SigningKey, String, String, Verifier) {
    let (s, key) = reader_scene(&[]).await;
    let verifier = Verifier::connect(VerifierConfig::new(
        &s.url,
        SpiffeId::parse(&id("customer")).unwrap(),
    ))
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/api/customer/42", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, customer_agent::router(&verifier)).into_future());
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    (s, key, url, token, verifier)
}

/// `Signature-Input` and `Signature` as another RFC 9421 library writes them:
/// its own label, parameters created, keyid, alg, expires, nonce, tag.
fn foreign_signature(
    key: &SigningKey,
    url: &str,
    authorization: &str,
    digest: &str,
) -> (String, String) {
    use base64::Engine as _;
    let now = unix_now();
    let inner = format!(
        "(\"@method\" \"@target-uri\" \"authorization\" \"content-digest\");created={now};keyid=\"{}\";alg=\"ed25519\";expires={};nonce=\"{}\";tag=\"agentauth\"",
        key.public_jwk().thumbprint(),
        now + 60,
        random_b64(12)
    );
    let base = format!(
        "\"@method\": GET\n\"@target-uri\": {url}\n\"authorization\": {authorization}\n\"content-digest\": {digest}\n\"@signature-params\": {inner}"
    );
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(base.as_bytes()));
    (format!("sig1={inner}"), format!("sig1=:{signature}:"))
}

#[tokio::test]
async fn a_signature_in_another_libraries_order_and_label_passes_the_layer() {
    let (_s, key, url, token, _verifier) = layer_scene().await;
    let authorization = format!("Bearer {token}");
    let digest = content_digest(b"");
    let (input, signature) = foreign_signature(&key, &url, &authorization, &digest);
    // A gateway's own signature sits beside ours, under another label and tag.
    let input = format!("gw=(\"@method\");created=1;keyid=\"gw\";tag=\"gateway\", {input}");
    let signature = format!("gw=:AAAA:, {signature}");
    let response = reqwest::Client::new()
        .get(&url)
        .header("authorization", &authorization)
        .header("content-digest", &digest)
        .header("signature-input", &input)
        .header("signature", &signature)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["served_to"], id("reader"));
}

#[tokio::test]
async fn parameters_changed_after_signing_are_refused_as_a_changed_signature_base() {
    let (_s, key, url, token, _verifier) = layer_scene().await;
    let authorization = format!("Bearer {token}");
    let digest = content_digest(b"");
    let (input, signature) = foreign_signature(&key, &url, &authorization, &digest);
    let tampered = input.replace(";tag=\"agentauth\"", ";tag=\"agentauth\";alg=\"ed25519\"");
    let tampered = tampered.replacen(";alg=\"ed25519\"", "", 1);
    let response = reqwest::Client::new()
        .get(&url)
        .header("authorization", &authorization)
        .header("content-digest", &digest)
        .header("signature-input", &tampered)
        .header("signature", &signature)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["check"], "proof", "{body}");
    let why = body["error_description"].as_str().unwrap();
    assert!(why.contains("signature base"), "{why}");
}
