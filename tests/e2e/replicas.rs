//! Two `agentauth serve` replicas on one PostgreSQL behave as one authority:
//! a revocation written at one reaches a verifier fed by the other through
//! `LISTEN/NOTIFY`, tasks and the admin credential are shared, and the audit
//! log stays one hash chain under writes from both.

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
    let scratch = ScratchDatabase::for_test(test).await?;
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    let a = Server::spawn(&a_dir, Some(&scratch.url), &[], &[]);
    let b_dir: PathBuf = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    for file in ["master.key", "admin-token"] {
        std::fs::copy(a_dir.join(file), b_dir.join(file)).unwrap();
    }
    // One authority, one issuer: behind a load balancer both would be given
    // its URL; here B takes A's.
    let b = Server::spawn(&b_dir, Some(&scratch.url), &["--issuer", &a.url], &[]);
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
