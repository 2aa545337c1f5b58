//! `agentauth demo`: the seed's two-agent scenario, in-process on loopback
//! ports over real HTTP, with a table of expected and actual outcomes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use agentauth_api::{AgentPatch, AgentView, LayerDenial, NewAgent};
use agentauth_authority::{Config, Running};
use agentauth_core::SigningKey;
use agentauth_sdk::SdkError;
use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod chain;
mod mtls;
mod seed;

/// Options of `agentauth demo`: everything runs in-process on loopback ports,
/// in a temporary data dir.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Which scenario to run.
    #[arg(value_enum, default_value_t = Scenario::Seed)]
    scenario: Scenario,
}

/// The demonstrated scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// A reader agent that may only read customers calls a customer agent.
    Seed,
    /// planner → executor → database: delegation, proof of possession, revocation.
    Chain,
    /// Two agents with SVIDs from the Workload API call each other over
    /// mutual TLS with certificate-bound tokens, through a CA rotation.
    Mtls,
}

/// Runs the chosen scenario and prints its table.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    match args.scenario {
        Scenario::Seed => seed::run().await,
        Scenario::Chain => chain::run().await,
        Scenario::Mtls => mtls::run().await,
    }
}

/// `policies/examples/`, built in so the demo runs from any directory.
pub(super) const EXAMPLE_POLICIES: [(&str, &str); 4] = [
    (
        "approvals.cedar",
        include_str!("../../../../policies/examples/approvals.cedar"),
    ),
    (
        "delegation.cedar",
        include_str!("../../../../policies/examples/delegation.cedar"),
    ),
    (
        "reads.cedar",
        include_str!("../../../../policies/examples/reads.cedar"),
    ),
    (
        "writes.cedar",
        include_str!("../../../../policies/examples/writes.cedar"),
    ),
];

/// Runs this very binary as `agentauth ARGS` against the demo's authority,
/// as an operator would; "exit 0", or what it printed on failure.
pub(super) fn run_cli(url: &str, admin_token: &str, args: &[&str]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("locating the agentauth binary")?;
    let output = std::process::Command::new(exe)
        .args(args)
        .env("AGENTAUTH_URL", url)
        .env("AGENTAUTH_ADMIN_TOKEN", admin_token)
        .output()
        .context("running the agentauth command")?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(if output.status.success() {
        "exit 0".into()
    } else {
        format!(
            "exit {}: {}",
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

/// One row of the result table.
pub(super) struct Step {
    name: &'static str,
    expected: String,
    got: String,
}

/// The admin side of the demo, over the authority's HTTP API.
pub(super) struct Admin {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) token: String,
}

impl Admin {
    /// Calls the admin API with a JSON body and reads the answer as `T`.
    pub(super) async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "admin call {path} failed: {status} {text}"
        );
        serde_json::from_str(&text).with_context(|| format!("admin call {path}: unexpected answer"))
    }

    pub(super) async fn register(
        &self,
        name: &str,
        permissions: &[&str],
        key: &SigningKey,
    ) -> anyhow::Result<()> {
        let body = NewAgent {
            name: name.to_owned(),
            description: String::new(),
            owner: String::new(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            public_jwk: key.public_jwk().to_json(),
            bearer_allowed: false,
            expires_in: None,
            tags: vec![],
            selectors: vec![],
        };
        let _: AgentView = self
            .send(reqwest::Method::POST, "/v1/agents", &body)
            .await?;
        Ok(())
    }

    pub(super) async fn patch(&self, name: &str, patch: &AgentPatch) -> anyhow::Result<()> {
        let path = format!("/v1/agents/{name}");
        let _: AgentView = self.send(reqwest::Method::PATCH, &path, patch).await?;
        Ok(())
    }
}

/// "200", or the status with the failed check the layer named.
pub(super) async fn outcome(result: Result<reqwest::Response, SdkError>) -> String {
    match result {
        Ok(r) if r.status().is_success() => r.status().as_u16().to_string(),
        Ok(r) => {
            let status = r.status().as_u16();
            let check = r.json::<LayerDenial>().await.map(|d| d.check);
            format!("{status} {}", check.as_deref().unwrap_or("?"))
        }
        Err(SdkError::PermissionNotHeld(p)) => format!("refused locally ({p})"),
        Err(SdkError::TokenRefused { error, .. }) => format!("refused: {error}"),
        Err(e) => format!("error: {e}"),
    }
}

/// A fresh authority in a temporary data dir on a free loopback port, and its admin.
pub(super) async fn authority() -> anyhow::Result<(Running, Admin, PathBuf, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        ..Config::default()
    };
    let authority = agentauth_authority::start(config, None)
        .await
        .map_err(|e| anyhow::anyhow!("starting the authority: {}", e.detail()))?;
    let admin = Admin {
        http: reqwest::Client::new(),
        url: authority.issuer.clone(),
        token: authority
            .admin_token
            .clone()
            .context("a fresh authority prints its admin credential")?,
    };
    println!(
        "authority on {} (temporary data dir {})",
        admin.url,
        data_dir.display()
    );
    Ok((authority, admin, data_dir, dir))
}

/// Verifies the audit chain of the demo's store.
pub(super) async fn audit_verdict(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let store = agentauth_store::open(&data_dir.join("agentauth.db").display().to_string()).await?;
    let master = agentauth_authority::MasterKey::load(data_dir, None)
        .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    let key = master
        .audit_key(&*store)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    Ok(
        match crate::audit::verify_store(&*store, &key, None).await? {
            Ok(_) => "intact".into(),
            Err(bad) => bad,
        },
    )
}

/// The claims of a JWT, unverified: for showing what a token says.
pub(super) fn claims(token: &str) -> anyhow::Result<agentauth_core::AccessClaims> {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(agentauth_core::b64url_decode)
        .ok_or_else(|| anyhow::anyhow!("not a JWT"))?;
    Ok(serde_json::from_slice(&payload)?)
}

/// "issued", or the OAuth error the token endpoint answered.
pub(super) fn token_outcome(result: Result<agentauth_sdk::AccessToken, SdkError>) -> String {
    match result {
        Ok(_) => "issued".into(),
        Err(SdkError::TokenRefused { error, .. }) => format!("refused: {error}"),
        Err(e) => format!("error: {e}"),
    }
}

pub(super) fn report(steps: &[Step]) -> ExitCode {
    let width = steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<width$} {:<34} {:<34} ", "step", "expected", "got");
    println!("{}", "-".repeat(width + 72));
    let mut failed = 0;
    for s in steps {
        let ok = s.expected == s.got;
        failed += usize::from(!ok);
        println!(
            "{:<width$} {:<34} {:<34} {}",
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
