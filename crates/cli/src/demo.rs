//! `agentauth demo`: the seed's two-agent scenario, in-process on loopback
//! ports over real HTTP, with a table of expected and actual outcomes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentauth_authority::Config;
use agentauth_core::{AgentName, Scope, SigningKey, SpiffeId, TrustDomain};
use agentauth_sdk::{Client, SdkError, Verifier, VerifierConfig};
use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

// The demo runs the very code of the examples, so they cannot drift apart.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../examples/customer_agent.rs"]
mod customer_agent;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../examples/reader_agent.rs"]
mod reader_agent;

/// Options of `agentauth demo` (none yet: everything is temporary and local).
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {}

/// One row of the result table.
struct Step {
    name: &'static str,
    expected: String,
    got: String,
}

/// The admin side of the demo, over the authority's HTTP API.
struct Admin {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Admin {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success(),
            "admin call {path} failed: {status} {value}"
        );
        Ok(value)
    }

    async fn register(
        &self,
        name: &str,
        permissions: &[&str],
        key: &SigningKey,
    ) -> anyhow::Result<()> {
        let body = json!({"name": name, "permissions": permissions, "public_jwk": key.public_jwk().to_json()});
        self.send(reqwest::Method::POST, "/v1/agents", body)
            .await
            .map(|_| ())
    }

    async fn patch(&self, name: &str, body: Value) -> anyhow::Result<()> {
        self.send(reqwest::Method::PATCH, &format!("/v1/agents/{name}"), body)
            .await
            .map(|_| ())
    }
}

/// "200", or the status with the failed check the layer named.
async fn outcome(result: Result<reqwest::Response, SdkError>) -> String {
    match result {
        Ok(r) if r.status().is_success() => r.status().as_u16().to_string(),
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            format!("{status} {}", body["check"].as_str().unwrap_or("?"))
        }
        Err(SdkError::PermissionNotHeld(p)) => format!("refused locally ({p})"),
        Err(SdkError::TokenRefused { error, .. }) => format!("refused: {error}"),
        Err(e) => format!("error: {e}"),
    }
}

