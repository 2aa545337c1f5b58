//! Two `agentauth serve` replicas on one PostgreSQL behave as one authority:
//! a revocation written at one reaches a verifier fed by the other through
//! `LISTEN/NOTIFY`, and so do policy activations, operators and the admin
//! credential; tasks and approvals are shared, and the audit log stays one
//! hash chain under writes from both.

use std::path::PathBuf;
use std::time::Duration;

use agentauth_sdk::{Verifier, VerifierConfig};
use agentauth_store::ScratchDatabase;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Server, command, output_within, scope, spiffe};

/// Replica A on a fresh scratch database, and B sharing its database,
/// master key, admin credential and issuer; `None` when PostgreSQL is unreachable.
async fn replicas(test: &str) -> Option<(Server, Server, ScratchDatabase, tempfile::TempDir)> {
    replicas_with(test, &[]).await
}

/// Like [`replicas`], with extra `serve` flags for both.
async fn replicas_with(
    test: &str,
    extra: &[&str],
) -> Option<(Server, Server, ScratchDatabase, tempfile::TempDir)> {
    let scratch = ScratchDatabase::for_test(test).await?;
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    let a = Server::spawn(&a_dir, Some(&scratch.url), extra, &[]);
    let b_dir: PathBuf = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    for file in ["master.key", "admin-token"] {
        std::fs::copy(a_dir.join(file), b_dir.join(file)).unwrap();
    }
    // One authority, one issuer: behind a load balancer both would be given
    // its URL; here B takes A's.
    let mut b_args = vec!["--issuer", &a.url];
    b_args.extend_from_slice(extra);
    let b = Server::spawn(&b_dir, Some(&scratch.url), &b_args, &[]);
    assert_eq!(a.admin, b.admin, "one admin credential");
    Some((a, b, scratch, dir))
}

