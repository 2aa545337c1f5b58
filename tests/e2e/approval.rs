//! Human approval against the real binary: a request a policy marks
//! `@approval("required")` waits (`authorization_pending`) until a person
//! approves or denies it, or it expires; the approval is bound to exactly
//! that request and used once; polling too fast is `slow_down`.

use std::time::Duration;

use agentauth_core::SigningKey;
use agentauth_sdk::SdkError;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, id, scope, spiffe};

/// An authority with the example policies active, a payments agent and two
/// targets; polls may come every second.
async fn start(extra: &[&str]) -> (Server, SigningKey) {
    start_polling_every("1", extra).await
}

/// Like [`start`], with approvals polled at most every `interval` seconds.
async fn start_polling_every(interval: &str, extra: &[&str]) -> (Server, SigningKey) {
    let mut args = vec!["--approval-interval-secs", interval];
    args.extend_from_slice(extra);
    let s = Server::start_with(&args, &[]).await;
    let key = s
        .register(
            "payer",
            &["payments:create", "payments:refund", "read:ledger"],
        )
        .await;
    s.register("bank", &[]).await;
    s.register("ledger", &[]).await;
    s.activate_examples().await;
    (s, key)
}

/// A token request for payments, with `approval_id` when polling.
async fn request(
    s: &Server,
    key: &SigningKey,
    audience: &str,
    scope: &str,
    approval_id: Option<&str>,
) -> (StatusCode, Value) {
    let audience = id(audience);
    let mut params = vec![
        ("grant_type", "client_credentials"),
        ("resource", audience.as_str()),
        ("scope", scope),
        ("purpose", "pay invoice 7"),
    ];
    if let Some(a) = approval_id {
        params.push(("approval_id", a));
    }
    s.form_as("payer", key, "/oauth/token", &params).await
}

/// The first request: pending, with an approval to poll.
async fn pending(s: &Server, key: &SigningKey) -> String {
    let (status, body) = request(s, key, "bank", "payments:create", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "authorization_pending", "{body}");
    assert_eq!(body["interval"], 1);
    assert_eq!(body["expires_in"], 600);
    body["approval_id"].as_str().unwrap().to_owned()
}

async fn decide(s: &Server, approval: &str, verdict: &str, body: Value) -> (StatusCode, Value) {
    s.admin_json(
        Method::POST,
        &format!("/v1/approvals/{approval}/{verdict}"),
        Some(body),
    )
    .await
}

async fn poll_after_interval(
    s: &Server,
    key: &SigningKey,
    audience: &str,
    scope: &str,
    approval: &str,
) -> (StatusCode, Value) {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    request(s, key, audience, scope, Some(approval)).await
}

#[tokio::test]
async fn an_approved_request_gets_its_token_once_and_the_decision_is_audited() {
    let (s, key) = start(&[]).await;
    let approval = pending(&s, &key).await;

    let (status, listed) = s
        .admin_json(Method::GET, "/v1/approvals?status=pending", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let entry = &listed["approvals"][0];
    assert_eq!(entry["id"], approval.as_str());
    assert_eq!(entry["agent"], id("payer"));
    assert_eq!(entry["audience"], id("bank"));
    assert_eq!(entry["scope"], "payments:create");
    assert_eq!(entry["purpose"], "pay invoice 7");
    assert_eq!(entry["policies"], json!(["payments-need-approval"]));
    assert_eq!(entry["approvers"], "finance");
    let txn = entry["txn"].as_str().unwrap().to_owned();

    // The same request again finds the same approval rather than a new one.
    let (_, again) = poll_after_interval(&s, &key, "bank", "payments:create", &approval).await;
    assert_eq!(again["error"], "authorization_pending");
    assert_eq!(again["approval_id"], approval.as_str());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, fresh) = request(&s, &key, "bank", "payments:create", None).await;
    assert_eq!(fresh["approval_id"], approval.as_str());

    let (status, decided) = decide(&s, &approval, "approve", json!({"by": "alice"})).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["decided_by"], "alice");

    let (status, body) = request(&s, &key, "bank", "payments:create", Some(&approval)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "payments:create");
    assert_eq!(
        body["txn"],
        txn.as_str(),
        "the token joins the approved task"
    );

    // Used once.
    let (status, body) = request(&s, &key, "bank", "payments:create", Some(&approval)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (_, shown) = s
        .admin_json(Method::GET, &format!("/v1/approvals/{approval}"), None)
        .await;
    assert_eq!(shown["status"], "used");

    let records = s.audit_records("?limit=1000").await;
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    let requested = kinds.iter().filter(|k| **k == "approval.requested").count();
    assert_eq!(
        requested, 1,
        "polls are not audited as new requests: {kinds:?}"
    );
    let approved = records
        .iter()
        .find(|r| r["kind"] == "approval.approved")
        .unwrap();
    assert_eq!(approved["actor"], "admin:alice");
    assert_eq!(approved["subject"], approval.as_str());
    let issued = records
        .iter()
        .find(|r| r["kind"] == "token.issued" && r["audience"] == id("bank").as_str())
        .unwrap();
    assert!(
        issued["reason"]
            .as_str()
            .unwrap()
            .contains("approved by alice"),
        "{issued}"
    );
}

