//! The registry API (`/v1/agents`), the revocation feed it publishes to and
//! the admin's view of the audit log: every change is audited, every refusal
//! leaves the store as it was.

use agentauth_core::{
    AccessClaims, ClientAssertionClaims, PublicJwk, SigningKey, b64url_decode, b64url_encode,
    random_b64, unix_now,
};
use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, id};

/// A request with full control over credential, content type and body.
async fn send(
    s: &Server,
    method: Method,
    path: &str,
    admin: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = s
        .http
        .request(method, format!("{}{path}", s.url))
        .header(CONTENT_TYPE, content_type)
        .body(body);
    if let Some(token) = admin {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        challenge,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_agent_is_created_read_changed_and_deleted_and_every_change_is_audited() {
    let s = Server::start().await;
    let key = SigningKey::generate_ed25519();
    let (status, created) = s
        .admin_json(
            Method::POST,
            "/v1/agents",
            Some(json!({
                "name": "reader",
                "description": "reads customers",
                "owner": "team-a",
                "permissions": ["read:orders", "read:customer", "read:orders"],
                "public_jwk": key.public_jwk().to_json(),
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "reader");
    assert_eq!(created["id"], "spiffe://agentauth.local/agent/reader");
    assert_eq!(created["client_id"], created["id"]);
    assert_eq!(created["jkt"], key.public_jwk().thumbprint().0);
    assert_eq!(created["public_jwk"], key.public_jwk().to_json());
    assert_eq!(
        created["permissions"],
        json!(["read:customer", "read:orders"]),
        "permissions are stored sorted and without duplicates"
    );
    assert_eq!(created["description"], "reads customers");
    assert_eq!(created["owner"], "team-a");
    assert_eq!(created["status"], "active");
    assert!((created["created_at"].as_i64().unwrap() - unix_now()).abs() < 5);
    assert_eq!(created["updated_at"], created["created_at"]);
    s.register("customer", &[]).await;

    let (status, list) = s.admin_json(Method::GET, "/v1/agents", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["customer", "reader"]);
    assert_eq!(list["agents"][1], created);
    let (status, shown) = s.admin_json(Method::GET, "/v1/agents/reader", None).await;
    assert_eq!((status, &shown), (StatusCode::OK, &created));

    let (status, patched) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"permissions": ["write:customer", "read:customer"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["permissions"],
        json!(["read:customer", "write:customer"])
    );
    assert_eq!(
        patched["description"], "reads customers",
        "untouched fields stay"
    );
    let (_, patched) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"description": "reads and writes", "status": "disabled"})),
        )
        .await;
    assert_eq!(patched["description"], "reads and writes");
    assert_eq!(patched["status"], "disabled");
    assert_eq!(
        patched["permissions"],
        json!(["read:customer", "write:customer"])
    );
    let (_, shown) = s.admin_json(Method::GET, "/v1/agents/reader", None).await;
    assert_eq!(shown, patched, "the change was stored");
    assert_eq!(shown["jkt"], created["jkt"], "the key never changes");

    let response = s
        .http
        .delete(format!("{}/v1/agents/reader", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    let (status, body) = s.admin_json(Method::GET, "/v1/agents/reader", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (_, list) = s.admin_json(Method::GET, "/v1/agents", None).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);

    let records = s.audit_records("?agent=reader").await;
    let seen: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["actor"].as_str().unwrap(),
                r["subject"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
            )
        })
        .collect();
    let reader = id("reader");
    assert_eq!(
        seen,
        [
            ("agent.created", "admin", reader.as_str(), "allow"),
            ("agent.updated", "admin", reader.as_str(), "allow"),
            ("agent.updated", "admin", reader.as_str(), "allow"),
            ("agent.deleted", "admin", reader.as_str(), "allow"),
        ]
    );
    assert_eq!(records[0]["scope"], "read:customer read:orders");
    assert_eq!(records[1]["scope"], "read:customer write:customer");
    assert_eq!(records[1]["reason"], "changed permissions");
    assert_eq!(records[2]["reason"], "changed description, status=disabled");
    assert!(
        records
            .iter()
            .all(|r| !r["request_id"].as_str().unwrap().is_empty()),
        "each record carries its request ID"
    );
    let all = s.audit_records("").await;
    assert_eq!(
        all.len(),
        5,
        "reader's four changes and customer's creation"
    );
}

/// One refused write: its status, error code, a word of its description, and
/// that neither the registry, the revocation feed nor the audit log moved.
struct Refusal {
    what: &'static str,
    method: Method,
    path: &'static str,
    admin: Admin,
    content_type: &'static str,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
    mentions: &'static str,
}

enum Admin {
    Valid,
    Missing,
    Wrong,
}

fn refusal(
    what: &'static str,
    method: Method,
    path: &'static str,
    body: Value,
    status: StatusCode,
    code: &'static str,
    mentions: &'static str,
) -> Refusal {
    Refusal {
        what,
        method,
        path,
        admin: Admin::Valid,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        status,
        code,
        mentions,
    }
}

#[tokio::test]
async fn every_refused_registry_write_answers_a_json_error_and_changes_nothing() {
    let s = Server::start().await;
    s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    s.admin_json(
        Method::PATCH,
        "/v1/agents/customer",
        Some(json!({"status": "disabled"})),
    )
    .await;

    let key = || SigningKey::generate_ed25519().public_jwk().to_json();
    let with_key =
        |name: &str, jwk: Value| json!({"name": name, "permissions": [], "public_jwk": jwk});
    let mut private = SigningKey::generate_ed25519().to_private_jwk();
    private["kid"] = json!("mine");
    let p256 = SigningKey::generate_p256().public_jwk().to_json();
    let mut off_curve = p256.clone();
    let mut y = b64url_decode(p256["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    off_curve["y"] = json!(b64url_encode(&y));
    let bad_request = StatusCode::BAD_REQUEST;
    let (post, patch) = (Method::POST, Method::PATCH);
    let mut cases = vec![
        Refusal {
            body: br#"{"name": "x", "permissions": ["#.to_vec(),
            ..refusal(
                "bad JSON",
                post.clone(),
                "/v1/agents",
                json!(null),
                bad_request,
                "invalid_request",
                "JSON body is invalid",
            )
        },
        refusal(
            "an unknown field",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": [], "public_jwk": key(), "admin": true}),
            bad_request,
            "invalid_request",
            "unknown field `admin`",
        ),
        refusal(
            "a missing field",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": []}),
            bad_request,
            "invalid_request",
            "missing field `public_jwk`",
        ),
        refusal(
            "a JSON array",
            post.clone(),
            "/v1/agents",
            json!([]),
            bad_request,
            "invalid_request",
            "invalid",
        ),
        refusal(
            "a private key",
            post.clone(),
            "/v1/agents",
            with_key("x", private),
            bad_request,
            "invalid_request",
            "private",
        ),
        refusal(
            "an RSA key",
            post.clone(),
            "/v1/agents",
            with_key(
                "x",
                json!({"kty": "RSA", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"}),
            ),
            bad_request,
            "invalid_request",
            "Ed25519",
        ),
        refusal(
            "an oct key",
            post.clone(),
            "/v1/agents",
            with_key("x", json!({"kty": "oct", "k": "c2VjcmV0"})),
            bad_request,
            "invalid_request",
            "private",
        ),
        refusal(
            "a P-256 point off the curve",
            post.clone(),
            "/v1/agents",
            with_key("x", off_curve),
            bad_request,
            "invalid_request",
            "not a valid public key",
        ),
        refusal(
            "the Ed25519 identity point",
            post.clone(),
            "/v1/agents",
            with_key(
                "x",
                json!({"kty": "OKP", "crv": "Ed25519", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
            ),
            bad_request,
            "invalid_request",
            "small-order point",
        ),
        refusal(
            "an Ed25519 point of order 8",
            post.clone(),
            "/v1/agents",
            with_key(
                "x",
                json!({"kty": "OKP", "crv": "Ed25519", "x": "xxdqcD1N2E-6PAt2DRBnDyogU_osOczGTsf9d5KsA3o"}),
            ),
            bad_request,
            "invalid_request",
            "small-order point",
        ),
        refusal(
            "a short Ed25519 key",
            post.clone(),
            "/v1/agents",
            with_key("x", json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
            bad_request,
            "invalid_request",
            "\"x\"",
        ),
        refusal(
            "a key whose alg does not fit",
            post.clone(),
            "/v1/agents",
            with_key(
                "x",
                json!({"kty": "OKP", "crv": "Ed25519", "alg": "ES256", "x": key()["x"]}),
            ),
            bad_request,
            "invalid_request",
            "alg",
        ),
        refusal(
            "an upper-case name",
            post.clone(),
            "/v1/agents",
            with_key("Upper", key()),
            bad_request,
            "invalid_request",
            "not a valid agent name",
        ),
        refusal(
            "a name starting with a dash",
            post.clone(),
            "/v1/agents",
            with_key("-x", key()),
            bad_request,
            "invalid_request",
            "not a valid agent name",
        ),
        refusal(
            "a 64-character name",
            post.clone(),
            "/v1/agents",
            with_key(&"a".repeat(64), key()),
            bad_request,
            "invalid_request",
            "not a valid agent name",
        ),
        refusal(
            "a name with an underscore",
            post.clone(),
            "/v1/agents",
            with_key("a_b", key()),
            bad_request,
            "invalid_request",
            "not a valid agent name",
        ),
        refusal(
            "an empty name",
            post.clone(),
            "/v1/agents",
            with_key("", key()),
            bad_request,
            "invalid_request",
            "not a valid agent name",
        ),
        refusal(
            "a permission with a space",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": ["read customer"], "public_jwk": key()}),
            bad_request,
            "invalid_request",
            "permissions",
        ),
        refusal(
            "an empty permission",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": [""], "public_jwk": key()}),
            bad_request,
            "invalid_request",
            "permissions",
        ),
        refusal(
            "a permission with a quote",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": ["read:\"x\""], "public_jwk": key()}),
            bad_request,
            "invalid_request",
            "permissions",
        ),
        refusal(
            "a 129-character permission",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": ["p".repeat(129)], "public_jwk": key()}),
            bad_request,
            "invalid_request",
            "permissions",
        ),
        refusal(
            "65 permissions",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": (0..65).map(|i| format!("p{i}")).collect::<Vec<_>>(), "public_jwk": key()}),
            bad_request,
            "invalid_request",
            "more than 64",
        ),
        refusal(
            "a description over 1024 bytes",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": [], "public_jwk": key(), "description": "d".repeat(1025)}),
            bad_request,
            "invalid_request",
            "description",
        ),
        refusal(
            "an owner over 1024 bytes",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": [], "public_jwk": key(), "owner": "o".repeat(1025)}),
            bad_request,
            "invalid_request",
            "owner",
        ),
        refusal(
            "a taken name",
            post.clone(),
            "/v1/agents",
            with_key("reader", key()),
            StatusCode::CONFLICT,
            "conflict",
            "already exists",
        ),
        refusal(
            "a body over 64 KiB",
            post.clone(),
            "/v1/agents",
            json!({"name": "x", "permissions": [], "public_jwk": key(), "description": "d".repeat(64 * 1024)}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "65536",
        ),
        Refusal {
            content_type: "text/plain",
            ..refusal(
                "a text body",
                post.clone(),
                "/v1/agents",
                with_key("x", key()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "application/json",
            )
        },
        Refusal {
            content_type: "application/x-www-form-urlencoded",
            body: b"name=x".to_vec(),
            ..refusal(
                "a form body",
                post.clone(),
                "/v1/agents",
                json!(null),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "application/json",
            )
        },
        Refusal {
            admin: Admin::Missing,
            ..refusal(
                "no admin credential",
                post.clone(),
                "/v1/agents",
                with_key("x", key()),
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "admin credential",
            )
        },
        Refusal {
            admin: Admin::Wrong,
            ..refusal(
                "a wrong admin credential",
                post.clone(),
                "/v1/agents",
                with_key("x", key()),
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "not valid",
            )
        },
        refusal(
            "an unknown status",
            patch.clone(),
            "/v1/agents/reader",
            json!({"status": "retired"}),
            bad_request,
            "invalid_request",
            "unknown variant `retired`",
        ),
        refusal(
            "a status of the wrong type",
            patch.clone(),
            "/v1/agents/reader",
            json!({"status": true}),
            bad_request,
            "invalid_request",
            "JSON body is invalid",
        ),
        refusal(
            "a change of the key",
            patch.clone(),
            "/v1/agents/reader",
            json!({"public_jwk": key()}),
            bad_request,
            "invalid_request",
            "unknown field `public_jwk`",
        ),
        refusal(
            "a change of the name",
            patch.clone(),
            "/v1/agents/reader",
            json!({"name": "writer"}),
            bad_request,
            "invalid_request",
            "unknown field `name`",
        ),
        refusal(
            "an invalid new permission",
            patch.clone(),
            "/v1/agents/reader",
            json!({"permissions": ["read:customer", "bad permission"]}),
            bad_request,
            "invalid_request",
            "permissions",
        ),
        refusal(
            "a description over 1024 bytes",
            patch.clone(),
            "/v1/agents/reader",
            json!({"description": "d".repeat(1025), "status": "disabled"}),
            bad_request,
            "invalid_request",
            "description",
        ),
        refusal(
            "a missing agent",
            patch.clone(),
            "/v1/agents/nobody",
            json!({"status": "disabled"}),
            StatusCode::NOT_FOUND,
            "not_found",
            "nobody",
        ),
        refusal(
            "an invalid agent name",
            patch.clone(),
            "/v1/agents/No_Body",
            json!({"status": "disabled"}),
            bad_request,
            "invalid_request",
            "not a valid agent name",
        ),
        Refusal {
            content_type: "text/plain",
            ..refusal(
                "a text body",
                patch.clone(),
                "/v1/agents/reader",
                json!({"status": "disabled"}),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "application/json",
            )
        },
        Refusal {
            admin: Admin::Missing,
            ..refusal(
                "no admin credential",
                patch.clone(),
                "/v1/agents/reader",
                json!({"status": "disabled"}),
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "admin credential",
            )
        },
        Refusal {
            admin: Admin::Wrong,
            ..refusal(
                "a wrong admin credential",
                patch.clone(),
                "/v1/agents/reader",
                json!({"status": "disabled"}),
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "not valid",
            )
        },
        refusal(
            "a missing agent",
            Method::DELETE,
            "/v1/agents/nobody",
            json!(null),
            StatusCode::NOT_FOUND,
            "not_found",
            "nobody",
        ),
        refusal(
            "an invalid agent name",
            Method::DELETE,
            "/v1/agents/Bad_Name",
            json!(null),
            bad_request,
            "invalid_request",
            "not a valid agent name",
        ),
        Refusal {
            admin: Admin::Missing,
            ..refusal(
                "no admin credential",
                Method::DELETE,
                "/v1/agents/reader",
                json!(null),
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "admin credential",
            )
        },
        Refusal {
            admin: Admin::Wrong,
            ..refusal(
                "a wrong admin credential",
                Method::DELETE,
                "/v1/agents/reader",
                json!(null),
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "not valid",
            )
        },
    ];
    // Reads need the credential too.
    for path in ["/v1/agents", "/v1/agents/reader"] {
        cases.push(Refusal {
            admin: Admin::Missing,
            ..refusal(
                "a read without credential",
                Method::GET,
                path,
                json!(null),
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "admin credential",
            )
        });
    }

    let before = s.snapshot().await;
    assert_eq!(before.revocations, 1, "customer's disabling");
    for case in cases {
        let admin = match case.admin {
            Admin::Valid => Some(s.admin.as_str()),
            Admin::Missing => None,
            Admin::Wrong => Some("aa_admin_not-the-credential"),
        };
        let what = format!("{} {} with {}", case.method, case.path, case.what);
        let (status, challenge, body) = send(
            &s,
            case.method,
            case.path,
            admin,
            case.content_type,
            case.body,
        )
        .await;
        assert_eq!(status, case.status, "{what}: {body}");
        assert_eq!(body["error"], case.code, "{what}: {body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains(case.mentions),
            "{what}: \"{description}\" should mention \"{}\"",
            case.mentions
        );
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "{what}: only error and error_description: {body}"
        );
        if status == StatusCode::UNAUTHORIZED {
            let challenge = challenge.unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer "),
                "{what}: a 401 names the scheme in WWW-Authenticate, got \"{challenge}\""
            );
        } else {
            assert_eq!(challenge, None, "{what}");
        }
        assert_eq!(s.snapshot().await, before, "{what} changed the store");
    }
}

#[tokio::test]
async fn a_p256_agent_registers_and_gets_a_token_bound_to_its_key() {
    let s = Server::start().await;
    let key = SigningKey::generate_p256();
    let (status, created) = s
        .admin_json(
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "p256-agent", "permissions": ["read:customer"], "public_jwk": key.public_jwk().to_json()})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["public_jwk"]["kty"], "EC");
    assert_eq!(created["public_jwk"]["crv"], "P-256");
    assert_eq!(created["jkt"], key.public_jwk().thumbprint().0);
    assert_eq!(
        PublicJwk::from_json(&created["public_jwk"]).unwrap(),
        key.public_jwk()
    );
    s.register("customer", &[]).await;

    let assertion = s.assertion("p256-agent", &key);
    let header: Value =
        serde_json::from_slice(&b64url_decode(assertion.split('.').next().unwrap()).unwrap())
            .unwrap();
    assert_eq!(header["alg"], "ES256");
    let (status, body) = s
        .token_with(&assertion, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims: AccessClaims =
        serde_json::from_slice(&b64url_decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims.client_id, id("p256-agent"));
    assert_eq!(claims.cnf.unwrap().jkt, key.public_jwk().thumbprint());

    // An Ed25519 key cannot speak for the P-256 agent.
    let impostor = ClientAssertionClaims::sign(
        &SigningKey::generate_ed25519(),
        &id("p256-agent"),
        &s.url,
        random_b64(16),
        unix_now(),
    );
    let (status, body) = s
        .token_with(&impostor, &id("customer"), "read:customer")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

async fn feed(s: &Server, since: i64) -> Value {
    let response = s
        .http
        .get(format!("{}/v1/revocations?since={since}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn status_changes_and_deletions_are_published_on_the_revocation_feed() {
    let s = Server::start().await;
    s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    assert_eq!(
        feed(&s, 0).await,
        json!({"revocations": [], "last_seq": 0, "more": false})
    );
    let set_status = |status: &'static str| {
        s.admin_json(
            Method::PATCH,
            "/v1/agents/reader",
            Some(json!({ "status": status })),
        )
    };

    assert_eq!(set_status("disabled").await.0, StatusCode::OK);
    let page = feed(&s, 0).await;
    let entries = page["revocations"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["kind"], "agent");
    assert_eq!(entries[0]["subject"], id("reader"));
    assert_eq!(entries[0]["action"], "revoke");
    assert_eq!(entries[0]["expires_at"], Value::Null);
    assert!((entries[0]["created_at"].as_i64().unwrap() - unix_now()).abs() < 5);
    let revoked_at = entries[0]["seq"].as_i64().unwrap();
    assert_eq!(page["last_seq"], revoked_at);

    // Disabling a disabled agent, or changing only its description, publishes nothing.
    assert_eq!(set_status("disabled").await.0, StatusCode::OK);
    s.admin_json(
        Method::PATCH,
        "/v1/agents/reader",
        Some(json!({"description": "still disabled"})),
    )
    .await;
    assert_eq!(
        feed(&s, 0).await["revocations"].as_array().unwrap().len(),
        1
    );

    assert_eq!(set_status("active").await.0, StatusCode::OK);
    let newer = feed(&s, revoked_at).await;
    let entries = newer["revocations"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "only what came after {revoked_at}: {newer}"
    );
    assert_eq!(entries[0]["subject"], id("reader"));
    assert_eq!(entries[0]["action"], "restore");
    let restored_at = entries[0]["seq"].as_i64().unwrap();
    assert!(restored_at > revoked_at);
    assert_eq!(newer["last_seq"], restored_at);
    assert_eq!(
        feed(&s, restored_at).await,
        json!({"revocations": [], "last_seq": restored_at, "more": false}),
        "nothing after the last entry"
    );

    let response = s
        .http
        .delete(format!("{}/v1/agents/customer", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let page = feed(&s, restored_at).await;
    assert_eq!(page["revocations"][0]["subject"], id("customer"));
    assert_eq!(page["revocations"][0]["action"], "revoke");
    let all = feed(&s, 0).await;
    let actions: Vec<&str> = all["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["revoke", "restore", "revoke"]);

    let response = s
        .http
        .get(format!("{}/v1/revocations?since=0&extra=1", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_audit_api_filters_by_agent_kind_and_position_for_the_admin_only() {
    let s = Server::start().await;
    let reader = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let other = s.register("other", &["read:customer"]).await;
    for _ in 0..2 {
        let (status, _) = s
            .token("reader", &reader, &id("customer"), "read:customer")
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = s
        .token("reader", &reader, &id("customer"), "write:customer")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s
        .token("other", &other, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK);
    // seq: 1-3 agent.created, 4-5 token.issued (reader), 6 token.refused, 7 token.issued (other)

    for admin in [None, Some("aa_admin_wrong")] {
        let mut request = s.http.get(format!("{}/v1/audit?agent=reader", s.url));
        if let Some(token) = admin {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(WWW_AUTHENTICATE));
        let body: Value = response.json().await.unwrap();
        let expected = if admin.is_none() {
            "invalid_request"
        } else {
            "invalid_token"
        };
        assert_eq!(body["error"], expected);
        assert!(body.get("records").is_none());
    }

    let (status, page) = s.admin_json(Method::GET, "/v1/audit", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["head"]["seq"], 7);
    assert_eq!(page["head"]["hash"], page["records"][6]["hash"]);
    let seqs = |records: &[Value]| -> Vec<i64> {
        records.iter().map(|r| r["seq"].as_i64().unwrap()).collect()
    };
    assert_eq!(
        seqs(page["records"].as_array().unwrap()),
        [1, 2, 3, 4, 5, 6, 7]
    );

    let by_reader = s.audit_records("?agent=reader").await;
    assert_eq!(seqs(&by_reader), [1, 4, 5, 6]);
    assert_eq!(
        s.audit_records(&format!("?agent={}", id("reader"))).await,
        by_reader
    );
    assert_eq!(
        seqs(&s.audit_records("?agent=customer").await),
        [2, 4, 5, 6, 7]
    );
    assert_eq!(
        seqs(&s.audit_records("?kind=token.issued").await),
        [4, 5, 7]
    );
    assert_eq!(
        seqs(&s.audit_records("?agent=reader&kind=token.refused").await),
        [6]
    );
    let refused = &s.audit_records("?kind=token.refused").await[0];
    assert_eq!(refused["actor"], id("reader"));
    assert_eq!(refused["decision"], "deny");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid_scope")
    );
    assert_eq!(seqs(&s.audit_records("?since=5").await), [6, 7]);
    assert_eq!(seqs(&s.audit_records("?since=2&limit=2").await), [3, 4]);
    assert_eq!(
        seqs(&s.audit_records("?agent=reader&since=4&limit=1").await),
        [5]
    );
    assert_eq!(
        seqs(&s.audit_records("?limit=0").await),
        [1],
        "the limit is at least 1"
    );
    assert_eq!(seqs(&s.audit_records("?since=-3&limit=2").await), [1, 2]);
    assert!(s.audit_records("?since=7").await.is_empty());
    assert!(s.audit_records("?kind=agent.deleted").await.is_empty());
    assert!(s.audit_records("?agent=nobody").await.is_empty());

    for query in ["?unknown=1", "?since=abc", "?limit=many"] {
        let (status, body) = s
            .admin_json(Method::GET, &format!("/v1/audit{query}"), None)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn an_empty_patch_is_refused_and_changes_nothing() {
    let s = Server::start().await;
    s.register("reader", &["read:customer"]).await;
    let before = s.snapshot().await;
    let (status, body) = s
        .admin_json(Method::PATCH, "/v1/agents/reader", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(s.snapshot().await, before);
}

#[tokio::test]
async fn without_a_credential_the_body_is_not_even_read() {
    let s = Server::start().await;
    let response = s
        .http
        .post(format!("{}/v1/agents", s.url))
        .header(CONTENT_TYPE, "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "Bearer realm=\"agentauth\"",
        "no error code when no credential was sent (RFC 6750 3.1)"
    );
}

#[tokio::test]
async fn an_audit_query_for_an_unknown_kind_is_refused() {
    let s = Server::start().await;
    s.register("reader", &["read:customer"]).await;
    for kind in ["token.minted", "request.other", "TOKEN.ISSUED", ""] {
        let (status, body) = s
            .admin_json(Method::GET, &format!("/v1/audit?kind={kind}"), None)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "kind {kind:?}: {body}"
        );
        assert!(body.get("records").is_none(), "{body}");
    }
    // A kind agentauth writes but nothing has written yet is an empty page, not an error.
    assert!(s.audit_records("?kind=task.completed").await.is_empty());
}

#[tokio::test]
async fn an_agent_may_report_only_request_decisions_to_the_audit_log() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    let (status, body) = s
        .token(
            "reader",
            &key,
            "spiffe://agentauth.local/authority",
            "audit:write",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let endpoint = format!("{}/v1/audit/events", s.url);
    let report = |kind: &str| {
        json!({"events": [
            {"kind": "request.allowed", "decision": "allow", "subject": "x"},
            {"kind": kind, "decision": "allow", "subject": "y"},
        ]})
    };
    for kind in ["request.other", "token.issued", "agent.deleted", ""] {
        let before = s.snapshot().await;
        let response =
            crate::support::send_with_token(s.http.post(&endpoint).json(&report(kind)), &token)
                .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "kind {kind:?}: {body}"
        );
        assert_eq!(
            s.snapshot().await,
            before,
            "kind {kind:?}: nothing of a refused batch is written"
        );
    }
    let before = s.snapshot().await.audit_head;
    let response = crate::support::send_with_token(
        s.http.post(&endpoint).json(&report("request.denied")),
        &token,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(s.snapshot().await.audit_head, before + 2);
}
