//! Crash safety: `agentauth serve` killed with SIGKILL in the middle of
//! concurrent token requests. Every token it answered must still have its
//! issued-token and audit records after the restart, the audit chain must
//! verify, and no client assertion may buy a second token.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentauth_core::{AuditKind, ClientAssertionClaims, SigningKey, random_b64, unix_now};
use agentauth_store::{AuditFilter, ScratchDatabase};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Server, claims, command, id, output_within};

/// Concurrent clients, each with one request in flight at a time.
const WORKERS: usize = 8;
/// Tokens answered before the kill; the kill lands with requests in flight.
const ANSWERED_BEFORE_KILL: usize = 120;
/// The scope every request asks for, of the audience agent `ledger`.
const SCOPE: &str = "read:ledger";

/// One request of the load and what became of it.
struct Sent {
    assertion: String,
    outcome: Outcome,
}

enum Outcome {
    /// 200 with a token: its `jti`.
    Issued(String),
    /// Any other answer.
    Refused(StatusCode, Value),
    /// No answer: the process died first.
    Unanswered,
}

/// Token requests from `WORKERS` clients of agent `name`, each with a fresh
/// assertion, until `ANSWERED_BEFORE_KILL` tokens were answered; then the
/// server is killed and each client's last request goes unanswered.
async fn load_until_killed(
    server: &mut Server,
    issuer: &str,
    name: &str,
    key: &SigningKey,
) -> Vec<Sent> {
    let issued = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (issued, killed, http) = (issued.clone(), killed.clone(), http.clone());
        let (url, issuer, client, key) = (
            format!("{}/oauth/token", server.url),
            issuer.to_owned(),
            id(name),
            key.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            while !killed.load(Ordering::SeqCst) {
                let assertion =
                    ClientAssertionClaims::sign(&key, &client, &issuer, random_b64(16), unix_now());
                let form = [
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        agentauth_core::CLIENT_ASSERTION_TYPE,
                    ),
                    ("client_assertion", &assertion),
                    ("resource", &id("ledger")),
                    ("scope", SCOPE),
                ];
                let outcome = match http.post(&url).form(&form).send().await {
                    Err(_) => Outcome::Unanswered,
                    Ok(response) => match (response.status(), response.json::<Value>().await) {
                        (StatusCode::OK, Ok(body)) => {
                            let token = body["access_token"].as_str().unwrap();
                            issued.fetch_add(1, Ordering::SeqCst);
                            Outcome::Issued(claims(token).jti)
                        }
                        // Headers came but the body did not: no answer either.
                        (_, Err(_)) => Outcome::Unanswered,
                        (status, Ok(body)) => Outcome::Refused(status, body),
                    },
                };
                let stop = matches!(outcome, Outcome::Unanswered);
                sent.push(Sent { assertion, outcome });
                if stop {
                    break;
                }
            }
            sent
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while issued.load(Ordering::SeqCst) < ANSWERED_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "the load did not get {ANSWERED_BEFORE_KILL} tokens within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.crash();
    killed.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all
}

/// The `jti` of every issued-token record of `client`, read straight from
/// the database.
async fn issued_records(database_url: &str, client: &str) -> HashSet<String> {
    let sql = "SELECT jti FROM issued_tokens WHERE client_id = $1";
    let rows: Vec<(String,)> = if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let rows = sqlx::query_as(sql)
            .bind(client)
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{database_url}"))
            .await
            .unwrap();
        let rows = sqlx::query_as(sql)
            .bind(client)
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows
    };
    rows.into_iter().map(|(jti,)| jti).collect()
}