// Multi-threaded: `Server::spawn` blocks its thread until the banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_at_one_replica_reaches_a_verifier_fed_by_the_other() {
    let Some((a, b, scratch, _dir)) = replicas("revocation_across_replicas").await else {
        return;
    };
    a.register("customer", &[]).await;
    let key = a.register("reader", &["read:customer"]).await;
    // Registered at A, known at B: its client authenticates there.
    let at_b = b.client("reader", &key);
    let at_a = a.client("reader", &key);
    let mut config = VerifierConfig::new(&b.url, spiffe("customer"));
    // Polling only every minute: the stream from B must deliver.
    config.revocation_poll = Duration::from_secs(60);
    let verifier = Verifier::connect(config).await.unwrap();
    let (audience, read) = (spiffe("customer"), scope("read:customer"));

    for round in 0..20 {
        let client = if round % 2 == 0 { &at_a } else { &at_b };
        let token = client.fetch_token(&audience, &read, None).await.unwrap();
        let seq = verifier.last_applied_seq() + 1;
        let response = a
            .http
            .post(format!("{}/oauth/revoke", a.url))
            .bearer_auth(&a.admin)
            .form(&[("token", token.token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::timeout(Duration::from_secs(10), verifier.wait_applied(seq))
            .await
            .unwrap_or_else(|_| panic!("revocation {seq} did not reach B's verifier"));
        // B's own introspection reads the shared database.
        assert_eq!(b.introspect(&token.token).await["active"], false);
    }
    assert_eq!(verifier.revoked_token_count(), 20);

    // A task started through A is completed through B, and its tokens stop
    // at A too.
    let started = at_a.fetch_token(&audience, &read, None).await.unwrap();
    let txn = crate::support::claims(&started.token)
        .txn
        .unwrap()
        .to_string();
    let (status, body) = b
        .admin_json(Method::POST, &format!("/v1/tasks/{txn}/complete"), None)
        .await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(a.introspect(&started.token).await["active"], false);

    drop((a, b));
    scratch.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_both_replicas_keep_one_audit_chain() {
    let Some((a, b, scratch, dir)) = replicas("audit_chain_across_replicas").await else {
        return;
    };
    let register = |s: &Server, prefix: &'static str| {
        let (url, admin) = (s.url.clone(), s.admin.clone());
        async move {
            let http = reqwest::Client::new();
            for i in 0..15 {
                let key = agentauth_core::SigningKey::generate_ed25519();
                let response = http
                    .post(format!("{url}/v1/agents"))
                    .bearer_auth(&admin)
                    .json(&json!({
                        "name": format!("{prefix}-{i}"),
                        "permissions": ["read:customer"],
                        "public_jwk": key.public_jwk().to_json(),
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
            }
        }
    };
    tokio::join!(register(&a, "from-a"), register(&b, "from-b"));
    let (_, list) = b.admin_json(Method::GET, "/v1/agents", None).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 30);

    let url = scratch.url.clone();
    let data_dir = dir.path().join("a");
    let out = tokio::task::spawn_blocking(move || {
        output_within(
            command()
                .args(["audit", "verify", "--database-url", &url, "--data-dir"])
                .arg(&data_dir),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("audit log intact: 30 records"), "{said}");
    drop((a, b));
    scratch.drop_database().await.unwrap();
}

/// The payer's token request for a payment at replica `s` (with an
/// assertion for the shared issuer, `issuer`), polling `approval` if given.
async fn pay(
    s: &Server,
    issuer: &str,
    key: &agentauth_core::SigningKey,
    approval: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let bank = crate::support::id("bank");
    let assertion = agentauth_core::ClientAssertionClaims::sign(
        key,
        &crate::support::id("payer"),
        issuer,
        agentauth_core::random_b64(16),
        agentauth_core::unix_now(),
    );
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("resource", bank.as_str()),
        ("scope", "payments:create"),
        ("purpose", "pay invoice 7"),
        (
            "client_assertion_type",
            agentauth_core::CLIENT_ASSERTION_TYPE,
        ),
        ("client_assertion", &assertion),
    ];
    if let Some(a) = approval {
        form.push(("approval_id", a));
    }
    s.form("/oauth/token", &form).await
}

/// Polls `check` every 50 ms until it holds; panics with `what` after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_operators_approvals_and_the_admin_credential_cross_replicas_by_notify() {
    // Re-reads only hourly: within the test, only a NOTIFY can carry a change.
    let flags = [
        "--replica-reread-secs",
        "3600",
        "--approval-interval-secs",
        "1",
    ];
    let Some((a, b, _scratch, _dir)) = replicas_with("changes_across_replicas", &flags).await
    else {
        return;
    };
    let key = a.register("payer", &["payments:create"]).await;
    a.register("bank", &[]).await;
    let (status, body) = pay(&b, &a.url, &key, None).await;
    assert_eq!(status, StatusCode::OK, "no policy is active yet: {body}");

    // A policy set activated at A decides at B.
    a.activate_examples().await;
    let approval = std::sync::Mutex::new(String::new());
    eventually(
        "the policy activated at A never took effect at B",
        || async {
            let (_, body) = pay(&b, &a.url, &key, None).await;
            *approval.lock().unwrap() = body["approval_id"].as_str().unwrap_or("").to_owned();
            body["error"] == "authorization_pending"
        },
    )
    .await;
    let approval = approval.into_inner().unwrap();

    // An operator added at A decides at B; the token is then issued at A.
    let alice = a.add_operator("alice", &["finance"]).await;
    let path = format!("/v1/approvals/{approval}/approve");
    eventually("the operator added at A was never known at B", || async {
        let (status, _) = b
            .json_as(&alice, Method::POST, &path, Some(json!({})))
            .await;
        status == StatusCode::OK
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = pay(&a, &a.url, &key, Some(&approval)).await;
    assert_eq!(status, StatusCode::OK, "the approval decided at B: {body}");
    let (_, used) = b
        .admin_json(Method::GET, &format!("/v1/approvals/{approval}"), None)
        .await;
    assert_eq!(used["status"], "used", "{used}");

    // The admin credential replaced at A is the only one B accepts.
    let (status, rotated) = a
        .admin_json(Method::POST, "/v1/admin/credential", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["admin_token"].as_str().unwrap().to_owned();
    eventually("B still accepts the replaced admin credential", || async {
        b.admin_json(Method::GET, "/v1/agents", None).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    let (status, _) = b.json_as(&new, Method::GET, "/v1/agents", None).await;
    assert_eq!(status, StatusCode::OK);
}
