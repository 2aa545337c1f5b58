//! Revocation-to-denial latency through the revocation stream (SSE).
//!
//! Starts an authority in-process (SQLite in a temporary directory, on
//! 127.0.0.1:0), registers a reader and a customer agent through the admin
//! API, and connects a `Verifier` for the customer that polls only every 60 s,
//! so only the stream can deliver revocations in time. Then N times (default
//! 1,000, after 20 unrecorded warm-up rounds):
//!
//! 1. the reader gets a fresh token, and a signed request with it passes the
//!    layer (`Router` + `Verifier::require`, driven by `tower::ServiceExt::oneshot`);
//! 2. the admin revokes it (`POST /oauth/revoke`, Bearer admin credential);
//! 3. the clock starts when the revocation is answered (committed), stops
//!    when the verifier has applied the entry (`applied`), and again when a
//!    freshly signed request with the token has been refused by the layer
//!    with the revocation check (`refused`, i.e. `applied` plus one request
//!    through the layer). `revoke+refused` starts before the revocation
//!    request instead, so it also holds the authority's write.
//!
//! Run: `cargo run --release -p agentauth-sdk --example revocation_latency [N [DATABASE_URL [REPLICAS]]]`
//! (a `postgres://` URL of an empty database runs the authority on PostgreSQL;
//! REPLICAS `2` starts a second authority on that database, with the same
//! master key and issuer, and feeds the verifier from it while tokens and
//! revocations go to the first: the revocation crosses replicas through
//! PostgreSQL `LISTEN/NOTIFY`).

use std::error::Error;
use std::time::{Duration, Instant};

use agentauth_authority::Config;
use agentauth_core::{AgentName, Scope, SigningKey, SpiffeId, TrustDomain};
use agentauth_sdk::{Client, Verifier, VerifierConfig};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PERMISSION: &str = "read:customer";
const HOST: &str = "customer.local";
const PATH: &str = "/api/customer";
const WARM_UP: usize = 20;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn agent_id(name: &str) -> Result<SpiffeId> {
    Ok(SpiffeId::agent(
        &TrustDomain::new("agentauth.local")?,
        &AgentName::new(name)?,
    ))
}

async fn register(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    name: &str,
    permissions: &[&str],
) -> Result<SigningKey> {
    let key = SigningKey::generate_ed25519();
    let response = http
        .post(format!("{url}/v1/agents"))
        .bearer_auth(admin)
        .json(&json!({"name": name, "permissions": permissions, "public_jwk": key.public_jwk().to_json()}))
        .send()
        .await?;
    if response.status() != StatusCode::CREATED {
        return Err(format!("registering {name}: {}", response.status()).into());
    }
    Ok(key)
}

/// A GET signed by the reader as its SDK client sends it, through the layer:
/// status and the failed check, if any.
async fn call(router: &Router, reader: &Client, token: &str) -> Result<(StatusCode, String)> {
    let mut signed = reader
        .http()
        .get(format!("http://{HOST}{PATH}"))
        .bearer_auth(token)
        .build()?;
    reader.sign(&mut signed)?;
    let mut request = Request::builder()
        .method(signed.method().clone())
        .uri(PATH)
        .header(http::header::HOST, HOST);
    for (name, value) in signed.headers() {
        request = request.header(name, value);
    }
    let response = router.clone().oneshot(request.body(Body::empty())?).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
    let check = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["check"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok((status, check))
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1000.0 / samples.len() as f64;
    println!(
        "{name:<16} n={:<5} p50 {:>7.3} ms   p90 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   mean {:>7.3} ms",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0),
        mean,
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1000,
    };
    let database_url = std::env::args().nth(2);
    let store = if database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let data_dir = tempfile::tempdir()?;
    let running = agentauth_authority::start(
        Config {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: data_dir.path().join("data"),
            database_url,
            ..Config::default()
        },
        None,
    )
    .await?;
    let url = format!("http://{}", running.addr);
    let admin = running.admin_token.clone().ok_or("not a first start")?;
    // A second replica on the same database, for the verifier.
    let replicas: usize = match std::env::args().nth(3) {
        Some(r) => r.parse()?,
        None => 1,
    };
    let second_dir = tempfile::tempdir()?;
    let second = match (replicas, running.issuer.clone()) {
        (1, _) => None,
        (2, issuer) if store == "PostgreSQL" => {
            let master = std::fs::read_to_string(data_dir.path().join("data/master.key"))?;
            Some(
                agentauth_authority::start(
                    Config {
                        listen: ([127, 0, 0, 1], 0).into(),
                        data_dir: second_dir.path().join("data"),
                        database_url: std::env::args().nth(2),
                        issuer: Some(issuer),
                        ..Config::default()
                    },
                    Some(master.trim().to_owned()),
                )
                .await?,
            )
        }
        _ => return Err("REPLICAS is 1, or 2 with a PostgreSQL URL".into()),
    };
    let verifier_url = second
        .as_ref()
        .map_or_else(|| url.clone(), |b| format!("http://{}", b.addr));
    println!(
        "revocations written at {url}, verifier fed by {verifier_url} ({} replica(s))",
        replicas
    );
    let http = reqwest::Client::new();
    let reader_key = register(&http, &url, &admin, "reader", &[PERMISSION]).await?;
    register(&http, &url, &admin, "customer", &[]).await?;

    let mut config = VerifierConfig::new(&verifier_url, agent_id("customer")?);
    config.revocation_poll = Duration::from_secs(60);
    let verifier = Verifier::connect(config).await?;
    let router = Router::new().route(
        PATH,
        get(|| async { "ok" }).layer(verifier.require(PERMISSION)),
    );
    let reader = Client::new(&url, agent_id("reader")?, reader_key);
    // Let the stream open before the first revocation.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut applied, mut refused, mut end_to_end) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..WARM_UP + n {
        let token = reader
            .fetch_token(&agent_id("customer")?, &Scope::parse(PERMISSION)?, None)
            .await?
            .token;
        let (status, check) = call(&router, &reader, &token).await?;
        if status != StatusCode::OK {
            return Err(format!("a fresh token was refused: {status} {check}").into());
        }
        let seq = verifier.last_applied_seq() + 1;
        let sent = Instant::now();
        let response = http
            .post(format!("{url}/oauth/revoke"))
            .bearer_auth(&admin)
            .form(&[("token", token.as_str())])
            .send()
            .await?;
        let committed = Instant::now();
        if response.status() != StatusCode::OK {
            return Err(format!("revoking answered {}", response.status()).into());
        }
        tokio::time::timeout(Duration::from_secs(10), verifier.wait_applied(seq))
            .await
            .map_err(|_| format!("revocation {seq} not applied within 10 s"))?;
        let seen = Instant::now();
        let (status, check) = call(&router, &reader, &token).await?;
        let denied = Instant::now();
        if (status, check.as_str()) != (StatusCode::UNAUTHORIZED, "revocation") {
            return Err(format!("a revoked token was answered {status} {check}").into());
        }
        if round >= WARM_UP {
            applied.push(seen - committed);
            refused.push(denied - committed);
            end_to_end.push(denied - sent);
        }
    }
    println!(
        "revocation-to-denial through the SSE stream, {n} revocations (poll interval 60 s), loopback, {store}:"
    );
    report("applied", applied);
    report("refused", refused);
    report("revoke+refused", end_to_end);
    drop(verifier);
    running.shutdown().await;
    Ok(())
}
