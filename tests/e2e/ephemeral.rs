//! Ephemeral agents against the real binary: an agent holding `agents:spawn`
//! registers short-lived children with its own token, within its permissions
//! and lifetime; they stop working when they expire or their parent is
//! disabled or deleted, and every refusal leaves the store as it was.

use agentauth_core::{SigningKey, unix_now};
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{AUTHORITY, Server, claims, id};

/// A client_credentials token that must be issued.
async fn access_token(
    s: &Server,
    name: &str,
    key: &SigningKey,
    audience: &str,
    scope: &str,
) -> String {
    let (status, body) = s.token(name, key, audience, scope).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `POST /v1/agents` with an optional bearer token; status, challenge and body.
async fn spawn(
    s: &Server,
    bearer: Option<&str>,
    body: &Value,
) -> (StatusCode, Option<String>, Value) {
    let request = s.http.post(format!("{}/v1/agents", s.url)).json(body);
    let response = match bearer {
        Some(token) => crate::support::send_with_token(request, token).await,
        None => request.send().await.unwrap(),
    };
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

/// The body registering `name` with a fresh key, which it returns.
fn child(name: &str, permissions: &[&str], expires_in: Option<i64>) -> (Value, SigningKey) {
    let key = SigningKey::generate_ed25519();
    let mut body =
        json!({"name": name, "permissions": permissions, "public_jwk": key.public_jwk().to_json()});
    if let Some(secs) = expires_in {
        body["expires_in"] = json!(secs);
    }
    (body, key)
}

/// Whether the authority still considers `token` active (admin introspection).
async fn active(s: &Server, token: &str) -> bool {
    s.introspect(token).await["active"] == json!(true)
}

/// The agent revocations on the feed, as (subject, action).
async fn agent_feed(s: &Server) -> Vec<(String, String)> {
    let feed: Value = s
        .http
        .get(format!("{}/v1/revocations?since=0", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    feed["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "agent")
        .map(|r| {
            (
                r["subject"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A client_credentials request for `name` that must fail client authentication.
async fn assert_invalid_client(s: &Server, name: &str, key: &SigningKey, mentions: &str) {
    let (status, body) = s.token(name, key, &id("database"), "read:db").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains(mentions),
        "\"{description}\" should mention \"{mentions}\""
    );
}

/// The planner (`agents:spawn read:db`), the database it reads, and the
/// planner's token for the authority with `agents:spawn`.
async fn planner(s: &Server) -> (SigningKey, String) {
    let key = s.register("planner", &["agents:spawn", "read:db"]).await;
    s.register("database", &[]).await;
    let token = access_token(s, "planner", &key, AUTHORITY, "agents:spawn").await;
    (key, token)
}

async fn a_child_is_spawned_works_and_is_revoked_with_its_parent(s: &Server) {
    let (_, spawn_token) = planner(s).await;
    let (body, worker_key) = child("planner-worker", &["read:db"], Some(60));
    let before = unix_now();
    let (status, _, created) = spawn(s, Some(&spawn_token), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["id"], id("planner-worker"));
    assert_eq!(created["parent"], id("planner"));
    assert_eq!(created["permissions"], json!(["read:db"]));
    assert_eq!(created["status"], "active");
    let expires_at = created["expires_at"].as_i64().unwrap();
    assert!(
        (before + 60..=unix_now() + 60).contains(&expires_at),
        "{created}"
    );
    let (_, shown) = s
        .admin_json(Method::GET, "/v1/agents/planner-worker", None)
        .await;
    assert_eq!(shown, created);

    // The child authenticates with its own key; its token ends with it.
    let (status, issued) = s
        .token("planner-worker", &worker_key, &id("database"), "read:db")
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let worker_token = issued["access_token"].as_str().unwrap().to_owned();
    let c = claims(&worker_token);
    assert_eq!(c.client_id, id("planner-worker"));
    assert!(c.exp <= expires_at, "exp {} after {expires_at}", c.exp);
    assert!(issued["expires_in"].as_i64().unwrap() <= 60, "{issued}");
    assert!(active(s, &worker_token).await);

    // The spawn is audited with the parent as actor.
    let (_, audit) = s
        .admin_json(Method::GET, "/v1/audit?kind=agent.spawned", None)
        .await;
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["actor"], id("planner"));
    assert_eq!(records[0]["subject"], id("planner-worker"));
    assert_eq!(records[0]["scope"], "read:db");
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("expires at {expires_at}")),
        "{audit}"
    );

    // Disabling the parent disables and revokes the child.
    let (status, answer) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/planner",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_invalid_client(s, "planner-worker", &worker_key, "disabled").await;
    assert!(!active(s, &worker_token).await);
    assert!(
        agent_feed(s)
            .await
            .contains(&(id("planner-worker"), "revoke".to_owned()))
    );
    let (_, shown) = s
        .admin_json(Method::GET, "/v1/agents/planner-worker", None)
        .await;
    assert_eq!(shown["status"], "disabled");
    // The parent's own token for the authority no longer spawns.
    let (body, _) = child("planner-late", &["read:db"], Some(60));
    let (status, _, answer) = spawn(s, Some(&spawn_token), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    // Re-enabling the parent does not re-enable the child.
    let (status, _) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/planner",
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_invalid_client(s, "planner-worker", &worker_key, "disabled").await;
}

#[tokio::test]
async fn a_child_is_spawned_works_and_is_revoked_with_its_parent_on_sqlite() {
    let s = Server::start().await;
    a_child_is_spawned_works_and_is_revoked_with_its_parent(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn a_child_is_spawned_works_and_is_revoked_with_its_parent_on_postgres() {
    let Some(s) = Server::start_postgres().await else {
        return;
    };
    a_child_is_spawned_works_and_is_revoked_with_its_parent(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn revoking_or_deleting_the_parent_revokes_every_descendant() {
    let s = Server::start().await;
    let (_, spawn_token) = planner(&s).await;
    let (body, worker_key) = child("planner-worker", &["agents:spawn", "read:db"], Some(600));
    let (status, _, created) = spawn(&s, Some(&spawn_token), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let worker_expiry = created["expires_at"].as_i64().unwrap();

    // A grandchild: within the child's permissions, never outliving it.
    let worker_spawn =
        access_token(&s, "planner-worker", &worker_key, AUTHORITY, "agents:spawn").await;
    assert!(claims(&worker_spawn).exp <= worker_expiry);
    let (body, helper_key) = child("planner-worker-helper", &["read:db"], Some(3600));
    let (status, _, created) = spawn(&s, Some(&worker_spawn), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["parent"], id("planner-worker"));
    assert_eq!(
        created["expires_at"].as_i64().unwrap(),
        worker_expiry,
        "capped at the parent's expiry"
    );
    let helper_token = access_token(
        &s,
        "planner-worker-helper",
        &helper_key,
        &id("database"),
        "read:db",
    )
    .await;

    // Revoking the planner as an agent reaches the grandchild.
    let (status, answer) = s
        .admin_json(
            Method::POST,
            "/v1/revocations",
            Some(json!({"kind": "agent", "value": "planner"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let feed = agent_feed(&s).await;
    for name in ["planner", "planner-worker", "planner-worker-helper"] {
        assert!(
            feed.contains(&(id(name), "revoke".to_owned())),
            "{name}: {feed:?}"
        );
    }
    assert_invalid_client(&s, "planner-worker", &worker_key, "disabled").await;
    assert_invalid_client(&s, "planner-worker-helper", &helper_key, "disabled").await;
    assert!(!active(&s, &helper_token).await);

    // Deleting a parent revokes too: a fresh planner, a fresh child.
    let (status, _) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/planner",
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let planner_key = SigningKey::generate_ed25519();
    let (status, _) = s
        .admin_json(Method::DELETE, "/v1/agents/planner", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = json!({"name": "planner", "permissions": ["agents:spawn", "read:db"], "public_jwk": planner_key.public_jwk().to_json()});
    let (status, _) = s.admin_json(Method::POST, "/v1/agents", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let spawn_token = access_token(&s, "planner", &planner_key, AUTHORITY, "agents:spawn").await;
    let (body, runner_key) = child("planner-runner", &["read:db"], Some(60));
    let (status, _, created) = spawn(&s, Some(&spawn_token), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    access_token(
        &s,
        "planner-runner",
        &runner_key,
        &id("database"),
        "read:db",
    )
    .await;
    let (status, _) = s
        .admin_json(Method::DELETE, "/v1/agents/planner", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_invalid_client(&s, "planner-runner", &runner_key, "disabled").await;
    assert_eq!(
        agent_feed(&s).await.last().unwrap(),
        &(id("planner-runner"), "revoke".to_owned())
    );
    s.stop().await;
}

#[tokio::test]
async fn an_expired_child_cannot_authenticate() {
    let s = Server::start().await;
    let (_, spawn_token) = planner(&s).await;
    let (body, key) = child("planner-brief", &["read:db"], Some(1));
    let (status, _, created) = spawn(&s, Some(&spawn_token), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let expires_at = created["expires_at"].as_i64().unwrap();
    // Possibly still within its second: if so, the token ends with it.
    let (status, issued) = s
        .token("planner-brief", &key, &id("database"), "read:db")
        .await;
    let token = (status == StatusCode::OK).then(|| {
        let token = issued["access_token"].as_str().unwrap().to_owned();
        assert!(claims(&token).exp <= expires_at);
        token
    });
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(unix_now() > expires_at);
    assert_invalid_client(&s, "planner-brief", &key, "expired").await;
    let (status, _, answer) = spawn(
        &s,
        Some(&spawn_token),
        &child("planner-fresh", &["read:db"], Some(60)).0,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the parent is unaffected: {answer}"
    );
    if let Some(token) = token {
        assert!(!active(&s, &token).await);
    }
    // An expired child is not revoked on the feed: its tokens simply ended.
    assert!(agent_feed(&s).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_expired_parent_cannot_spawn_and_its_token_is_refused() {
    let s = Server::start().await;
    let (_, spawn_token) = planner(&s).await;
    let (body, worker_key) = child("planner-worker", &["agents:spawn", "read:db"], Some(2));
    let (status, _, created) = spawn(&s, Some(&spawn_token), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let worker_spawn =
        access_token(&s, "planner-worker", &worker_key, AUTHORITY, "agents:spawn").await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let before = s.snapshot().await;
    let (status, _, answer) = spawn(
        &s,
        Some(&worker_spawn),
        &child("planner-worker-helper", &["read:db"], Some(60)).0,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], "invalid_token");
    assert_eq!(s.snapshot().await, before);
    s.stop().await;
}

/// What is refused, with which bearer and body, and how: status, error code
/// and a text the description must contain.
type Refusal<'a> = (
    &'a str,
    Option<&'a str>,
    Value,
    StatusCode,
    &'a str,
    &'a str,
);

#[tokio::test]
async fn spawn_refusals_name_the_rule_and_store_nothing() {
    let s = Server::start().await;
    let (planner_key, spawn_token) = planner(&s).await;
    let plain_key = s.register("plain", &["read:db"]).await;
    s.register("planner-taken", &[]).await;
    let audit_token = access_token(&s, "planner", &planner_key, AUTHORITY, "audit:write").await;
    let database_token =
        access_token(&s, "planner", &planner_key, &id("database"), "read:db").await;
    let plain_audit = access_token(&s, "plain", &plain_key, AUTHORITY, "audit:write").await;

    // An agent without agents:spawn cannot even get the scope.
    let (status, body) = s
        .token("plain", &plain_key, AUTHORITY, "agents:spawn")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope");

    let tampered = format!("{spawn_token}x");
    let ok = |name: &str| child(name, &["read:db"], Some(60)).0;
    let with = |field: &str, value: Value| {
        let mut body = ok("planner-x");
        body[field] = value;
        body
    };
    let without_expiry = {
        let mut body = ok("planner-x");
        body.as_object_mut().unwrap().remove("expires_in");
        body
    };
    let cases: Vec<Refusal<'_>> = vec![
        (
            "a permission the parent does not hold",
            Some(&spawn_token),
            child("planner-x", &["read:db", "write:db"], Some(60)).0,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "does not hold \"write:db\"",
        ),
        (
            "expires_in over an hour",
            Some(&spawn_token),
            with("expires_in", json!(3601)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "1 to 3600 seconds",
        ),
        (
            "expires_in of zero",
            Some(&spawn_token),
            with("expires_in", json!(0)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "1 to 3600 seconds",
        ),
        (
            "a negative expires_in",
            Some(&spawn_token),
            with("expires_in", json!(-5)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "1 to 3600 seconds",
        ),
        (
            "a fractional expires_in",
            Some(&spawn_token),
            with("expires_in", json!(1.5)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "JSON body is invalid",
        ),
        (
            "no expires_in",
            Some(&spawn_token),
            without_expiry,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "\"expires_in\" is required",
        ),
        (
            "a bearer opt-out the parent lacks",
            Some(&spawn_token),
            with("bearer_allowed", json!(true)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "bearer_allowed",
        ),
        (
            "another owner",
            Some(&spawn_token),
            with("owner", json!("team-b")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "parent's owner",
        ),
        (
            "a name outside the parent's namespace",
            Some(&spawn_token),
            ok("database"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "parent's namespace, \"planner-<label>\"",
        ),
        (
            "a taken name",
            Some(&spawn_token),
            ok("planner-taken"),
            StatusCode::CONFLICT,
            "conflict",
            "already exists",
        ),
        (
            "a token without agents:spawn",
            Some(&audit_token),
            ok("planner-x"),
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "agents:spawn",
        ),
        (
            "a token of an agent without agents:spawn",
            Some(&plain_audit),
            ok("planner-x"),
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "agents:spawn",
        ),
        (
            "a token for another audience",
            Some(&database_token),
            ok("planner-x"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token is for \"spiffe://agentauth.local/agent/database\"",
        ),
        (
            "a tampered token",
            Some(&tampered),
            ok("planner-x"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "",
        ),
        (
            "no token at all",
            None,
            ok("planner-x"),
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "agents:spawn",
        ),
    ];
    for (what, bearer, body, status, code, mentions) in cases {
        let before = s.snapshot().await;
        let (got, challenge, answer) = spawn(&s, bearer, &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"], code, "{what}: {answer}");
        let description = answer["error_description"].as_str().unwrap();
        assert!(
            description.contains(mentions),
            "{what}: \"{description}\" should mention \"{mentions}\""
        );
        if status == StatusCode::UNAUTHORIZED {
            assert!(challenge.unwrap().starts_with("Bearer"), "{what}");
        }
        assert_eq!(s.snapshot().await, before, "{what} changed the store");
    }

    // A child without agents:spawn cannot spawn in turn.
    let (body, worker_key) = child("planner-worker", &["read:db"], Some(60));
    let (status, _, answer) = spawn(&s, Some(&spawn_token), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, body) = s
        .token("planner-worker", &worker_key, AUTHORITY, "agents:spawn")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope");

    // Losing agents:spawn makes the parent's outstanding token useless.
    let (status, _) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/planner",
            Some(json!({"permissions": ["read:db"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = s.snapshot().await;
    let (status, _, answer) = spawn(&s, Some(&spawn_token), &ok("planner-y")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(s.snapshot().await, before);
    s.stop().await;
}

#[tokio::test]
async fn the_admin_may_register_an_agent_with_an_expiry() {
    let s = Server::start().await;
    let (body, key) = child("temp", &["read:db"], Some(120));
    s.register("database", &[]).await;
    let (status, created) = s.admin_json(Method::POST, "/v1/agents", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["parent"], Value::Null);
    let expires_at = created["expires_at"].as_i64().unwrap();
    assert!((expires_at - unix_now() - 120).abs() <= 2, "{created}");
    let token = access_token(&s, "temp", &key, &id("database"), "read:db").await;
    assert!(claims(&token).exp <= expires_at);
    let (status, created) = s
        .admin_json(Method::POST, "/v1/agents", Some(child("perm", &[], None).0))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["expires_at"], Value::Null);
    let before = s.snapshot().await;
    let (status, answer) = s
        .admin_json(
            Method::POST,
            "/v1/agents",
            Some(child("never", &[], Some(0)).0),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(s.snapshot().await, before);
    s.stop().await;
}
