//! Signing key rotation under load: `agentauth keys rotate`, twice, while an
//! agent behind the SDK's layer takes a stream of calls with fresh tokens.
//! No call may be refused, every key signs in its turn, and a token signed
//! by a retired key keeps working until it expires.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentauth_sdk::{Verifier, VerifierConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::customer_agent;
use crate::support::{Server, command, output_within, scope, spiffe};

/// Seconds a new key is published before it signs, in these tests.
const LEAD_SECS: u64 = 2;

/// The `kid` of a compact JWS.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&agentauth_core::b64url_decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// `agentauth keys ARGS` against the server, with its admin credential.
async fn keys(s: &Server, args: &[&str]) -> String {
    let mut cmd = command();
    cmd.env("AGENTAUTH_URL", &s.url)
        .env("AGENTAUTH_ADMIN_TOKEN", &s.admin)
        .arg("keys")
        .args(args);
    let out = tokio::task::spawn_blocking(move || output_within(&mut cmd, Duration::from_secs(30)))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keys {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The example customer agent behind a verifier made with `config`, on a
/// loopback port; the URL of the customer it serves.
async fn customer_behind(config: VerifierConfig) -> String {
    let verifier = Verifier::connect(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/api/customer/42", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, customer_agent::router(&verifier)).into_future());
    url
}

async fn jwks_kids(s: &Server) -> BTreeSet<String> {
    let jwks: Value = s
        .http
        .get(format!("{}/.well-known/jwks.json", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn two_rotations_under_load_refuse_no_call_and_each_key_signs_in_turn() {
    let lead = LEAD_SECS.to_string();
    let server = Server::start_with(
        &[
            "--signing-key-publish-lead-secs",
            &lead,
            "--signing-key-rotation-days",
            "0",
            // The callers take a token per call, faster than a client may.
            "--token-requests-per-client",
            "0",
        ],
        &[],
    )
    .await;
    server.register("customer", &[]).await;
    let reader_key = server.register("reader", &["read:customer"]).await;
    let reader = server.client("reader", &reader_key);
    let mut config = VerifierConfig::new(&server.url, spiffe("customer"));
    // Below the publish lead, as the operations guide asks of every verifier.
    // (The refresh is looked at on every revocation poll tick.)
    config.jwks_refresh = Duration::from_millis(500);
    config.revocation_poll = Duration::from_millis(200);
    let customer_url = customer_behind(config).await;

    let (audience, read) = (spiffe("customer"), scope("read:customer"));
    let first = reader.fetch_token(&audience, &read, None).await.unwrap();
    let first_kid = kid(&first.token);
    assert_eq!(
        jwks_kids(&server).await,
        BTreeSet::from([first_kid.clone()])
    );

    // Three callers, each taking a fresh token for every call.
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..3 {
        let (reader, stop) = (reader.clone(), stop.clone());
        let (audience, read, url) = (audience.clone(), read.clone(), customer_url.clone());
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let token = reader.fetch_token(&audience, &read, None).await.unwrap();
                let mut request = reader
                    .http()
                    .get(&url)
                    .bearer_auth(&token.token)
                    .build()
                    .unwrap();
                reader.sign(&mut request).unwrap();
                let response = reader.http().execute(request).await.unwrap();
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                seen.push((kid(&token.token), status, body));
            }
            seen
        }));
    }

    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let one = keys(&server, &["rotate"]).await;
    assert!(one.contains("published now, signing from"), "{one}");
    tokio::time::sleep(Duration::from_secs(LEAD_SECS) + Duration::from_millis(1500)).await;
    keys(&server, &["rotate"]).await;
    tokio::time::sleep(Duration::from_secs(LEAD_SECS) + Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(caller.await.unwrap());
    }
    assert!(started.elapsed() < Duration::from_secs(30));

    let refused: Vec<_> = calls
        .iter()
        .filter(|(_, status, _)| *status != StatusCode::OK)
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} calls refused, the first: {:?}",
        refused.len(),
        calls.len(),
        refused.first()
    );
    let kids: BTreeSet<_> = calls.iter().map(|(kid, _, _)| kid.clone()).collect();
    assert_eq!(kids.len(), 3, "each of the three keys signed: {kids:?}");
    assert!(kids.contains(&first_kid));

    // Every key is still published: the retired ones until the tokens they
    // signed have expired.
    assert_eq!(jwks_kids(&server).await, kids);
    let listed = keys(&server, &["list"]).await;
    let phases: Vec<&str> = listed
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(phases, ["retired", "retired", "signing"], "{listed}");
    assert!(
        listed.lines().next().unwrap().starts_with(&first_kid),
        "{listed}"
    );

    // The first token, signed by the first key, still works.
    let mut request = reader
        .http()
        .get(&customer_url)
        .bearer_auth(&first.token)
        .build()
        .unwrap();
    reader.sign(&mut request).unwrap();
    assert_eq!(
        reader.http().execute(request).await.unwrap().status(),
        StatusCode::OK
    );

    // Each key was audited as it was added, by whom.
    let added = server.audit_records("?kind=signing_key.added").await;
    // (The first key, made at first start, is part of setting up, like the
    // admin credential.)
    let actors: Vec<&str> = added.iter().map(|r| r["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, ["admin", "admin"], "{added:?}");
    for kid in kids.iter().filter(|k| **k != first_kid) {
        assert!(
            added.iter().any(|r| r["subject"] == kid.as_str()),
            "{added:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_rotation_at_once_signs_now_and_a_verifier_fetches_the_unknown_key() {
    let server = Server::start().await;
    server.register("customer", &[]).await;
    let reader_key = server.register("reader", &["read:customer"]).await;
    let reader = server.client("reader", &reader_key);
    // The default JWKS refresh (300 s): only the unknown kid makes it fetch.
    let customer_url = customer_behind(VerifierConfig::new(&server.url, spiffe("customer"))).await;
    let (audience, read) = (spiffe("customer"), scope("read:customer"));
    let before = reader.fetch_token(&audience, &read, None).await.unwrap();

    let said = keys(&server, &["rotate", "--now"]).await;
    // At once, or the next second if the first key began signing this one.
    if let Some(at) = said.split("signing from ").nth(1) {
        let at: i64 = at.trim().parse().unwrap();
        assert!(at <= agentauth_core::unix_now() + 1, "{said}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    } else {
        assert!(said.contains("signing now"), "{said}");
    }
    let after = reader.fetch_token(&audience, &read, None).await.unwrap();
    assert_ne!(kid(&after.token), kid(&before.token));
    assert!(said.contains(&kid(&after.token)), "{said}");

    // The verifier fetched its keys at connect; it refetches for an unknown
    // kid at most every 5 s, so the call is tried until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let mut request = reader
            .http()
            .get(&customer_url)
            .bearer_auth(&after.token)
            .build()
            .unwrap();
        reader.sign(&mut request).unwrap();
        let status = reader.http().execute(request).await.unwrap().status();
        if status == StatusCode::OK || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

/// `agentauth agent ARGS` against the server, with its admin credential.
async fn agent_cli(s: &Server, args: &[&str]) -> std::process::Output {
    let mut cmd = command();
    cmd.env("AGENTAUTH_URL", &s.url)
        .env("AGENTAUTH_ADMIN_TOKEN", &s.admin)
        .arg("agent")
        .args(args);
    tokio::task::spawn_blocking(move || output_within(&mut cmd, Duration::from_secs(30)))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_agent_key_rotation_keeps_the_old_key_for_its_grace_and_its_tokens_until_they_expire() {
    let s = Server::start().await;
    s.register("customer", &[]).await;
    let old_key = s.register("reader", &["read:customer"]).await;
    let customer = crate::support::id("customer");
    let (status, body) = s
        .token("reader", &old_key, &customer, "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let old_jkt = old_key.public_jwk().thumbprint().0;

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("reader.new.key.json");
    let key_out = key_file.to_str().unwrap();
    let out = agent_cli(
        &s,
        &[
            "rotate-key",
            "reader",
            "--key-out",
            key_out,
            "--grace-secs",
            "2",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwk: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let new_key = agentauth_core::SigningKey::from_private_jwk(&jwk).unwrap();
    let new_jkt = new_key.public_jwk().thumbprint().0;
    assert!(String::from_utf8_lossy(&out.stdout).contains(&new_jkt));
    let shown = s
        .admin_json(reqwest::Method::GET, "/v1/agents/reader", None)
        .await
        .1;
    assert_eq!(shown["jkt"], new_jkt.as_str());

    // Within the grace both keys authenticate; each token is bound to the
    // key that asked for it.
    let (status, body) = s
        .token("reader", &old_key, &customer, "read:customer")
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the old key within its grace: {body}"
    );
    let (status, body) = s
        .token("reader", &new_key, &customer, "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::support::claims(&new_token).cnf.unwrap().jkt.0,
        new_jkt
    );

    // After it, only the new key authenticates; the old key's tokens live on.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = s
        .token("reader", &old_key, &customer, "read:customer")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let (status, _) = s
        .token("reader", &new_key, &customer, "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.introspect(&old_token).await["active"], true);

    // Unless the old key is revoked.
    let (status, body) = s
        .admin_json(
            reqwest::Method::POST,
            "/v1/revocations",
            Some(serde_json::json!({"kind": "key", "value": old_jkt})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.introspect(&old_token).await["active"], false);
    assert_eq!(s.introspect(&new_token).await["active"], true);

    let rotated = s.audit_records("?kind=agent.key_rotated").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert!(rotated[0]["reason"].as_str().unwrap().contains(&new_jkt));

    // Refusals: one line each, and no key file left behind.
    let bad = dir.path().join("bad.key.json");
    for (args, says) in [
        (vec!["rotate-key", "nobody"], "not found"),
        (
            vec!["rotate-key", "reader", "--grace-secs", "100000"],
            "grace_secs",
        ),
    ] {
        let mut args = args;
        args.extend(["--key-out", bad.to_str().unwrap()]);
        let out = agent_cli(&s, &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{stderr}"
        );
        assert!(!bad.exists(), "the refused key was removed");
    }
    s.stop().await;
}

/// `agentauth ARGS` on the data dir `dir`, with `env`; the output.
async fn offline(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = command();
    cmd.args(args).arg("--data-dir").arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || output_within(&mut cmd, Duration::from_secs(60)))
        .await
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// Multi-threaded: `Server::spawn` blocks its thread until the banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_rotation_reseals_the_signing_keys_and_the_audit_log_still_verifies() {
    use std::os::unix::fs::PermissionsExt;

    let mut s = Server::start().await;
    s.register("customer", &[]).await;
    let key = s.register("reader", &["read:customer"]).await;
    let reader = s.client("reader", &key);
    let before = reader
        .fetch_token(&spiffe("customer"), &scope("read:customer"), None)
        .await
        .unwrap();
    let checkpoint = s.data_dir.with_extension("checkpoint");
    let mut cmd = command();
    cmd.env("AGENTAUTH_URL", &s.url)
        .env("AGENTAUTH_ADMIN_TOKEN", &s.admin)
        .args(["audit", "checkpoint", "--out"])
        .arg(&checkpoint);
    let out = tokio::task::spawn_blocking(move || output_within(&mut cmd, Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status();
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(true));

    let dir = s.data_dir.clone();
    let file = dir.join("master.key");
    let old = std::fs::read_to_string(&file).unwrap();
    // From the environment, the new key needs a file of its own.
    let out = offline(
        &dir,
        &["master-key", "rotate"],
        &[("AGENTAUTH_MASTER_KEY", &old)],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out).contains("--out"), "{}", text(&out));

    let out = offline(&dir, &["master-key", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 signing keys re-sealed"),
        "{}",
        text(&out)
    );
    let new = std::fs::read_to_string(&file).unwrap();
    assert_ne!(old, new);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!dir.join("master.key.new").exists());

    // The records written before still verify, checkpoint included; the
    // old key opens nothing any more.
    let checkpoint_arg = checkpoint.display().to_string();
    let verify = ["audit", "verify", "--checkpoint", checkpoint_arg.as_str()];
    let out = offline(&dir, &verify, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("audit log intact"), "{}", text(&out));
    let out = offline(
        &dir,
        &["audit", "verify"],
        &[("AGENTAUTH_MASTER_KEY", &old)],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));

    // The authority starts with the new key, signs with the same key, and
    // the token issued before still introspects active.
    let again = Server::spawn(&dir, None, &["--issuer", &s.url], &[]);
    let jwks: Value = again
        .http
        .get(format!("{}/.well-known/jwks.json", again.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid(&before.token));
    assert_eq!(again.introspect(&before.token).await["active"], true);
    let assertion = s.assertion("reader", &key);
    let (status, body) = again
        .token_with(&assertion, &crate::support::id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        kid(body["access_token"].as_str().unwrap()),
        kid(&before.token)
    );
    let rotated = again.audit_records("?kind=master_key.rotated").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    again.stop().await;
    let out = offline(&dir, &verify, &[]).await;
    assert!(out.status.success(), "{}", text(&out));

    // A rotation cut off after the store was re-sealed (the new key still
    // in master.key.new) is finished by the next one.
    let out = offline(&dir, &["master-key", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    let newest = std::fs::read_to_string(&file).unwrap();
    std::fs::write(dir.join("master.key.new"), &newest).unwrap();
    std::fs::write(&file, &new).unwrap();
    let out = offline(&dir, &["master-key", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("interrupted rotation was finished"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), newest);
    let out = offline(&dir, &verify, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
}
