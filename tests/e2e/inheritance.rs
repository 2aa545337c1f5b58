//! A name is not an inheritance: deleting an agent removes its grants, and a
//! new agent of the same name starts with nothing; spawned agents are named
//! in their parent's namespace and are enabled only under the agent that
//! spawned them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, id};

async fn grant(s: &Server, from: &str, to: &str) {
    let (status, body) = s
        .admin_json(
            Method::POST,
            &format!("/v1/agents/{from}/delegations"),
            Some(json!({"to": to, "permissions": ["read:db"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn grants(s: &Server, from: &str) -> Vec<Value> {
    let (status, body) = s
        .admin_json(Method::GET, &format!("/v1/agents/{from}/delegations"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["delegations"].as_array().unwrap().clone()
}

async fn delete(s: &Server, name: &str) {
    let (status, body) = s
        .admin_json(Method::DELETE, &format!("/v1/agents/{name}"), None)
        .await;
    assert!(status.is_success(), "{status}: {body}");
}

#[tokio::test]
async fn a_re_registered_name_inherits_no_delegation_grants() {
    let s = Server::start().await;
    s.register("alice", &["read:db"]).await;
    s.register("bob", &["read:db"]).await;
    s.register("database", &[]).await;
    grant(&s, "alice", "database").await;
    grant(&s, "bob", "alice").await;

    delete(&s, "alice").await;
    s.register("alice", &["read:db"]).await;
    assert_eq!(grants(&s, "alice").await, Vec::<Value>::new());
    assert!(
        grants(&s, "bob")
            .await
            .iter()
            .all(|g| g["to"] != id("alice")),
        "the grant to the old alice is gone too"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_spawned_agent_is_named_in_its_parents_namespace() {
    let s = Server::start().await;
    let planner = s.register("planner", &["agents:spawn", "read:db"]).await;
    s.register("other", &["read:db"]).await;

    let refusals = [
        (
            "billing",
            "a spawned agent is named in its parent's namespace, \"planner-<label>\", not \"billing\"",
        ),
        (
            "other-worker",
            "a spawned agent is named in its parent's namespace, \"planner-<label>\", not \"other-worker\"",
        ),
        (
            "planner",
            "a spawned agent is named in its parent's namespace, \"planner-<label>\", not \"planner\"",
        ),
        (
            "plannerx",
            "a spawned agent is named in its parent's namespace, \"planner-<label>\", not \"plannerx\"",
        ),
    ];
    for (name, description) in refusals {
        let before = s.snapshot().await;
        let (status, body, _) = s.spawn_child("planner", &planner, name).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"], "invalid_request", "{name}");
        assert_eq!(body["error_description"], description, "{name}");
        assert_eq!(s.snapshot().await.agents, before.agents, "{name}");
    }

    let (status, body, worker) = s.spawn_child("planner", &planner, "planner-worker").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["parent"], id("planner"));

    // planner-worker-x is planner-worker's to spawn, not planner's.
    let (status, body, _) = s.spawn_child("planner", &planner, "planner-worker-x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error_description"],
        "\"planner-worker-x\" lies in the namespace of \"planner-worker\": only \"planner-worker\" may spawn it"
    );
    let (status, body, _) = s
        .spawn_child("planner-worker", &worker, "planner-worker-x")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["parent"], id("planner-worker"));
    s.stop().await;
}

#[tokio::test]
async fn a_spawned_agent_is_not_enabled_under_a_new_agent_of_its_parents_name() {
    let s = Server::start().await;
    let planner = s.register("planner", &["agents:spawn", "read:db"]).await;
    let (status, body, _) = s.spawn_child("planner", &planner, "planner-worker").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    delete(&s, "planner").await;
    // A second registration in the same second would share the created_at.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    s.register("planner", &["agents:spawn", "read:db"]).await;

    let before = s.snapshot().await;
    let (status, body) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/planner-worker",
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("a spawned agent is enabled only under the agent that spawned it"),
        "{body}"
    );
    assert_eq!(s.snapshot().await, before);
    s.stop().await;
}
