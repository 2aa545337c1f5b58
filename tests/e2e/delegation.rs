//! Delegation by token exchange (RFC 8693) against the real binary: grants,
//! narrowing, the actor chain, tasks, cascading revocation and every refusal.

use agentauth_core::SigningKey;
use agentauth_sdk::{AccessToken, Client, SdkError};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, claims, id, scope, spiffe};

/// planner → executor → database, with grants along the chain.
struct Chain {
    server: Server,
    planner_key: SigningKey,
    executor_key: SigningKey,
    executor: Client,
}

impl Chain {
    async fn start(extra: &[&str]) -> Self {
        Self::on(Server::start_with(extra, &[]).await).await
    }

    /// The chain's agents and grants on `server`.
    async fn on(server: Server) -> Self {
        let planner_key = server.register("planner", &["read:db", "write:db"]).await;
        let executor_key = server.register("executor", &["read:db", "write:db"]).await;
        server.register("database", &[]).await;
        server.register("orders", &[]).await;
        let grants = [
            ("planner", "executor", json!(["read:db", "write:db"])),
            ("executor", "database", json!(["read:db"])),
        ];
        for (from, to, permissions) in grants {
            let path = format!("/v1/agents/{from}/delegations");
            let body = json!({"to": to, "permissions": permissions});
            let (status, answer) = server.admin_json(Method::POST, &path, Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{answer}");
        }
        let executor = server.client("executor", &executor_key);
        Self {
            server,
            planner_key,
            executor_key,
            executor,
        }
    }

    /// The planner's token for `audience`, in task `task-42` with a purpose.
    async fn planner_token(&self, audience: &str, scope: &str, expires_in: &str) -> String {
        let (status, body) = self
            .server
            .form_as(
                "planner",
                &self.planner_key,
                "/oauth/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", &id(audience)),
                    ("scope", scope),
                    ("expires_in", expires_in),
                    ("txn", "task-42"),
                    ("purpose", "monthly revenue report"),
                    (
                        "request_context",
                        "user asked: summarise last month's revenue",
                    ),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["txn"], "task-42");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn refusal(result: Result<AccessToken, SdkError>) -> (String, String) {
    match result {
        Err(SdkError::TokenRefused {
            error, description, ..
        }) => (error, description),
        Ok(_) => panic!("the exchange should have been refused"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn assert_refused(result: Result<AccessToken, SdkError>, code: &str, mentions: &str) {
    let (error, description) = refusal(result);
    assert_eq!(error, code, "{description}");
    assert!(
        description.contains(mentions),
        "\"{description}\" should mention \"{mentions}\""
    );
}

#[tokio::test]
async fn an_exchanged_token_keeps_subject_and_task_and_binds_the_actor() {
    let chain = Chain::start(&[]).await;
    let incoming = chain
        .planner_token("executor", "read:db write:db", "300")
        .await;
    let parent = claims(&incoming);
    let exchanged = chain
        .executor
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    let c = claims(&exchanged.token);
    assert_eq!(c.sub, id("planner"), "the subject stays the initiator");
    assert_eq!(c.client_id, id("executor"), "the presenter is the actor");
    assert_eq!(c.aud, id("database"));
    assert_eq!(c.scope.to_string(), "read:db");
    assert_eq!(c.txn.unwrap(), "task-42");
    assert_eq!(c.purpose.as_deref(), Some("monthly revenue report"));
    assert_eq!(
        c.rctx.as_deref(),
        Some("user asked: summarise last month's revenue")
    );
    assert_eq!(
        serde_json::to_value(&c.act).unwrap(),
        json!({"sub": id("executor"), "act": {"sub": id("planner")}})
    );
    assert_eq!(
        c.cnf.unwrap().jkt,
        chain.executor_key.public_jwk().thumbprint(),
        "proof of possession survives the hop"
    );
    assert!(c.exp <= parent.exp);
    assert_ne!(c.jti, parent.jti);

    // The hop is in the audit with its chain, task and purpose, and the task lists both hops in order.
    let (status, task) = chain
        .server
        .admin_json(Method::GET, "/v1/tasks/task-42", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let hops = task["hops"].as_array().unwrap();
    let kinds: Vec<&str> = hops.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["token.issued", "token.exchanged"]);
    assert_eq!(hops[1]["actor"], id("executor"));
    assert_eq!(hops[1]["audience"], id("database"));
    assert_eq!(
        hops[1]["chain"],
        format!("{} {}", id("executor"), id("planner"))
    );
    assert_eq!(hops[1]["purpose"], "monthly revenue report");
    assert_eq!(hops[1]["txn"], "task-42");
}

#[tokio::test]
async fn a_jwt_svid_minted_for_a_delegation_carries_its_subject_act_chain_and_task() {
    let chain = Chain::start(&[]).await;
    let incoming = chain.planner_token("executor", "read:db", "300").await;
    let exchanged = chain
        .executor
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    let token = claims(&exchanged.token);

    let svid = chain
        .executor
        .delegated_jwt_svid(&exchanged.token)
        .await
        .unwrap();
    let keys = chain.server.jwt_svid_keys().await;
    let now = agentauth_core::unix_now();
    let minted =
        agentauth_core::validate_jwt_svid(&svid.token, &keys, &id("database"), now).unwrap();
    assert_eq!(minted.sub.as_str(), id("planner"), "on whose behalf");
    assert_eq!(minted.act, token.act, "the chain, the executor acting");
    assert_eq!(minted.act.as_ref().unwrap().sub.as_str(), id("executor"));
    assert_eq!(minted.txn.unwrap(), "task-42");
    assert!(minted.exp <= token.exp, "it never outlives the delegation");
    assert_eq!(svid.expires_at, minted.exp);
    let issued = chain.server.audit_records("?kind=svid.issued").await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["txn"], "task-42", "{issued:?}");
    assert!(
        issued[0]["reason"].as_str().unwrap().contains("acting for"),
        "{issued:?}"
    );

    // A JWT-SVID speaking for a delegation authenticates no client.
    let (status, body) = chain
        .server
        .form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    agentauth_authority::JWT_SPIFFE_ASSERTION_TYPE,
                ),
                ("client_assertion", &svid.token),
                ("resource", &id("database")),
                ("scope", "read:db"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");

    // Only the acting agent's own delegated token, for its own audience.
    let planner = chain.server.client("planner", &chain.planner_key);
    let refused = |r: Result<agentauth_sdk::JwtSvid, SdkError>| match r {
        Err(SdkError::Refused {
            status,
            description,
            ..
        }) => (StatusCode::from_u16(status).unwrap(), description),
        Err(other) => panic!("should be refused by the authority: {other}"),
        Ok(_) => panic!("should be refused"),
    };
    let (status, body) = refused(planner.delegated_jwt_svid(&exchanged.token).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("issued to another agent"), "{body}");
    let (status, body) = refused(chain.executor.delegated_jwt_svid(&incoming).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("issued to another agent"), "{body}");
    let own = chain
        .executor
        .token(&spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    let (status, body) = refused(chain.executor.delegated_jwt_svid(&own.token).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("carries no delegation"), "{body}");
    let (status, body) = refused(chain.executor.delegated_jwt_svid("a.b.c").await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a live token"), "{body}");
    chain.server.stop().await;
}

#[tokio::test]
async fn a_delegated_token_never_outlives_its_parent() {
    let chain = Chain::start(&[]).await;
    let incoming = chain.planner_token("executor", "read:db", "20").await;
    let exchanged = chain
        .executor
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    assert!(claims(&exchanged.token).exp <= claims(&incoming).exp);
}

#[tokio::test]
async fn escalation_and_foreign_tokens_are_refused_with_the_rule_named() {
    let chain = Chain::start(&[]).await;
    let incoming = chain.planner_token("executor", "read:db", "300").await;
    // The planner's token does not carry write:db, so the executor cannot mint it.
    let beyond_subject = chain
        .executor
        .exchange(&incoming, &spiffe("database"), &scope("write:db"))
        .await;
    assert_refused(
        beyond_subject,
        "invalid_scope",
        "not in the subject token's scope",
    );
    // Even with write:db in hand, the executor's grant to the database is read-only.
    let wide = chain
        .planner_token("executor", "read:db write:db", "300")
        .await;
    let beyond_grant = chain
        .executor
        .exchange(&wide, &spiffe("database"), &scope("write:db"))
        .await;
    assert_refused(beyond_grant, "invalid_scope", "not in the delegation grant");
    // No grant from the executor to the orders agent.
    let no_grant = chain
        .executor
        .exchange(&incoming, &spiffe("orders"), &scope("read:db"))
        .await;
    assert_refused(no_grant, "invalid_target", "no delegation grant");
    // A token addressed to the database cannot be exchanged by the executor.
    let for_database = chain.planner_token("database", "read:db", "300").await;
    let foreign = chain
        .executor
        .exchange(&for_database, &spiffe("database"), &scope("read:db"))
        .await;
    assert_refused(foreign, "invalid_request", "addressed to");
    // Garbage and wrong token types.
    assert_refused(
        chain
            .executor
            .exchange("a.b.c", &spiffe("database"), &scope("read:db"))
            .await,
        "invalid_request",
        "subject token is invalid",
    );
    let (status, body) = chain
        .server
        .form(
            "/oauth/token",
            &[
                ("grant_type", agentauth_authority_exchange()),
                (
                    "client_assertion_type",
                    agentauth_core::CLIENT_ASSERTION_TYPE,
                ),
                (
                    "client_assertion",
                    &chain.server.assertion("executor", &chain.executor_key),
                ),
                ("subject_token", &incoming),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
                ("resource", &id("database")),
                ("scope", "read:db"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Each refusal is audited with the task it belonged to.
    let store = chain.server.store().await;
    let filter = agentauth_store::AuditFilter {
        kind: Some(agentauth_core::AuditKind::TokenRefused),
        ..Default::default()
    };
    let refused = store.audit_records(&filter).await.unwrap();
    assert!(refused.iter().filter(|r| r.event.txn == "task-42").count() >= 3);
}

fn agentauth_authority_exchange() -> &'static str {
    "urn:ietf:params:oauth:grant-type:token-exchange"
}

#[tokio::test]
async fn the_chain_depth_is_limited() {
    let chain = Chain::start(&["--max-delegation-depth", "2"]).await;
    let database_key = SigningKey::generate_ed25519();
    // Re-register nothing: give the database a grant onward to orders, and a key to act with.
    let (status, _) = chain
        .server
        .admin_json(Method::DELETE, "/v1/agents/database", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = json!({"name": "database", "permissions": ["read:db"], "public_jwk": database_key.public_jwk().to_json()});
    assert_eq!(
        chain
            .server
            .admin_json(Method::POST, "/v1/agents", Some(body))
            .await
            .0,
        StatusCode::CREATED
    );
    let grant = json!({"to": "orders", "permissions": ["read:db"]});
    assert_eq!(
        chain
            .server
            .admin_json(Method::POST, "/v1/agents/database/delegations", Some(grant))
            .await
            .0,
        StatusCode::CREATED
    );
    // The deletion removed the executor's grant to the old database: a new
    // agent of the name is granted afresh.
    let grant = json!({"to": "database", "permissions": ["read:db"]});
    assert_eq!(
        chain
            .server
            .admin_json(Method::POST, "/v1/agents/executor/delegations", Some(grant))
            .await
            .0,
        StatusCode::CREATED
    );

    let incoming = chain.planner_token("executor", "read:db", "300").await;
    let second = chain
        .executor
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    let database = chain.server.client("database", &database_key);
    let third = database
        .exchange(&second.token, &spiffe("orders"), &scope("read:db"))
        .await;
    assert_refused(third, "invalid_request", "limit is 2");
}

#[tokio::test]
async fn revoking_a_token_revokes_everything_exchanged_from_it() {
    let chain = Chain::start(&[]).await;
    let incoming = chain.planner_token("executor", "read:db", "300").await;
    let child = chain
        .executor
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    let root_jti = claims(&incoming).jti;
    let (status, _) = chain
        .server
        .admin_json(
            Method::POST,
            "/v1/revocations",
            Some(json!({"kind": "token", "value": root_jti})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for token in [&incoming, &child.token] {
        assert_eq!(
            chain.server.introspect(token).await,
            json!({"active": false})
        );
    }
    assert_refused(
        chain
            .executor
            .exchange(&incoming, &spiffe("database"), &scope("read:db"))
            .await,
        "invalid_request",
        "revoked",
    );
}

#[tokio::test]
async fn completing_a_task_stops_its_tokens_and_further_hops() {
    let chain = Chain::start(&[]).await;
    let incoming = chain.planner_token("executor", "read:db", "300").await;
    chain
        .executor
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();

    // Only the agent that started the task (or the admin) may complete it.
    let executor_token = chain
        .executor
        .fetch_token(
            &"spiffe://agentauth.local/authority".parse().unwrap(),
            &scope("tasks:complete"),
            None,
        )
        .await
        .unwrap();
    let complete = chain
        .server
        .http
        .post(format!("{}/v1/tasks/task-42/complete", chain.server.url));
    let response = chain
        .executor
        .send(complete, &executor_token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let planner = chain.server.client("planner", &chain.planner_key);
    let planner_token = planner
        .fetch_token(
            &"spiffe://agentauth.local/authority".parse().unwrap(),
            &scope("tasks:complete"),
            None,
        )
        .await
        .unwrap();
    let complete = chain
        .server
        .http
        .post(format!("{}/v1/tasks/task-42/complete", chain.server.url));
    let unsigned = complete
        .try_clone()
        .unwrap()
        .bearer_auth(&planner_token.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsigned.status(),
        StatusCode::UNAUTHORIZED,
        "the authority demands proof of possession too"
    );
    let response = planner.send(complete, &planner_token).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert_refused(
        chain
            .executor
            .exchange(&incoming, &spiffe("database"), &scope("read:db"))
            .await,
        "invalid_request",
        "task task-42 has been revoked",
    );
    let (_, task) = chain
        .server
        .admin_json(Method::GET, "/v1/tasks/task-42", None)
        .await;
    assert_eq!(task["revoked"], true);
    let kinds: Vec<&str> = task["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "token.issued",
            "token.exchanged",
            "task.completed",
            "token.refused"
        ]
    );
    let feed: Value = chain
        .server
        .http
        .get(format!("{}/v1/revocations?since=0", chain.server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = feed["revocations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["kind"].as_str(), last["subject"].as_str()),
        (Some("task"), Some("task-42"))
    );
    // A new token may not join a revoked task.
    let (status, body) = chain
        .server
        .form_as(
            "planner",
            &chain.planner_key,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", &id("executor")),
                ("scope", "read:db"),
                ("txn", "task-42"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, _) = chain
        .server
        .admin_json(Method::GET, "/v1/tasks/no-such-task", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delegation_grants_are_managed_and_checked() {
    let chain = Chain::start(&[]).await;
    let (status, body) = chain
        .server
        .admin_json(
            Method::POST,
            "/v1/agents/database/delegations",
            Some(json!({"to": "orders", "permissions": ["read:db"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, _) = chain
        .server
        .admin_json(
            Method::POST,
            "/v1/agents/planner/delegations",
            Some(json!({"to": "ghost", "permissions": ["read:db"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = chain
        .server
        .admin_json(Method::GET, "/v1/agents/executor/delegations", None)
        .await;
    assert_eq!(list["delegations"][0]["to"], id("database"));
    assert_eq!(list["delegations"][0]["permissions"], json!(["read:db"]));

    let incoming = chain.planner_token("executor", "read:db", "300").await;
    let (status, _) = chain
        .server
        .admin_json(
            Method::DELETE,
            "/v1/agents/executor/delegations/database",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_refused(
        chain
            .executor
            .exchange(&incoming, &spiffe("database"), &scope("read:db"))
            .await,
        "invalid_target",
        "no delegation grant",
    );
    let (status, _) = chain
        .server
        .admin_json(
            Method::DELETE,
            "/v1/agents/executor/delegations/database",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_actor_may_exchange_with_a_dpop_proof_and_gets_a_dpop_bound_token() {
    let chain = Chain::start(&[]).await;
    let incoming = chain.planner_token("executor", "read:db", "300").await;
    let executor = chain
        .server
        .client("executor", &chain.executor_key)
        .with_dpop();
    let exchanged = executor
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    let c = claims(&exchanged.token);
    assert_eq!(
        c.cnf.unwrap().jkt,
        chain.executor_key.public_jwk().thumbprint()
    );
    assert_eq!(
        serde_json::to_value(&c.act).unwrap(),
        json!({"sub": id("executor"), "act": {"sub": id("planner")}})
    );
    let store = chain.server.store().await;
    let filter = agentauth_store::AuditFilter {
        kind: Some(agentauth_core::AuditKind::TokenExchanged),
        ..Default::default()
    };
    let records = store.audit_records(&filter).await.unwrap();
    assert!(
        records[0].event.reason.contains("DPoP"),
        "{:?}",
        records[0].event.reason
    );
}

/// Rounds of a token's exchanges racing its revocation; each round staggers
/// the revocation a little more, so it lands before, among and after the
/// exchanges' commits.
async fn exchanges_racing_a_revocation_leave_no_live_child(chain: Chain) {
    const ROUNDS: u64 = 40;
    let mut children = Vec::new();
    let mut refused = 0;
    for round in 0..ROUNDS {
        let incoming = chain.planner_token("executor", "read:db", "300").await;
        let root = claims(&incoming).jti;
        let (database, read) = (spiffe("database"), scope("read:db"));
        let exchange = || chain.executor.exchange(&incoming, &database, &read);
        let revoke = async {
            tokio::time::sleep(std::time::Duration::from_micros(round * 250)).await;
            let body = json!({"kind": "token", "value": root});
            let (status, answer) = chain
                .server
                .admin_json(Method::POST, "/v1/revocations", Some(body))
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        };
        let (a, b, c, d, ()) = tokio::join!(exchange(), exchange(), exchange(), exchange(), revoke);
        for result in [a, b, c, d] {
            match result {
                Ok(child) => children.push(claims(&child.token).jti),
                Err(e) => {
                    let (error, description) = refusal(Err(e));
                    assert_eq!(error, "invalid_request");
                    assert!(description.contains("revoked"), "{description}");
                    refused += 1;
                }
            }
        }
        // Once the revocation has committed, no exchange of the token succeeds.
        assert_refused(exchange().await, "invalid_request", "revoked");
    }
    let mut revoked = std::collections::HashSet::new();
    let mut since = 0;
    loop {
        let page: Value = chain
            .server
            .http
            .get(format!("{}/v1/revocations?since={since}", chain.server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for entry in page["revocations"].as_array().unwrap() {
            if entry["kind"] == "token" {
                revoked.insert(entry["subject"].as_str().unwrap().to_owned());
            }
        }
        since = page["last_seq"].as_i64().unwrap();
        if page["more"] != true {
            break;
        }
    }
    let live: Vec<_> = children.iter().filter(|j| !revoked.contains(*j)).collect();
    assert!(
        live.is_empty(),
        "{} of {} exchanged tokens outlived their subject's revocation ({refused} exchanges refused)",
        live.len(),
        children.len()
    );
    assert!(
        !children.is_empty() && refused > 0,
        "the race was not run: {} children, {refused} refused",
        children.len()
    );
    chain.server.stop().await;
}

#[tokio::test]
async fn exchanges_racing_a_revocation_leave_no_live_child_on_sqlite() {
    exchanges_racing_a_revocation_leave_no_live_child(Chain::start(&[]).await).await;
}

#[tokio::test]
async fn exchanges_racing_a_revocation_leave_no_live_child_on_postgresql() {
    let Some(server) = Server::start_postgres().await else {
        return;
    };
    exchanges_racing_a_revocation_leave_no_live_child(Chain::on(server).await).await;
}