#[tokio::test]
async fn polling_faster_than_the_interval_is_slow_down() {
    // A 5 s interval, so the immediate poll is early even on a loaded machine.
    let (s, key) = start_polling_every("5", &[]).await;
    let (_, first) = request(&s, &key, "bank", "payments:create", None).await;
    assert_eq!(first["error"], "authorization_pending", "{first}");
    assert_eq!(first["interval"], 5);
    let approval = first["approval_id"].as_str().unwrap().to_owned();
    let (status, body) = request(&s, &key, "bank", "payments:create", Some(&approval)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "slow_down", "{body}");
    assert_eq!(body["interval"], 5);
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let (_, body) = request(&s, &key, "bank", "payments:create", Some(&approval)).await;
    assert_eq!(body["error"], "authorization_pending", "{body}");
}

#[tokio::test]
async fn a_denied_request_is_access_denied_with_the_reason() {
    let (s, key) = start(&[]).await;
    let approval = pending(&s, &key).await;
    let before = s.snapshot().await;
    let (status, body) = decide(&s, &approval, "deny", json!({"by": "bob"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = decide(&s, &approval, "deny", json!({"reason": "no"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let unauthenticated = s
        .http
        .post(format!("{}/v1/approvals/{approval}/approve", s.url))
        .json(&json!({"by": "mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.snapshot().await,
        before,
        "refused decisions write nothing"
    );

    let (status, _) = decide(
        &s,
        &approval,
        "deny",
        json!({"by": "bob", "reason": "invoice 7 was paid already"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = poll_after_interval(&s, &key, "bank", "payments:create", &approval).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("access_denied"))
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("bob") && description.contains("paid already"),
        "{description}"
    );

    // Decided once.
    let (status, _) = decide(&s, &approval, "approve", json!({"by": "carol"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let denied = s
        .audit_records("?limit=1000")
        .await
        .into_iter()
        .find(|r| r["kind"] == "approval.denied")
        .unwrap();
    assert_eq!(denied["actor"], "admin:bob");
    assert!(denied["reason"].as_str().unwrap().contains("paid already"));
}

#[tokio::test]
async fn an_undecided_approval_expires() {
    let (s, key) = start(&["--approval-ttl-secs", "2"]).await;
    let (_, body) = request(&s, &key, "bank", "payments:create", None).await;
    let approval = body["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(body["expires_in"], 2);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = request(&s, &key, "bank", "payments:create", Some(&approval)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expired_token"))
    );
    let (status, _) = decide(&s, &approval, "approve", json!({"by": "alice"})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an expired approval cannot be approved"
    );
    let (_, shown) = s
        .admin_json(Method::GET, &format!("/v1/approvals/{approval}"), None)
        .await;
    assert_eq!(shown["status"], "expired");
}

#[tokio::test]
async fn an_approval_is_refused_for_any_other_request() {
    let (s, key) = start(&[]).await;
    let other = s.register("other", &["payments:create"]).await;
    let approval = pending(&s, &key).await;
    decide(&s, &approval, "approve", json!({"by": "alice"})).await;

    let cases = [
        ("bank", "payments:refund", "scope"),
        ("bank", "payments:create payments:refund", "scope"),
        ("ledger", "payments:create", "audience"),
    ];
    for (audience, scope, differs) in cases {
        let (status, body) = request(&s, &key, audience, scope, Some(&approval)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{audience} {scope}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains(&format!("the {differs} differs")),
            "{description}"
        );
    }
    // Another purpose is another request.
    let (_, body) = s
        .form_as(
            "payer",
            &key,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", &id("bank")),
                ("scope", "payments:create"),
                ("purpose", "pay invoice 8"),
                ("approval_id", &approval),
            ],
        )
        .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("purpose differs"),
        "{body}"
    );
    // Another agent cannot use it at all.
    let (_, body) = s
        .form_as(
            "other",
            &other,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", &id("bank")),
                ("scope", "payments:create"),
                ("purpose", "pay invoice 7"),
                ("approval_id", &approval),
            ],
        )
        .await;
    assert_eq!(body["error"], "invalid_grant");

    // None of that used it up.
    let (status, body) = request(&s, &key, "bank", "payments:create", Some(&approval)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_read_needs_no_approval_and_mixing_it_with_a_payment_waits_for_both() {
    let (s, key) = start(&[]).await;
    let (status, body) = request(&s, &key, "ledger", "read:ledger", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = request(&s, &key, "bank", "read:ledger payments:create", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending");
    let approval = body["approval_id"].as_str().unwrap();
    let (_, shown) = s
        .admin_json(Method::GET, &format!("/v1/approvals/{approval}"), None)
        .await;
    assert_eq!(shown["scope"], "payments:create read:ledger");
}

#[tokio::test]
async fn the_sdk_surfaces_a_pending_approval_and_waits_for_it() {
    let (s, key) = start(&[]).await;
    let client = s.client("payer", &key);
    let pending = match client
        .token(&spiffe("bank"), &scope("payments:create"))
        .await
    {
        Err(SdkError::ApprovalPending(p)) => p,
        other => panic!("expected a pending approval, got {other:?}"),
    };
    assert!(pending.approval_id.starts_with("apr-"));
    assert_eq!(pending.interval, 1);

    let url = s.url.clone();
    let admin = s.admin.clone();
    let id_to_approve = pending.approval_id.clone();
    let approver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        reqwest::Client::new()
            .post(format!("{url}/v1/approvals/{id_to_approve}/approve"))
            .bearer_auth(admin)
            .json(&json!({"by": "alice", "reason": "expected payment"}))
            .send()
            .await
            .unwrap()
            .status()
    });
    let token = client
        .wait_for_approval(&pending, Duration::from_secs(30))
        .await
        .expect("approved");
    assert_eq!(approver.await.unwrap(), StatusCode::OK);
    assert_eq!(token.scope, scope("payments:create"));
    // Cached: the next call needs no second approval.
    let again = client
        .token(&spiffe("bank"), &scope("payments:create"))
        .await
        .unwrap();
    assert_eq!(again.token, token.token);

    // A denial ends the wait with a typed error.
    client.clear_cache();
    let pending = match client
        .token(&spiffe("bank"), &scope("payments:create"))
        .await
    {
        Err(SdkError::ApprovalPending(p)) => p,
        other => panic!("expected a pending approval, got {other:?}"),
    };
    decide(
        &s,
        &pending.approval_id,
        "deny",
        json!({"by": "bob", "reason": "twice is enough"}),
    )
    .await;
    match client
        .wait_for_approval(&pending, Duration::from_secs(30))
        .await
    {
        Err(SdkError::ApprovalDenied(why)) => assert!(why.contains("twice is enough"), "{why}"),
        other => panic!("expected a denial, got {other:?}"),
    }
    // Giving up early is the caller's choice.
    let pending = match client
        .token(&spiffe("bank"), &scope("payments:refund"))
        .await
    {
        Err(SdkError::ApprovalPending(p)) => p,
        other => panic!("expected a pending approval, got {other:?}"),
    };
    match client
        .wait_for_approval(&pending, Duration::from_millis(500))
        .await
    {
        Err(SdkError::ApprovalTimedOut(id)) => assert_eq!(id, pending.approval_id),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn an_agent_may_have_only_sixteen_requests_waiting() {
    let (s, key) = start(&[]).await;
    let ask = |purpose: String| {
        let key = key.clone();
        let s = &s;
        async move {
            s.form_as(
                "payer",
                &key,
                "/oauth/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", &id("bank")),
                    ("scope", "payments:create"),
                    ("purpose", &purpose),
                ],
            )
            .await
        }
    };
    for n in 0..16 {
        let (_, body) = ask(format!("invoice {n}")).await;
        assert_eq!(body["error"], "authorization_pending", "{n}: {body}");
    }
    let before = s.snapshot().await;
    let (status, body) = ask("invoice 16".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (_, listed) = s
        .admin_json(Method::GET, "/v1/approvals?status=pending", None)
        .await;
    assert_eq!(listed["approvals"].as_array().unwrap().len(), 16);
    // The refusal itself is audited, nothing else is written.
    assert_eq!(s.snapshot().await.audit_head, before.audit_head + 1);
}

#[tokio::test]
async fn an_approval_for_a_deleted_agent_does_not_carry_over_to_a_new_agent_of_its_name() {
    let (s, key) = start(&[]).await;
    let approved = pending(&s, &key).await;
    let (status, body) = decide(&s, &approved, "approve", json!({"by": "alice"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, waiting) = request(&s, &key, "ledger", "payments:refund", None).await;
    let waiting = waiting["approval_id"].as_str().unwrap().to_owned();

    let (status, body) = s.admin_json(Method::DELETE, "/v1/agents/payer", None).await;
    assert!(status.is_success(), "{status}: {body}");
    let key = s
        .register(
            "payer",
            &["payments:create", "payments:refund", "read:ledger"],
        )
        .await;

    let (status, body) = request(&s, &key, "bank", "payments:create", Some(&approved)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "expired_token", "{body}");
    let (status, body) = s
        .admin_json(
            Method::POST,
            &format!("/v1/approvals/{waiting}/approve"),
            Some(json!({"by": "alice"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a pending approval expired: {body}"
    );
    let (_, fresh) = request(&s, &key, "ledger", "payments:refund", None).await;
    assert_eq!(fresh["error"], "authorization_pending", "{fresh}");
    assert_ne!(
        fresh["approval_id"],
        waiting.as_str(),
        "a new request, a new approval"
    );
}
