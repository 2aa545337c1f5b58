//! Human approval against the real binary: a request a policy marks
//! `@approval("required")` waits (`authorization_pending`) until a person
//! approves or denies it, or it expires; the approval is bound to exactly
//! that request and used once; polling too fast is `slow_down`. People
//! decide under their own operator credentials, only for the group a policy
//! names.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
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

/// Operators' credentials, by server and name.
static OPERATORS: LazyLock<Mutex<HashMap<(String, String), String>>> =
    LazyLock::new(Mutex::default);

/// The credential of operator `name` in the finance group (which the
/// example payment policies name as approvers), added on first use.
async fn finance(s: &Server, name: &str) -> String {
    let key = (s.url.clone(), name.to_owned());
    if let Some(token) = OPERATORS.lock().unwrap().get(&key) {
        return token.clone();
    }
    let token = s.add_operator(name, &["finance"]).await;
    OPERATORS.lock().unwrap().insert(key, token.clone());
    token
}

/// A decision by the finance operator `body.by` (alice unless named).
async fn decide(s: &Server, approval: &str, verdict: &str, body: Value) -> (StatusCode, Value) {
    let by = body["by"].as_str().unwrap_or("alice").to_owned();
    let credential = finance(s, &by).await;
    s.json_as(
        &credential,
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
    assert_eq!(approved["actor"], "operator:alice");
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
    finance(&s, "bob").await;
    finance(&s, "carol").await;
    let before = s.snapshot().await;
    let (status, body) = decide(&s, &approval, "deny", json!({"by": "bob"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = decide(
        &s,
        &approval,
        "deny",
        json!({"by": "carol", "reason": "no", "extra": 1}),
    )
    .await;
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
    assert_eq!(denied["actor"], "operator:bob");
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
    let admin = finance(&s, "alice").await;
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
    let ask = |purpose: String| ask_to_pay(&s, "payer", &key, purpose);
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
    let (status, body) = decide(&s, &waiting, "approve", json!({"by": "alice"})).await;
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

/// `agent`'s request to pay the bank for `purpose`, which the example
/// policies hold for approval.
async fn ask_to_pay(
    s: &Server,
    agent: &str,
    key: &SigningKey,
    purpose: String,
) -> (StatusCode, Value) {
    let bank = id("bank");
    s.form_as(
        agent,
        key,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("resource", bank.as_str()),
            ("scope", "payments:create"),
            ("purpose", &purpose),
        ],
    )
    .await
}

/// A payment request with a request context and a lifetime.
async fn request_with(
    s: &Server,
    key: &SigningKey,
    context: &str,
    expires_in: &str,
    approval_id: Option<&str>,
) -> (StatusCode, Value) {
    let bank = id("bank");
    let mut params = vec![
        ("grant_type", "client_credentials"),
        ("resource", bank.as_str()),
        ("scope", "payments:refund"),
        ("purpose", "refund order 7"),
        ("request_context", context),
        ("expires_in", expires_in),
    ];
    if let Some(a) = approval_id {
        params.push(("approval_id", a));
    }
    s.form_as("payer", key, "/oauth/token", &params).await
}

#[tokio::test]
async fn an_approval_covers_exactly_the_request_context_and_lifetime_a_person_saw() {
    let (s, key) = start(&[]).await;
    let five = r#"{"amount":5,"currency":"EUR"}"#;
    let (_, body) = request_with(&s, &key, five, "60", None).await;
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let approval = body["approval_id"].as_str().unwrap().to_owned();
    let (_, shown) = s
        .admin_json(Method::GET, &format!("/v1/approvals/{approval}"), None)
        .await;
    assert_eq!(
        shown["request_context"], five,
        "the person sees the context"
    );
    assert_eq!(shown["lifetime"], 60, "and the lifetime");
    let (status, body) = decide(&s, &approval, "approve", json!({"reason": "small refund"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The approved refund of 5 EUR for 60 s is not one of 5000 EUR, nor one for an hour.
    let before = s.snapshot().await;
    let cases = [
        (
            r#"{"amount":5000,"currency":"EUR"}"#,
            "60",
            "request context",
        ),
        (five, "3600", "lifetime"),
        ("", "60", "request context"),
    ];
    for (context, lifetime, differs) in cases {
        let (status, body) = request_with(&s, &key, context, lifetime, Some(&approval)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["error"], "invalid_grant",
            "{context} {lifetime}: {body}"
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains(&format!("the {differs}")),
            "{description}"
        );
    }
    assert_eq!(
        s.snapshot().await.audit_head,
        before.audit_head + 3,
        "each refusal is audited; nothing else changed"
    );

    let (status, body) = request_with(&s, &key, five, "60", Some(&approval)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 60);
}

#[tokio::test]
async fn only_operators_of_the_named_group_decide_and_the_audit_names_them() {
    let (s, key) = start(&[]).await;
    let approval = pending(&s, &key).await;
    let ops = s.add_operator("oscar", &["ops"]).await;
    let before = s.snapshot().await;

    // The policy reserves payments for "finance": neither the admin
    // credential nor an operator of another group decides.
    let path = format!("/v1/approvals/{approval}/approve");
    for credential in [s.admin.clone(), ops.clone()] {
        let (status, body) = s
            .json_as(&credential, Method::POST, &path, Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "not_an_approver", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("finance"),
            "{body}"
        );
    }
    // An operator may list approvals, but has no admin rights.
    let (status, _) = s.json_as(&ops, Method::GET, "/v1/approvals", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.json_as(&ops, Method::GET, "/v1/agents", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A finance operator cannot decide under another's name.
    let (status, body) = decide(
        &s,
        &approval,
        "approve",
        json!({"by": "alice", "reason": "ok"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decided_by"], "alice");
    let mallory = finance(&s, "mallory").await;
    let (status, body) = s
        .json_as(
            &mallory,
            Method::POST,
            &format!("/v1/approvals/{approval}/deny"),
            Some(json!({"by": "alice", "reason": "framing alice"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("mallory"),
        "{body}"
    );

    let records = s.audit_records("?limit=1000").await;
    let approved = records
        .iter()
        .find(|r| r["kind"] == "approval.approved")
        .unwrap();
    assert_eq!(approved["actor"], "operator:alice");
    let added: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "operator.added")
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["oscar", "alice", "mallory"]);
    assert_eq!(
        s.snapshot().await.audit_head,
        before.audit_head + 3,
        "refused decisions write nothing: only alice's and mallory's addition and the approval"
    );

    // A removed operator's credential stops working at once.
    let (status, _) = s
        .admin_json(Method::DELETE, "/v1/operators/oscar", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.json_as(&ops, Method::GET, "/v1/approvals", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_actions_are_attributed_to_the_operator_who_took_them() {
    let s = Server::start().await;
    let root = s.add_operator("root-op", &["admin"]).await;
    let key = SigningKey::generate_ed25519();
    let (status, body) = s
        .json_as(
            &root,
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "worker", "permissions": ["read:db"], "public_jwk": key.public_jwk().to_json()})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = s
        .json_as(
            &root,
            Method::PATCH,
            "/v1/agents/worker",
            Some(json!({"description": "nightly"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let records = s.audit_records("?limit=1000").await;
    for kind in ["agent.created", "agent.updated"] {
        let record = records.iter().find(|r| r["kind"] == kind).unwrap();
        assert_eq!(record["actor"], "operator:root-op", "{record}");
    }
    // "admin" names the admin credential, never an operator.
    let (status, body) = s
        .json_as(
            &root,
            Method::POST,
            "/v1/operators",
            Some(json!({"name": "admin", "groups": ["finance"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Operators themselves are managed by whoever has the admin's rights.
    let (status, listed) = s.json_as(&root, Method::GET, "/v1/operators", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["operators"][0]["name"], "root-op");
    assert!(listed["operators"][0].get("operator_token").is_none());
}

#[tokio::test]
async fn pending_approvals_count_across_the_agents_an_agent_spawned() {
    // The spawn comes first: the example policies permit no spawning.
    let s = Server::start_with(&["--approval-interval-secs", "1"], &[]).await;
    let spender = s
        .register("spender", &["payments:create", "agents:spawn"])
        .await;
    let (status, body) = s
        .token(
            "spender",
            &spender,
            crate::support::AUTHORITY,
            "agents:spawn",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let spawn_token = body["access_token"].as_str().unwrap().to_owned();
    let child = SigningKey::generate_ed25519();
    let spawn = s.http.post(format!("{}/v1/agents", s.url)).json(&json!({
        "name": "spender-kid", "permissions": ["payments:create"], "expires_in": 600,
        "public_jwk": child.public_jwk().to_json()
    }));
    let response = crate::support::send_with_token(spawn, &spawn_token).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let key = s.register("payer", &["payments:create"]).await;
    s.register("bank", &[]).await;
    s.activate_examples().await;
    let ask = |agent: &'static str, key: SigningKey, purpose: String| {
        let s = &s;
        async move { ask_to_pay(s, agent, &key, purpose).await }
    };
    for n in 0..8 {
        let (_, body) = ask("spender", spender.clone(), format!("invoice {n}")).await;
        assert_eq!(body["error"], "authorization_pending", "{n}: {body}");
        let (_, body) = ask("spender-kid", child.clone(), format!("invoice {n}")).await;
        assert_eq!(body["error"], "authorization_pending", "{n}: {body}");
    }
    // Sixteen wait for the lineage: neither the parent nor its child may add one.
    for (agent, key) in [("spender-kid", child.clone()), ("spender", spender.clone())] {
        let (status, body) = ask(agent, key, "invoice 99".into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("spawned"),
            "{body}"
        );
    }
    // Another lineage is not affected.
    let (_, body) = request(&s, &key, "bank", "payments:create", None).await;
    assert_eq!(body["error"], "authorization_pending", "{body}");
}