/// How many `token.issued` audit records name each token `jti`.
async fn audited_issuances(server: &Server) -> HashMap<String, usize> {
    let store = server.store().await;
    let mut counts = HashMap::new();
    let mut since = 0;
    loop {
        let filter = AuditFilter {
            kind: Some(AuditKind::TokenIssued),
            since,
            limit: 1000,
            ..AuditFilter::default()
        };
        let records = store.audit_records(&filter).await.unwrap();
        let Some(last) = records.last() else { break };
        since = last.seq;
        for record in &records {
            *counts.entry(record.event.subject.clone()).or_default() += 1;
        }
    }
    counts
}

/// `agentauth audit verify` over the server's store succeeds.
fn audit_verifies(data_dir: &Path, database_url: Option<&str>) {
    let mut cmd = command();
    cmd.args(["audit", "verify", "--data-dir"]).arg(data_dir);
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let out = output_within(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "audit verify failed after the crash: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One round: load, SIGKILL, restart on the same store, check. Returns the
/// restarted server.
async fn crash_round(
    mut server: Server,
    issuer: &str,
    database_url: Option<&str>,
    round: usize,
) -> Server {
    let name = format!("caller-{round}");
    let key = server.register(&name, &[SCOPE]).await;
    let sent = load_until_killed(&mut server, issuer, &name, &key).await;
    let data_dir = server.data_dir.clone();
    drop(server);

    let answered: Vec<&str> = sent
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Issued(jti) => Some(jti.as_str()),
            _ => None,
        })
        .collect();
    for s in &sent {
        if let Outcome::Refused(status, body) = &s.outcome {
            panic!("round {round}: a request before the kill was refused: {status} {body}");
        }
    }
    assert!(answered.len() >= ANSWERED_BEFORE_KILL);

    let restarted = Server::spawn(&data_dir, database_url, &["--issuer", issuer], &[]);
    let store_url = restarted.database_url.clone();

    // Every answered token has its issued-token record and exactly one audit record.
    let before_replay = issued_records(&store_url, &id(&name)).await;
    let audited = audited_issuances(&restarted).await;
    for jti in &answered {
        assert!(
            before_replay.contains(*jti),
            "round {round}: token {jti} was answered but its issued-token record is gone"
        );
        assert_eq!(
            audited.get(*jti),
            Some(&1),
            "round {round}: token {jti} was answered but not audited once"
        );
    }
    // Nothing was recorded that was not also audited, nor the other way round.
    for jti in &before_replay {
        assert_eq!(
            audited.get(jti),
            Some(&1),
            "round {round}: {jti} issued, not audited once"
        );
    }
    audit_verifies(&data_dir, database_url);

    // Each assertion sent before the crash, again: an answered one is a replay.
    for s in &sent {
        let (status, body) = restarted
            .token_with(&s.assertion, &id("ledger"), SCOPE)
            .await;
        match s.outcome {
            Outcome::Issued(_) => {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "round {round}: replay accepted: {body}"
                );
                assert_eq!(body["error"], "invalid_client");
            }
            _ => assert!(
                status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
                "round {round}: {status} {body}"
            ),
        }
    }
    // However the crash fell, no assertion bought two tokens.
    let after_replay = issued_records(&store_url, &id(&name)).await;
    assert!(
        after_replay.len() <= sent.len(),
        "round {round}: {} tokens from {} assertions",
        after_replay.len(),
        sent.len()
    );
    audit_verifies(&data_dir, database_url);
    restarted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_answered_token_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = Server::spawn(&data_dir, None, &[], &[]);
    server.register("ledger", &[]).await;
    let issuer = server.url.clone();
    for round in 1..=3 {
        server = crash_round(server, &issuer, None, round).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_answered_token_on_postgresql() {
    let Some(scratch) =
        ScratchDatabase::for_test("sigkill_under_load_loses_no_answered_token_on_postgresql").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::spawn(&data_dir, Some(&scratch.url), &[], &[]);
    server.register("ledger", &[]).await;
    let issuer = server.url.clone();
    let server = crash_round(server, &issuer, Some(&scratch.url), 1).await;
    server.stop().await;
    scratch.drop_database().await.unwrap();
}
