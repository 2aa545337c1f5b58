//! Policy as code against the real binary: versioned Cedar policy sets,
//! refusal of invalid sets with positions, activation and rollback, the
//! active set served to verifiers, dry runs, and the decision every token
//! issue and exchange goes through.

use agentauth_core::SigningKey;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, claims, id, scope, spiffe};

async fn versions(s: &Server) -> Vec<Value> {
    let (status, body) = s.admin_json(Method::GET, "/v1/policies", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["versions"].as_array().unwrap().clone()
}

fn active_version(list: &[Value]) -> Option<i64> {
    list.iter()
        .find(|v| v["active"] == json!(true))
        .and_then(|v| v["version"].as_i64())
}

const PERMIT_READS: &str =
    "@id(\"reads\")\npermit (principal, action in Action::\"read\", resource);\n";

#[tokio::test]
async fn an_invalid_set_is_refused_with_file_line_and_column_and_the_active_version_stays() {
    let s = Server::start().await;
    let (status, v1) = s
        .load_policies(&[("reads.cedar", PERMIT_READS)], true)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    assert_eq!(v1["version"], 1);
    let before = s.snapshot().await;

    let broken = "// a comment\n\npermit (principal, action, resource)\nwhen { context.delegation_depth == \"deep\" };\n";
    let (status, body) = s
        .load_policies(
            &[("reads.cedar", PERMIT_READS), ("broken.cedar", broken)],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_policy");
    let problem = &body["problems"][0];
    assert_eq!(problem["file"], "broken.cedar", "{body}");
    assert_eq!(problem["line"], 4, "{body}");
    assert!(problem["column"].as_u64().unwrap() > 1, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("broken.cedar:4:"),
        "{body}"
    );

    let syntax = s
        .load_policies(
            &[(
                "syntax.cedar",
                "permit (principal, action, resource) when { 1 + };",
            )],
            false,
        )
        .await;
    assert_eq!(syntax.0, StatusCode::BAD_REQUEST);
    assert_eq!(syntax.1["problems"][0]["line"], 1, "{}", syntax.1);

    assert_eq!(s.snapshot().await, before, "a refused set writes nothing");
    let list = versions(&s).await;
    assert_eq!(list.len(), 1);
    assert_eq!(active_version(&list), Some(1));
}

#[tokio::test]
async fn versions_are_listed_shown_activated_and_rolled_back() {
    let s = Server::start().await;
    let key = s
        .register("reader", &["read:customer", "write:customer"])
        .await;
    s.register("customer", &[]).await;
    let writes = "@id(\"writes\")\npermit (principal, action in Action::\"write\", resource);\n";
    let (_, v1) = s
        .load_policies(&[("reads.cedar", PERMIT_READS)], true)
        .await;
    let (_, v2) = s.load_policies(&[("writes.cedar", writes)], false).await;
    assert_eq!(
        (v1["version"].as_i64(), v2["version"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(v2["policies"][0]["id"], "writes");

    let list = versions(&s).await;
    assert_eq!(
        list.iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(active_version(&list), Some(1));

    let (status, shown) = s.admin_json(Method::GET, "/v1/policies/2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["files"][0]["name"], "writes.cedar");
    assert_eq!(shown["files"][0]["text"], writes);

    let scope_of = |body: &Value| body["scope"].as_str().unwrap_or("").to_owned();
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(
        (status, scope_of(&body)),
        (StatusCode::OK, "read:customer".into())
    );
    let (status, body) = s
        .token("reader", &key, &id("customer"), "write:customer")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    let (status, _) = s
        .admin_json(Method::POST, "/v1/policies/2/activate", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(active_version(&versions(&s).await), Some(2));
    let (status, _) = s
        .token("reader", &key, &id("customer"), "write:customer")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Rollback.
    let (status, _) = s
        .admin_json(Method::POST, "/v1/policies/1/activate", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK);

    let before = s.snapshot().await;
    let (status, body) = s
        .admin_json(Method::POST, "/v1/policies/9/activate", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = s
        .admin_json(Method::POST, "/v1/policies/x/activate", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(s.snapshot().await, before);
    assert_eq!(active_version(&versions(&s).await), Some(1));

    // Every activation is announced on the feed and audited.
    let feed = s.feed().await;
    let announced: Vec<&str> = feed
        .iter()
        .filter(|r| r["kind"] == "policy")
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(announced, ["1", "2", "1"]);
    let activations = s
        .audit_records("?limit=1000")
        .await
        .into_iter()
        .filter(|r| r["kind"] == "policy.activated")
        .count();
    assert_eq!(activations, 3);

    // The policy API is the admin's.
    let response = s
        .http
        .get(format!("{}/v1/policies", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn issuance_narrows_the_scope_to_what_policy_permits_and_names_the_forbidding_policy() {
    let s = Server::start_with(&["--environment", "production"], &[]).await;
    let key = s
        .register(
            "reader",
            &["read:customer", "write:customer", "admin:purge"],
        )
        .await;
    s.register("customer", &[]).await;
    let files = [
        ("reads.cedar", PERMIT_READS),
        (
            "writes.cedar",
            "@id(\"writes\") permit (principal, action in Action::\"write\", resource);\n\
             @id(\"no-production-writes\") forbid (principal, action in Action::\"write\", resource) when { context.environment == \"production\" };\n",
        ),
    ];
    let (status, body) = s.load_policies(&files, true).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = s
        .token(
            "reader",
            &key,
            &id("customer"),
            "read:customer write:customer admin:purge",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "read:customer");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())
            .scope
            .to_string(),
        "read:customer"
    );

    let (status, body) = s
        .token("reader", &key, &id("customer"), "write:customer")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("no-production-writes"),
        "{description}"
    );

    let (_, body) = s
        .token("reader", &key, &id("customer"), "admin:purge")
        .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no policy permits"),
        "{body}"
    );

    let issued = s
        .audit_records("?limit=1000")
        .await
        .into_iter()
        .find(|r| r["kind"] == "token.issued")
        .unwrap();
    let reason = issued["reason"].as_str().unwrap();
    assert!(reason.contains("policy version 1"), "{reason}");
    assert!(reason.contains("narrowed"), "{reason}");

    // In another environment the same set permits the write.
    let staging = Server::start_with(&["--environment", "staging"], &[]).await;
    let key = staging.register("reader", &["write:customer"]).await;
    staging.register("customer", &[]).await;
    staging.load_policies(&files, true).await;
    let (status, _) = staging
        .token("reader", &key, &id("customer"), "write:customer")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn without_an_active_set_registry_permissions_alone_decide() {
    let s = Server::start().await;
    let key = s.register("reader", &["admin:purge"]).await;
    s.register("customer", &[]).await;
    // Loaded but not activated: still off.
    s.load_policies(&[("reads.cedar", PERMIT_READS)], false)
        .await;
    let (status, body) = s
        .token("reader", &key, &id("customer"), "admin:purge")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn housekeeping_scopes_for_the_authority_are_not_subject_to_policy() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.activate_examples().await;
    let (status, body) = s
        .token(
            "reader",
            &key,
            "spiffe://agentauth.local/authority",
            "audit:write tasks:complete",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The planner's token for the executor.
async fn incoming(s: &Server, planner: &SigningKey) -> String {
    let (status, body) = s
        .token("planner", planner, &id("executor"), "read:db")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `actor` exchanges `subject` for a token to the database.
async fn exchange(s: &Server, actor: &SigningKey, subject: &str) -> (StatusCode, Value) {
    exchange_as(s, "executor", actor, subject).await
}

async fn exchange_as(
    s: &Server,
    name: &str,
    actor: &SigningKey,
    subject: &str,
) -> (StatusCode, Value) {
    s.form_as(
        name,
        actor,
        "/oauth/token",
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("resource", &id("database")),
            ("scope", "read:db"),
        ],
    )
    .await
}

#[tokio::test]
async fn exchange_is_decided_for_the_actor_with_the_chain_and_its_tags() {
    let s = Server::start().await;
    let planner = s.register("planner", &["read:db"]).await;
    let executor = s.register("executor", &["read:db"]).await;
    s.register("database", &[]).await;
    let (status, body) = s
        .admin_json(
            Method::POST,
            "/v1/agents/executor/delegations",
            Some(json!({"to": "database", "permissions": ["read:db"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let files = [(
        "delegation.cedar",
        "@id(\"reads\") permit (principal, action in Action::\"read\", resource);\n\
         @id(\"no-relay-by-sandboxed\") forbid (principal, action, resource)\n\
         when { principal.tags.contains(\"sandboxed\") && context.delegation_depth > 0 && context.chain.contains(Agent::\"planner\") };\n",
    )];
    let (status, body) = s.load_policies(&files, true).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = exchange(&s, &executor, &incoming(&s, &planner).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/executor",
            Some(json!({"tags": ["sandboxed"]})),
        )
        .await;
    assert_eq!(
        (status, body["tags"].clone()),
        (StatusCode::OK, json!(["sandboxed"]))
    );
    let (status, body) = exchange(&s, &executor, &incoming(&s, &planner).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no-relay-by-sandboxed"),
        "{body}"
    );
}

#[tokio::test]
async fn an_ephemeral_agent_may_not_delegate_under_the_example_policies() {
    let s = Server::start().await;
    let parent = s.register("planner", &["agents:spawn", "read:db"]).await;
    s.register("database", &[]).await;
    let (status, body) = s
        .token(
            "planner",
            &parent,
            "spiffe://agentauth.local/authority",
            "agents:spawn",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let spawn_token = body["access_token"].as_str().unwrap().to_owned();
    let child = SigningKey::generate_ed25519();
    let request = s.http.post(format!("{}/v1/agents", s.url)).json(&json!({
        "name": "planner-worker", "permissions": ["read:db"], "expires_in": 600,
        "public_jwk": child.public_jwk().to_json()
    }));
    let response = crate::support::send_with_token(request, &spawn_token).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, body) = s
        .admin_json(
            Method::POST,
            "/v1/agents/planner-worker/delegations",
            Some(json!({"to": "database", "permissions": ["read:db"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.activate_examples().await;
    let anonymous = s
        .http
        .get(format!("{}/v1/policy/agents/planner-worker", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, facts) = s
        .admin_json(Method::GET, "/v1/policy/agents/planner-worker", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{facts}");
    assert_eq!(facts["ephemeral"], true);
    assert_eq!(facts["parent"], "planner");
    assert_eq!(facts["ancestors"], json!(["planner"]));

    // The ephemeral worker may read first-hand ...
    let (status, body) = s
        .token("planner-worker", &child, &id("database"), "read:db")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... but may not pass on what it received.
    let (status, body) = s
        .token("planner", &parent, &id("planner-worker"), "read:db")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let subject = body["access_token"].as_str().unwrap().to_owned();
    let (status, body) = exchange_as(&s, "planner-worker", &child, &subject).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("ephemeral-agents-may-not-delegate"),
        "{body}"
    );
}

#[tokio::test]
async fn the_active_set_is_served_to_verifiers_with_an_etag() {
    let s = Server::start().await;
    let url = format!("{}/v1/policy", s.url);
    let off: Value = s.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(off, json!({"version": null, "active": false}));

    s.load_policies(&[("reads.cedar", PERMIT_READS)], true)
        .await;
    let response = s.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["files"][0]["text"], PERMIT_READS);

    let response = s
        .http
        .get(&url)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    s.load_policies(&[("other.cedar", PERMIT_READS)], true)
        .await;
    let response = s
        .http
        .get(&url)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(response.headers()[ETAG].to_str().unwrap(), etag);
}

#[tokio::test]
async fn a_dry_run_names_the_deciding_policies_and_stores_nothing() {
    let s = Server::start().await;
    s.register("reader", &["payments:create"]).await;
    s.register("customer", &[]).await;
    s.activate_examples().await;
    let before = s.snapshot().await;
    let run = |action: &str, context: Value| {
        let body = json!({"principal": "reader", "action": action, "resource": "customer", "context": context});
        s.admin_json(Method::POST, "/v1/policies/test", Some(body))
    };
    let (status, body) = run("payments:create", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"]["decision"], "needs_approval");
    assert_eq!(body["decision"]["approvers"], "finance");
    assert_eq!(
        body["decision"]["policies"],
        json!(["payments-need-approval"])
    );

    let (_, body) = run("admin:purge", json!({})).await;
    assert_eq!(body["decision"]["decision"], "deny");
    assert_eq!(body["decision"]["policies"], json!([]));

    let (_, body) = run("write:orders", json!({"delegation_depth": 3})).await;
    assert_eq!(body["decision"]["decision"], "deny");
    assert_eq!(
        body["decision"]["policies"],
        json!(["deep-delegation-only-reads"])
    );

    let (status, body) = run("read:x", json!({"colour": "red"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Files given inline are decided without being stored.
    let body = json!({"principal": "reader", "action": "read:x", "resource": "customer",
        "files": [{"name": "r.cedar", "text": PERMIT_READS}]});
    let (status, body) = s
        .admin_json(Method::POST, "/v1/policies/test", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"]["decision"], "permit");
    assert_eq!(body["version"], Value::Null);
    assert_eq!(s.snapshot().await, before);
}

/// The customer agent's routes behind the layer, each telling the policy
/// something different about itself.
async fn guarded_customer(s: &Server) -> (String, agentauth_sdk::Verifier) {
    use axum::routing::get;
    let customer = s.register("customer", &[]).await;
    let mut config = agentauth_sdk::VerifierConfig::new(
        &s.url,
        agentauth_core::SpiffeId::parse(&id("customer")).unwrap(),
    );
    config.revocation_poll = std::time::Duration::from_millis(200);
    config.environment = "production".into();
    let verifier = agentauth_sdk::Verifier::connect(config)
        .await
        .unwrap()
        .with_audit(s.client("customer", &customer));
    let app = axum::Router::new()
        .route(
            "/profile",
            get(|| async { "profile" }).layer(verifier.require("read:customer")),
        )
        .route(
            "/secret",
            get(|| async { "secret" }).layer(verifier.require("read:customer").sensitivity("high")),
        )
        .route(
            "/invoices/{id}",
            get(|| async { "invoice" }).layer(verifier.require("read:invoice").resource("invoice")),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .into_future(),
    );
    (url, verifier)
}

#[tokio::test]
async fn the_layer_decides_with_the_route_context_and_follows_new_versions() {
    let s = Server::start().await;
    let reader_key = s
        .register("reader", &["read:customer", "read:invoice"])
        .await;
    let v1 = "@id(\"reads\") permit (principal, action in Action::\"read\", resource);\n\
        @id(\"high-needs-finance\") forbid (principal, action, resource)\n\
        when { context.sensitivity == \"high\" && !principal.tags.contains(\"finance\") };\n\
        @id(\"invoices-from-loopback-in-production\") forbid (principal, action, resource is Resource)\n\
        when { resource.kind == \"invoice\" && resource in Agent::\"customer\" && \n\
               !(context.client_ip.isLoopback() && context.environment == \"production\") };\n\
        @id(\"invoice-7-closed\") forbid (principal, action, resource == Resource::\"/invoices/7\");\n";
    s.load_policies(&[("v1.cedar", v1)], true).await;
    let (url, verifier) = guarded_customer(&s).await;
    assert_eq!(verifier.policy_version(), Some(1));
    let reader = s.client("reader", &reader_key);
    let call = |path: &str| {
        let request = s.http.get(format!("{url}{path}"));
        let reader = reader.clone();
        async move {
            let response = reader
                .call(
                    request,
                    &spiffe("customer"),
                    &scope("read:customer read:invoice"),
                )
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(call("/profile").await.0, StatusCode::OK);
    assert_eq!(call("/invoices/42").await.0, StatusCode::OK);
    // The typed resource is the decoded path, however the path is spelled.
    for path in ["/invoices/7", "/invoices/%37"] {
        let (status, body) = call(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("invoice-7-closed"),
            "{body}"
        );
    }
    let (status, body) = call("/secret").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["check"], "policy", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("high-needs-finance"),
        "{body}"
    );

    // A new version reaches the layer through the revocation feed.
    let v2 = "@id(\"reads\") permit (principal, action in Action::\"read\", resource);\n\
        @id(\"profiles-closed\") forbid (principal, action == Action::\"read:customer\", resource);\n";
    s.load_policies(&[("v2.cedar", v2)], true).await;
    let started = std::time::Instant::now();
    while verifier.policy_version() != Some(2) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "v2 never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, body) = call("/profile").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("profiles-closed"),
        "{body}"
    );
    assert_eq!(call("/secret").await.0, StatusCode::FORBIDDEN);
    assert_eq!(call("/invoices/42").await.0, StatusCode::OK);

    // Rolled back, the layer follows again.
    s.admin_json(Method::POST, "/v1/policies/1/activate", None)
        .await;
    let started = std::time::Instant::now();
    while verifier.policy_version() != Some(1) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "rollback never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(call("/profile").await.0, StatusCode::OK);
}

#[tokio::test]
async fn what_policy_knows_of_an_agent_is_for_agents_and_the_admin_only() {
    let s = Server::start().await;
    let reader_key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let facts = format!("{}/v1/policy/agents/customer", s.url);

    // Anonymous: refused, and it cannot tell a missing agent from a present one.
    for name in ["customer", "nobody"] {
        let response = s
            .http
            .get(format!("{}/v1/policy/agents/{name}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
    }

    // An agent's token for the authority with `policy:read` reads them.
    let authority = crate::support::AUTHORITY;
    let (status, body) = s
        .token("reader", &reader_key, authority, "policy:read")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let response = crate::support::send_with_token(s.http.get(&facts), &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["cache-control"],
        "private, max-age=60",
        "shared caches must not keep it"
    );
    let shown: Value = response.json().await.unwrap();
    assert_eq!(shown["name"], "customer");

    // A token for the authority without `policy:read` is not enough.
    let (status, body) = s
        .token("reader", &reader_key, authority, "audit:write")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let response = crate::support::send_with_token(s.http.get(&facts), &token).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_verifier_without_its_agents_client_refuses_while_a_policy_set_is_active() {
    use axum::routing::get;
    let s = Server::start().await;
    let reader_key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    s.load_policies(&[("reads.cedar", PERMIT_READS)], true)
        .await;
    let config = agentauth_sdk::VerifierConfig::new(&s.url, spiffe("customer"));
    // No with_client / with_audit: it cannot ask what policy needs to know.
    let verifier = agentauth_sdk::Verifier::connect(config).await.unwrap();
    let app = axum::Router::new().route(
        "/profile",
        get(|| async { "profile" }).layer(verifier.require("read:customer")),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    let response = s
        .client("reader", &reader_key)
        .call(
            s.http.get(format!("{url}/profile")),
            &spiffe("customer"),
            &scope("read:customer"),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["check"], "policy", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Verifier::with_client"),
        "{body}"
    );
}
