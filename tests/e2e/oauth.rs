//! The OAuth endpoints: metadata, JWKS, token issuance and every refusal,
//! introspection and revocation.

use agentauth_core::{
    ACCESS_TOKEN_TYP, AccessClaims, ClientAssertionClaims, Header, PublicJwk, SigningKey,
    b64url_decode, random_b64, sign_compact, unix_now,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, id};

fn decode(token: &str, part: usize) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').nth(part).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn metadata_advertises_every_endpoint_and_method() {
    let s = Server::start().await;
    s.register("reader", &["read:customer"]).await;
    let m: Value = s
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["issuer"], s.url);
    assert_eq!(m["token_endpoint"], format!("{}/oauth/token", s.url));
    assert_eq!(m["jwks_uri"], format!("{}/.well-known/jwks.json", s.url));
    assert_eq!(
        m["introspection_endpoint"],
        format!("{}/oauth/introspect", s.url)
    );
    assert_eq!(m["revocation_endpoint"], format!("{}/oauth/revoke", s.url));
    assert_eq!(
        m["grant_types_supported"],
        json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        m["token_endpoint_auth_signing_alg_values_supported"],
        json!(["EdDSA", "Ed25519", "ES256"])
    );
    assert!(m["response_types_supported"].is_array());
    assert_eq!(m["policy_endpoint"], format!("{}/v1/policy", s.url));
    assert_eq!(m["x509_svid_endpoint"], format!("{}/v1/svids/x509", s.url));
    assert_eq!(m["spiffe_bundle_endpoint"], format!("{}/v1/bundle", s.url));
    assert_eq!(
        m["spiffe_bundle_map_endpoint"],
        format!("{}/v1/bundles", s.url)
    );
    assert_eq!(m["jwt_svid_endpoint"], format!("{}/v1/svids/jwt", s.url));
    assert_eq!(m["approval_polling_interval"], 5);
    // Only what any agent may ask of the authority itself: the registry's
    // permissions are nobody's business anonymously.
    assert_eq!(
        m["scopes_supported"],
        json!([
            "audit:write",
            "policy:read",
            "svid:jwt",
            "svid:x509",
            "tasks:complete"
        ])
    );

    let jwks: Value = s
        .http
        .get(m["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kty"], "OKP");
    assert!(
        key.get("d").is_none(),
        "the JWKS must never carry a private key"
    );
    assert_eq!(
        key["kid"].as_str().unwrap(),
        PublicJwk::from_json(key).unwrap().thumbprint().0
    );
}

#[tokio::test]
async fn client_credentials_issues_a_token_per_the_profile() {
    let s = Server::start().await;
    let key = s
        .register("reader", &["read:customer", "read:orders"])
        .await;
    s.register("customer", &[]).await;
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "read:customer");

    let token = body["access_token"].as_str().unwrap();
    let header = decode(token, 0);
    assert_eq!(header["typ"], ACCESS_TOKEN_TYP);
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    let claims: AccessClaims = serde_json::from_value(decode(token, 1)).unwrap();
    assert_eq!(claims.iss, s.url);
    assert_eq!(claims.sub, id("reader"));
    assert_eq!(claims.client_id, id("reader"));
    assert_eq!(claims.aud, id("customer"));
    assert_eq!(claims.scope.to_string(), "read:customer");
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(claims.nbf, claims.iat);
    assert!((claims.iat - unix_now()).abs() < 5);
    assert!(claims.jti.len() >= 16);
    let cnf = claims.cnf.unwrap();
    assert_eq!(cnf.jkt, key.public_jwk().thumbprint());
    assert_eq!(PublicJwk::from_json(&cnf.jwk).unwrap(), key.public_jwk());

    let (_, again) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_ne!(
        decode(again["access_token"].as_str().unwrap(), 1)["jti"],
        claims.jti
    );
}

#[tokio::test]
async fn audience_may_be_given_as_audience_and_lifetime_is_capped() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let (status, body) = with_lifetime(&s, &key, "999999").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3600);
    let claims = decode(body["access_token"].as_str().unwrap(), 1);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let (_, body) = with_lifetime(&s, &key, "60").await;
    assert_eq!(body["expires_in"], 60);
    let (status, body) = with_lifetime(&s, &key, "-5").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

