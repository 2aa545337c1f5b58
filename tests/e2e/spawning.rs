//! Spawning has limits: a maximum depth below a registered agent and a
//! maximum number of live children per parent, each refused with the limit
//! named, and an ancestry that policy always sees whole.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Server, id};

#[tokio::test]
async fn spawning_deeper_than_the_default_depth_of_four_is_refused() {
    let s = Server::start().await;
    let mut parent = (
        "root".to_owned(),
        s.register("root", &["agents:spawn", "read:db"]).await,
    );
    for generation in 1..=4 {
        let name = format!("{}-g{generation}", parent.0);
        let (status, body, key) = s.spawn_child(&parent.0, &parent.1, &name).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "generation {generation}: {body}"
        );
        parent = (name, key);
    }
    let (status, facts) = s
        .admin_json(
            reqwest::Method::GET,
            &format!("/v1/policy/agents/{}", parent.0),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{facts}");
    assert_eq!(
        facts["ancestors"],
        json!(["root-g1-g2-g3", "root-g1-g2", "root-g1", "root"]),
        "every ancestor, up to the registered agent"
    );

    let before = s.snapshot().await;
    let name = format!("{}-g5", parent.0);
    let (status, body, _) = s.spawn_child(&parent.0, &parent.1, &name).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "the child would be generation 5 below a registered agent; max_spawn_depth is 4"
    );
    assert_eq!(s.snapshot().await.agents, before.agents);
    s.stop().await;
}

#[tokio::test]
async fn the_spawn_limits_are_settings_and_name_themselves_when_reached() {
    let s = Server::start_with(&["--max-spawn-depth", "1", "--max-live-children", "2"], &[]).await;
    let planner = s.register("planner", &["agents:spawn", "read:db"]).await;
    let (status, body, worker) = s.spawn_child("planner", &planner, "planner-a").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["parent"], id("planner"));

    let (status, body, _) = s.spawn_child("planner-a", &worker, "planner-a-x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error_description"],
        "the child would be generation 2 below a registered agent; max_spawn_depth is 1"
    );

    let (status, body, _) = s.spawn_child("planner", &planner, "planner-b").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let before = s.snapshot().await;
    let (status, body, _) = s.spawn_child("planner", &planner, "planner-c").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "the agent already has 2 live (active, unexpired) children; max_live_children is 2"
    );
    assert_eq!(s.snapshot().await.agents, before.agents);

    // A disabled child is no longer live: its place is free.
    let (status, body) = s
        .admin_json(
            reqwest::Method::PATCH,
            "/v1/agents/planner-b",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = s.spawn_child("planner", &planner, "planner-c").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.stop().await;
}
