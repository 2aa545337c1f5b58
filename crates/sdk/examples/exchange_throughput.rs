//! Token-exchange throughput against an in-process authority on SQLite,
//! next to client_credentials issuance measured the same way in the same run.
//!
//! `cargo run --release -p agentauth-sdk --example exchange_throughput [SECONDS [CONCURRENCY]]`
//!
//! Each request signs a fresh client assertion (and the authority verifies it,
//! the subject token, the grant, then signs and stores the new token in one
//! transaction with its audit record), so both figures include one Ed25519
//! signature on the client side and two or three verifications plus one
//! signature on the authority side, on the same 2 cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentauth_authority::Config;
use agentauth_core::{AgentName, SigningKey, SpiffeId, TrustDomain};
use agentauth_sdk::Client;
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn id(name: &str) -> Result<SpiffeId> {
    Ok(SpiffeId::agent(
        &TrustDomain::new("agentauth.local")?,
        &AgentName::new(name)?,
    ))
}

/// Runs `work` from `concurrency` tasks for `seconds`; returns (ok/s, p50, p99, errors).
async fn load<F, Fut>(seconds: u64, concurrency: usize, work: F) -> (f64, Duration, Duration, u64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (work, errors) = (work.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                if work().await {
                    latencies.push(started.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (
        all.len() as f64 / seconds as f64,
        pick(0.5),
        pick(0.99),
        errors.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let config = Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: dir.path().join("data"),
        // Throughput, not the 429 path: no rate limits.
        token_requests_per_address: 0,
        token_requests_per_client: 0,
        ..Config::default()
    };
    let authority = agentauth_authority::start(config, None)
        .await
        .map_err(|e| e.detail())?;
    let admin = authority.admin_token.clone().ok_or("no admin credential")?;
    let url = authority.issuer.clone();
    let http = reqwest::Client::new();
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate_ed25519()).collect();
    for (name, key, permissions) in [
        ("planner", &keys[0], json!(["read:db"])),
        ("executor", &keys[1], json!(["read:db"])),
        ("database", &keys[2], json!([])),
    ] {
        let body = json!({"name": name, "permissions": permissions, "public_jwk": key.public_jwk().to_json()});
        http.post(format!("{url}/v1/agents"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }
    for (from, to) in [("planner", "executor"), ("executor", "database")] {
        let body = json!({"to": to, "permissions": ["read:db"]});
        http.post(format!("{url}/v1/agents/{from}/delegations"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }
    let planner = Client::new(&url, id("planner")?, keys[0].clone());
    let executor = Client::new(&url, id("executor")?, keys[1].clone());
    let subject = planner
        .fetch_token(&id("executor")?, &scope("read:db"), Some(3600))
        .await?
        .token;
    let (executor_target, database) = (id("executor")?, id("database")?);

    println!(
        "{seconds} s per measurement, {concurrency} concurrent requests, SQLite, authority and client in one process"
    );
    let issuing = planner.clone();
    let (cc, cc50, cc99, cc_err) = load(seconds, concurrency, move || {
        let (c, aud) = (issuing.clone(), executor_target.clone());
        async move { c.fetch_token(&aud, &scope("read:db"), None).await.is_ok() }
    })
    .await;
    println!("client_credentials: {cc:.0} tokens/s, p50 {cc50:?}, p99 {cc99:?}, errors {cc_err}");
    let (ex, ex50, ex99, ex_err) = load(seconds, concurrency, move || {
        let (c, s, aud) = (executor.clone(), subject.clone(), database.clone());
        async move { c.exchange(&s, &aud, &scope("read:db")).await.is_ok() }
    })
    .await;
    println!(
        "token exchange:     {ex:.0} exchanges/s, p50 {ex50:?}, p99 {ex99:?}, errors {ex_err}"
    );
    println!("exchange ÷ client_credentials throughput: {:.2}", ex / cc);
    authority.shutdown().await;
    Ok(())
}

/// A scope written in this file, known to be valid.
fn scope(text: &str) -> agentauth_core::Scope {
    agentauth_core::Scope::parse(text).expect("the scopes written here are valid")
}