async fn with_lifetime(s: &Server, key: &SigningKey, lifetime: &str) -> (StatusCode, Value) {
    s.form_as(
        "reader",
        key,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("audience", &id("customer")),
            ("scope", "read:customer"),
            ("expires_in", lifetime),
        ],
    )
    .await
}

#[tokio::test]
async fn a_replayed_client_assertion_is_invalid_client() {
    let s = Server::start_with(&["--refusal-audit-window-secs", "1"], &[]).await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let assertion = s.assertion("reader", &key);
    let (status, _) = s
        .token_with(&assertion, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = s.snapshot().await;
    let (status, body) = s
        .token_with(&assertion, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let after = s.snapshot().await;
    assert_eq!(after.agents, before.agents);
    assert_eq!(
        after.audit_head, before.audit_head,
        "a refusal before authentication is counted, not written at once"
    );
    let counted = s.counted_refusals().await;
    assert!(
        counted.contains(&format!(
            "unverified:{} from 127.0.0.1: 1 (invalid_client)",
            id("reader")
        )),
        "a replay proves nothing about who sent it: {counted}"
    );
}

/// The refusal a client can act on: status and OAuth error code.
async fn expect_error(s: &Server, result: (StatusCode, Value), status: StatusCode, code: &str) {
    let (got_status, body) = result;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    let _ = s;
}

/// A refusal whose description must name what to change (a permission, a
/// limit, the unsupported value), besides its status and code.
async fn expect_error_naming(
    s: &Server,
    result: (StatusCode, Value),
    status: StatusCode,
    code: &str,
    names: &str,
) {
    let description = result.1["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    expect_error(s, result, status, code).await;
    assert!(
        description.contains(names),
        "\"{description}\" should name \"{names}\""
    );
}

#[tokio::test]
async fn token_requests_are_refused_with_the_right_oauth_error() {
    let s = Server::start_with(&["--refusal-audit-window-secs", "1"], &[]).await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let customer = id("customer");

    let assertion = s.assertion("reader", &key);
    let no_target = s
        .form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    agentauth_core::CLIENT_ASSERTION_TYPE,
                ),
                ("client_assertion", &assertion),
                ("scope", "read:customer"),
            ],
        )
        .await;
    expect_error(&s, no_target, StatusCode::BAD_REQUEST, "invalid_target").await;
    let unknown_target = s
        .token("reader", &key, &id("nobody"), "read:customer")
        .await;
    expect_error(
        &s,
        unknown_target,
        StatusCode::BAD_REQUEST,
        "invalid_target",
    )
    .await;
    let not_spiffe = s
        .token("reader", &key, "https://example.com/api", "read:customer")
        .await;
    expect_error(&s, not_spiffe, StatusCode::BAD_REQUEST, "invalid_target").await;

    let not_held = s
        .token("reader", &key, &customer, "read:customer write:customer")
        .await;
    expect_error_naming(
        &s,
        not_held,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "write:customer",
    )
    .await;
    let empty = s.token("reader", &key, &customer, "").await;
    expect_error(&s, empty, StatusCode::BAD_REQUEST, "invalid_scope").await;

    let stranger = SigningKey::generate_ed25519();
    let unknown_agent = s
        .token("ghost", &stranger, &customer, "read:customer")
        .await;
    expect_error(
        &s,
        unknown_agent,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let forged = s
        .token_with(
            &s.assertion("reader", &stranger),
            &customer,
            "read:customer",
        )
        .await;
    expect_error(&s, forged, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let counted = s.counted_refusals().await;
    assert!(
        counted.contains(&format!("unverified:{} from 127.0.0.1", id("reader"))),
        "a forged assertion is not attributed: {counted}"
    );

    let wrong_aud = ClientAssertionClaims::sign(
        &key,
        &id("reader"),
        "http://elsewhere",
        random_b64(16),
        unix_now(),
    );
    let wrong_aud = s.token_with(&wrong_aud, &customer, "read:customer").await;
    expect_error(&s, wrong_aud, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let stale = ClientAssertionClaims::sign(
        &key,
        &id("reader"),
        &s.url,
        random_b64(16),
        unix_now() - 600,
    );
    let stale = s.token_with(&stale, &customer, "read:customer").await;
    expect_error(&s, stale, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let far = sign_compact(
        &Header {
            alg: key.alg(),
            typ: None,
            kid: None,
            jwk: None,
        },
        &json!({"iss": id("reader"), "sub": id("reader"), "aud": s.url, "exp": unix_now() + 7200, "jti": "x"}),
        &key,
    );
    let far = s.token_with(&far, &customer, "read:customer").await;
    expect_error_naming(
        &s,
        far,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "max_client_assertion_lifetime_secs = 3600",
    )
    .await;
    let none_alg = format!(
        "{}.{}.",
        agentauth_core::b64url_encode(r#"{"alg":"none"}"#),
        agentauth_core::b64url_encode(json!({"iss": id("reader")}).to_string())
    );
    let none_alg = s.token_with(&none_alg, &customer, "read:customer").await;
    expect_error(&s, none_alg, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let unsupported = s.form("/oauth/token", &[("grant_type", "password")]).await;
    expect_error_naming(
        &s,
        unsupported,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "password",
    )
    .await;
    let no_auth = s
        .form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", &customer),
            ],
        )
        .await;
    expect_error(&s, no_auth, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let repeated = s
        .form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "a"),
                ("scope", "b"),
            ],
        )
        .await;
    expect_error(&s, repeated, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Every refusal is audited: those of an authenticated client one by
    // one, the others counted into a record per window. Nothing else was written.
    let store = s.store().await;
    let filter = agentauth_store::AuditFilter {
        kind: Some(agentauth_core::AuditKind::TokenRefused),
        ..Default::default()
    };
    assert_eq!(store.audit_records(&filter).await.unwrap().len(), 5);
    s.counted_refusals().await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let counted: u64 = s
        .audit_records("?kind=token.refusals_counted")
        .await
        .iter()
        .map(|r| {
            let reason = r["reason"].as_str().unwrap();
            reason.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(counted, 9);
    assert_eq!(s.snapshot().await.revocations, 0);
}

#[tokio::test]
async fn a_disabled_agent_gets_no_token_and_an_enabled_one_does_again() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let (status, _) = s
        .admin_json(
            reqwest::Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let refused = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    expect_error(&s, refused, StatusCode::UNAUTHORIZED, "invalid_client").await;
    s.admin_json(
        reqwest::Method::PATCH,
        "/v1/agents/reader",
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(
        s.token("reader", &key, &id("customer"), "read:customer")
            .await
            .0,
        StatusCode::OK
    );
    // A disabled target is refused too.
    s.admin_json(
        reqwest::Method::PATCH,
        "/v1/agents/customer",
        Some(json!({"status": "disabled"})),
    )
    .await;
    let refused = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    expect_error(&s, refused, StatusCode::BAD_REQUEST, "invalid_target").await;
}

#[tokio::test]
async fn oversized_and_mistyped_bodies_are_refused() {
    let s = Server::start().await;
    let big = "a".repeat(agentauth_authority_max_body() + 1);
    let response = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .form(&[("grant_type", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "request_too_large");
    let response = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

fn agentauth_authority_max_body() -> usize {
    64 * 1024
}

#[tokio::test]
async fn strict_mode_refuses_the_token_endpoint_as_assertion_audience() {
    let lax = Server::start().await;
    let key = lax.register("reader", &["read:customer"]).await;
    lax.register("customer", &[]).await;
    let to_endpoint = ClientAssertionClaims::sign(
        &key,
        &id("reader"),
        &format!("{}/oauth/token", lax.url),
        random_b64(16),
        unix_now(),
    );
    assert_eq!(
        lax.token_with(&to_endpoint, &id("customer"), "read:customer")
            .await
            .0,
        StatusCode::OK
    );

    let strict = Server::start_with(&["--strict-client-assertion-audience", "true"], &[]).await;
    let key = strict.register("reader", &["read:customer"]).await;
    strict.register("customer", &[]).await;
    let to_endpoint = ClientAssertionClaims::sign(
        &key,
        &id("reader"),
        &format!("{}/oauth/token", strict.url),
        random_b64(16),
        unix_now(),
    );
    let refused = strict
        .token_with(&to_endpoint, &id("customer"), "read:customer")
        .await;
    expect_error(&strict, refused, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(
        strict
            .token("reader", &key, &id("customer"), "read:customer")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn introspection_answers_the_admin_and_the_audience_only() {
    let s = Server::start().await;
    let reader = s.register("reader", &["read:customer"]).await;
    let customer = s.register("customer", &[]).await;
    let other = s.register("other", &[]).await;
    let (_, body) = s
        .token("reader", &reader, &id("customer"), "read:customer")
        .await;
    let token = body["access_token"].as_str().unwrap().to_owned();

    let as_admin = s
        .http
        .post(format!("{}/oauth/introspect", s.url))
        .bearer_auth(&s.admin)
        .form(&[("token", token.as_str())]);
    let answer: Value = as_admin.send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], id("reader"));
    assert_eq!(answer["scope"], "read:customer");
    assert_eq!(answer["cnf"]["jkt"], reader.public_jwk().thumbprint().0);

    let introspect_as = |name: &'static str, key: SigningKey| {
        let token = token.clone();
        let s = &s;
        async move {
            s.form_as(
                name,
                &key,
                "/oauth/introspect",
                &[("token", token.as_str())],
            )
            .await
        }
    };
    let (status, answer) = introspect_as("customer", customer.clone()).await;
    assert_eq!(
        (status, answer["active"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (status, answer) = introspect_as("other", other).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"active": false})));

    let (status, answer) = s
        .form("/oauth/introspect", &[("token", token.as_str())])
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let wrong_admin = s
        .http
        .post(format!("{}/oauth/introspect", s.url))
        .bearer_auth("aa_admin_wrong")
        .form(&[("token", token.as_str())]);
    assert_eq!(
        wrong_admin.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let garbage = s
        .http
        .post(format!("{}/oauth/introspect", s.url))
        .bearer_auth(&s.admin)
        .form(&[("token", "not.a.token")]);
    assert_eq!(
        garbage.send().await.unwrap().json::<Value>().await.unwrap(),
        json!({"active": false})
    );
}

#[tokio::test]
async fn a_revoked_token_is_inactive_and_only_its_client_may_revoke_it() {
    let s = Server::start().await;
    let reader = s.register("reader", &["read:customer"]).await;
    let customer = s.register("customer", &[]).await;
    let (_, body) = s
        .token("reader", &reader, &id("customer"), "read:customer")
        .await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let revoke_as = |name: &'static str, key: &SigningKey| {
        let (token, key, s) = (token.clone(), key.clone(), &s);
        async move {
            s.form_as(name, &key, "/oauth/revoke", &[("token", token.as_str())])
                .await
        }
    };
    let before = s.snapshot().await;
    let (status, body) = revoke_as("customer", &customer).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
    assert_eq!(s.snapshot().await.revocations, before.revocations);

    let (status, _) = revoke_as("reader", &reader).await;
    assert_eq!(status, StatusCode::OK);
    let introspected = s
        .http
        .post(format!("{}/oauth/introspect", s.url))
        .bearer_auth(&s.admin)
        .form(&[("token", token.as_str())]);
    assert_eq!(
        introspected
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        json!({"active": false})
    );
    let feed: Value = s
        .http
        .get(format!("{}/v1/revocations?since=0", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feed["revocations"][0]["kind"], "token");
    assert_eq!(feed["revocations"][0]["subject"], decode(&token, 1)["jti"]);

    let (status, _) = s.form("/oauth/revoke", &[("token", "unknown")]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revocation needs client authentication"
    );
    let unknown = s
        .http
        .post(format!("{}/oauth/revoke", s.url))
        .bearer_auth(&s.admin)
        .form(&[("token", "not.a.token")]);
    assert_eq!(
        unknown.send().await.unwrap().status(),
        StatusCode::OK,
        "RFC 7009: unknown tokens are answered 200"
    );
}

#[tokio::test]
async fn tokens_for_the_authority_carry_audit_write_only_on_request() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    let authority = "spiffe://agentauth.local/authority";
    let (status, body) = s.token("reader", &key, authority, "audit:write").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.register("customer", &[]).await;
    let refused = s
        .token("reader", &key, &id("customer"), "audit:write")
        .await;
    expect_error_naming(
        &s,
        refused,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "audit:write",
    )
    .await;
    let _ = AccessClaims::lifetime;
}

#[tokio::test]
async fn token_requests_beyond_the_rate_limits_get_429_with_retry_after() {
    let s = Server::start_with(
        &[
            "--token-requests-per-address",
            "1000",
            "--token-requests-per-client",
            "1",
        ],
        &[],
    )
    .await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    // The client's burst is twice its rate: two tokens, then 429.
    for _ in 0..2 {
        let (status, body) = s
            .token("reader", &key, &id("customer"), "read:customer")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let before = s.snapshot().await;
    let response = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &s.assertion("reader", &key)),
            ("resource", &id("customer")),
            ("scope", "read:customer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("token_requests_per_client"),
        "{body}"
    );
    assert_eq!(
        s.snapshot().await,
        before,
        "a throttled request writes nothing"
    );
}

#[tokio::test]
async fn a_flood_from_one_address_is_refused_before_any_work() {
    let s = Server::start_with(&["--token-requests-per-address", "2"], &[]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = s
            .http
            .post(format!("{}/oauth/token", s.url))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    // A burst of four (twice the rate) is read and refused on its merits ...
    assert!(
        statuses[..4]
            .iter()
            .all(|s| *s != StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // ... then the address is throttled.
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
}

#[tokio::test]
async fn a_flood_of_unauthenticated_token_requests_is_counted_not_written_one_by_one() {
    let s = Server::start_with(&["--refusal-audit-window-secs", "1"], &[]).await;
    let before = s.snapshot().await;
    let started = std::time::Instant::now();
    for i in 0..300 {
        let response = s
            .http
            .post(format!("{}/oauth/token", s.url))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    agentauth_core::CLIENT_ASSERTION_TYPE,
                ),
                ("client_assertion", &format!("garbage.{i}.x")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let windows = started.elapsed().as_secs() + 2;
    s.counted_refusals().await;
    // Wait for the last window to be written, then add the counts up.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let records = s.audit_records("?kind=token.refusals_counted").await;
    let total: u64 = records
        .iter()
        .map(|r| {
            let reason = r["reason"].as_str().unwrap();
            assert!(reason.contains("anonymous from 127.0.0.1"), "{reason}");
            reason.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(total, 300, "every refusal is counted");
    assert!(
        records.len() as u64 <= windows,
        "one record per window, not per request: {} records",
        records.len()
    );
    let after = s.snapshot().await;
    assert_eq!(after.audit_head, before.audit_head + records.len() as i64);
    assert_eq!(after.agents, before.agents);
}

/// A fresh token of `reader` for `customer`.
async fn reader_token(s: &Server, key: &SigningKey) -> String {
    let (status, body) = s
        .token("reader", key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// The admin revokes the `kind` named `value`.
async fn admin_revokes(s: &Server, kind: &str, value: &str) {
    let (status, body) = s
        .admin_json(
            reqwest::Method::POST,
            "/v1/revocations",
            Some(json!({"kind": kind, "value": value})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// What the authority keeps in memory (verified tokens, agents, revocation
/// answers) never outlives a change: a token introspected active is inactive
/// right after it or its task is revoked or its client disabled, and a
/// disabled agent gets no new token.
#[tokio::test]
async fn introspection_and_issuance_see_each_revocation_at_once_after_being_answered_from_memory() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let (first, second) = (reader_token(&s, &key).await, reader_token(&s, &key).await);
    for t in [&first, &second, &first, &second] {
        assert_eq!(s.introspect(t).await["active"], true);
    }

    admin_revokes(&s, "token", &crate::support::claims(&first).jti).await;
    assert_eq!(s.introspect(&first).await, json!({"active": false}));
    assert_eq!(s.introspect(&second).await["active"], true);

    let txn = crate::support::claims(&second).txn.unwrap();
    admin_revokes(&s, "task", txn.as_str()).await;
    assert_eq!(s.introspect(&second).await, json!({"active": false}));

    let third = reader_token(&s, &key).await;
    assert_eq!(s.introspect(&third).await["active"], true);
    let (status, _) = s
        .admin_json(
            reqwest::Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.introspect(&third).await, json!({"active": false}));
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
}