pub(crate) async fn run(_: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        ..Config::default()
    };
    let authority = agentauth_authority::start(config, None)
        .await
        .context("starting the authority")?;
    let url = authority.issuer.clone();
    let admin = Admin {
        http: reqwest::Client::new(),
        url: url.clone(),
        token: authority
            .admin_token
            .clone()
            .context("a fresh authority prints its admin credential")?,
    };
    println!(
        "authority on {url} (temporary data dir {})",
        data_dir.display()
    );

    let domain = TrustDomain::new("agentauth.local")?;
    let id = |name: &str| -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::agent(&domain, &AgentName::new(name)?))
    };
    let (customer_key, reader_key, orders_key) = (
        SigningKey::generate_ed25519(),
        SigningKey::generate_ed25519(),
        SigningKey::generate_ed25519(),
    );
    admin.register("customer", &[], &customer_key).await?;
    admin
        .register("reader", &["read:customer"], &reader_key)
        .await?;
    admin.register("orders", &[], &orders_key).await?;

    // The customer agent: the example's router behind a verifier with 1 s leeway
    // (so the expiry step needs no long wait) that polls revocations twice a second.
    let mut verifier_config = VerifierConfig::new(&url, id("customer")?);
    verifier_config.leeway_secs = 1;
    verifier_config.revocation_poll = Duration::from_millis(500);
    let verifier = Verifier::connect(verifier_config)
        .await?
        .with_audit(Client::new(&url, id("customer")?, customer_key));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let customer_url = format!("http://{}", listener.local_addr()?);
    let server =
        tokio::spawn(axum::serve(listener, customer_agent::router(&verifier)).into_future());
    println!("customer agent on {customer_url}\n");

    let customer = id("customer")?;
    let reader = Client::new(&url, id("reader")?, reader_key.clone());
    let mut steps = Vec::new();
    let mut step = |name, expected: &str, got: String| {
        steps.push(Step {
            name,
            expected: expected.into(),
            got,
        })
    };

    step(
        "reader reads customer 42",
        "200",
        outcome(reader_agent::read_customer(&reader, &customer_url, &customer, 42).await).await,
    );

    let careful = Client::new(&url, id("reader")?, reader_key.clone())
        .with_permissions(Scope::parse("read:customer")?);
    let write = careful
        .http()
        .post(format!("{customer_url}/api/customer"))
        .json(&json!({"name": "Eve"}));
    step(
        "reader writes (early client-side check)",
        "refused locally (write:customer)",
        outcome(
            careful
                .call(write, customer.as_str(), "write:customer")
                .await,
        )
        .await,
    );

    admin
        .patch("reader", json!({"permissions": ["read:orders"]}))
        .await?;
    step(
        "token for a permission no longer held",
        "refused: invalid_scope",
        token_outcome(
            reader
                .fetch_token(customer.as_str(), "read:customer", None)
                .await,
        ),
    );
    let get = reader.http().get(format!("{customer_url}/api/customer/42"));
    step(
        "read:customer removed, early check bypassed",
        "403 permission",
        outcome(reader.call(get, customer.as_str(), "read:orders").await).await,
    );
    admin
        .patch("reader", json!({"permissions": ["read:customer"]}))
        .await?;

    let write = reader
        .http()
        .post(format!("{customer_url}/api/customer"))
        .json(&json!({"name": "Eve"}));
    step(
        "reader writes with a read token",
        "403 permission",
        outcome(reader.call(write, customer.as_str(), "read:customer").await).await,
    );

    let get = reader.http().get(format!("{customer_url}/api/customer/42"));
    step(
        "token for another audience (orders)",
        "401 audience",
        outcome(
            reader
                .call(get, id("orders")?.as_str(), "read:customer")
                .await,
        )
        .await,
    );

    let short = reader
        .fetch_token(customer.as_str(), "read:customer", Some(1))
        .await?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let expired = reader
        .send(
            reader.http().get(format!("{customer_url}/api/customer/42")),
            &short,
        )
        .await;
    step("expired token", "401 time", outcome(expired).await);

    let held = reader
        .fetch_token(customer.as_str(), "read:customer", None)
        .await?;
    admin.patch("reader", json!({"status": "disabled"})).await?;
    let started = Instant::now();
    let mut got = String::new();
    while started.elapsed() < Duration::from_secs(6) {
        let sent = reader
            .send(
                reader.http().get(format!("{customer_url}/api/customer/42")),
                &held,
            )
            .await;
        got = outcome(sent).await;
        if got != "200" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "disabled agent refused {} ms after the change",
        started.elapsed().as_millis()
    );
    step("disabled agent's existing token", "401 revocation", got);
    step(
        "disabled agent asks for a token",
        "refused: invalid_client",
        token_outcome(
            reader
                .fetch_token(customer.as_str(), "read:customer", None)
                .await,
        ),
    );

    verifier.flush_audit().await;
    let store = agentauth_store::open(&data_dir.join("agentauth.db").display().to_string()).await?;
    let verdict = match crate::audit::verify_store(&*store).await? {
        Ok(n) => format!("intact ({n} records)"),
        Err(bad) => bad,
    };
    let intact = verdict.starts_with("intact");
    step(
        "audit verify",
        "intact",
        if intact { "intact".into() } else { verdict },
    );

    server.abort();
    authority.shutdown().await;
    Ok(report(&steps))
}

/// "issued", or the OAuth error the token endpoint answered.
fn token_outcome(result: Result<agentauth_sdk::AccessToken, SdkError>) -> String {
    match result {
        Ok(_) => "issued".into(),
        Err(SdkError::TokenRefused { error, .. }) => format!("refused: {error}"),
        Err(e) => format!("error: {e}"),
    }
}

fn report(steps: &[Step]) -> ExitCode {
    println!("{:<46} {:<34} {:<34} ", "step", "expected", "got");
    println!("{}", "-".repeat(118));
    let mut failed = 0;
    for s in steps {
        let ok = s.expected == s.got;
        failed += usize::from(!ok);
        println!(
            "{:<46} {:<34} {:<34} {}",
            s.name,
            s.expected,
            s.got,
            if ok { "ok" } else { "FAIL" }
        );
    }
    println!();
    if failed == 0 {
        println!("all {} steps behaved as expected", steps.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "{failed} of {} steps did not behave as expected",
            steps.len()
        );
        ExitCode::FAILURE
    }
}
