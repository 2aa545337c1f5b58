//! Tasks belong to whoever started them: another agent cannot put an
//! existing `txn` into its own client_credentials request, nor complete
//! a task it did not start; it joins a task only by token exchange.

use agentauth_core::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, claims, id, scope, spiffe};

const AUTHORITY: &str = "spiffe://agentauth.local/authority";

/// A client_credentials request of `name` for the database in task `txn`.
async fn token_in_task(
    server: &Server,
    name: &str,
    key: &SigningKey,
    txn: Option<&str>,
) -> (StatusCode, Value) {
    let database = id("database");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("resource", database.as_str()),
        ("scope", "read:db"),
    ];
    if let Some(txn) = txn {
        form.push(("txn", txn));
    }
    server.form_as(name, key, "/oauth/token", &form).await
}

/// `name`'s attempt to complete `txn` with a `tasks:complete` token.
async fn complete_as(server: &Server, name: &str, key: &SigningKey, txn: &str) -> StatusCode {
    let client = server.client(name, key);
    let token = client
        .fetch_token(&AUTHORITY.parse().unwrap(), &scope("tasks:complete"), None)
        .await
        .unwrap();
    let request = server
        .http
        .post(format!("{}/v1/tasks/{txn}/complete", server.url));
    client.send(request, &token).await.unwrap().status()
}

#[tokio::test]
async fn another_agent_cannot_join_or_complete_a_task_it_did_not_start() {
    let server = Server::start().await;
    let planner = server.register("planner", &["read:db"]).await;
    let mallory = server.register("mallory", &["read:db"]).await;
    server.register("database", &[]).await;

    let (status, body) = token_in_task(&server, "planner", &planner, Some("task-owned")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let before = server.snapshot().await;
    let (status, body) = token_in_task(&server, "mallory", &mallory, Some("task-owned")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "task \"task-owned\" was started by another agent: an agent joins another's task only by token exchange"
    );
    let after = server.snapshot().await;
    assert_eq!(before.revocations, after.revocations);
    let issued = server.audit_records("?kind=token.issued").await;
    assert!(
        issued.iter().all(|r| r["actor"] != id("mallory")),
        "nothing was issued to mallory: {issued:?}"
    );

    assert_eq!(
        complete_as(&server, "mallory", &mallory, "task-owned").await,
        StatusCode::FORBIDDEN
    );
    let (_, task) = server
        .admin_json(Method::GET, "/v1/tasks/task-owned", None)
        .await;
    assert_eq!(task["revoked"], false, "{task}");
    assert_eq!(
        complete_as(&server, "planner", &planner, "task-owned").await,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn another_agent_joins_a_task_by_token_exchange_and_cannot_complete_it() {
    let server = Server::start().await;
    let planner = server.register("planner", &["read:db"]).await;
    let executor = server.register("executor", &["read:db"]).await;
    server.register("database", &[]).await;
    let (status, body) = server
        .admin_json(
            Method::POST,
            "/v1/agents/executor/delegations",
            Some(json!({"to": "database", "permissions": ["read:db"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let executor_id = id("executor");
    let (status, body) = server
        .form_as(
            "planner",
            &planner,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", executor_id.as_str()),
                ("scope", "read:db"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let incoming = body["access_token"].as_str().unwrap().to_owned();
    let txn = claims(&incoming).txn.unwrap().to_string();
    let random = txn.strip_prefix("txn-").expect("a minted task ID");
    assert!(random.len() >= 16, "at least 96 random bits: {txn}");

    let joined = server
        .client("executor", &executor)
        .exchange(&incoming, &spiffe("database"), &scope("read:db"))
        .await
        .unwrap();
    assert_eq!(
        claims(&joined.token).txn.unwrap().to_string(),
        txn,
        "exchange continues the task"
    );
    let (status, body) = token_in_task(&server, "executor", &executor, Some(&txn)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        complete_as(&server, "executor", &executor, &txn).await,
        StatusCode::FORBIDDEN
    );
    let (status, _) = server
        .admin_json(Method::POST, &format!("/v1/tasks/{txn}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "the admin completes any task");
    server.stop().await;
}
