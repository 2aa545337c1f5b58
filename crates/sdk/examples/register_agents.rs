//! Registers N agents with the admin credential, each with its own fresh
//! Ed25519 key, for the scale run of `bench/issuance.sh` (`AGENTS=N`).
//!
//! ```sh
//! cargo run --release -p agentauth-sdk --example register_agents -- \
//!     http://127.0.0.1:8080 "$(cat data/admin-token)" 100000 load keys.tsv
//! ```
//!
//! Arguments: the authority's URL, the admin credential, N, a name prefix
//! (agents are named PREFIX-0 … PREFIX-(N-1)), a file to write the keys to
//! (one `NAME<TAB>PRIVATE_JWK` line per agent, created 0600, never
//! overwritten), and optionally how many registrations run at once (default
//! 16). Every agent may hold `read:customer`. Any answer but 201 stops the
//! run with the authority's words.

use std::io::{BufWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use agentauth_api::NewAgent;
use agentauth_core::SigningKey;

const USAGE: &str = "usage: register_agents URL ADMIN_TOKEN N PREFIX KEYS_FILE [CONCURRENCY]";

type Result<T> = std::result::Result<T, String>;

/// Registers `PREFIX-i` for every i the shared counter hands this worker;
/// returns each agent's name and private JWK.
async fn worker(
    http: reqwest::Client,
    url: Arc<str>,
    admin: Arc<str>,
    prefix: Arc<str>,
    next: Arc<AtomicUsize>,
    n: usize,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return Ok(out);
        }
        let name = format!("{prefix}-{i}");
        let key = SigningKey::generate_ed25519();
        let body = NewAgent {
            name: name.clone(),
            description: String::new(),
            owner: String::new(),
            permissions: vec!["read:customer".into()],
            public_jwk: key.public_jwk().to_json(),
            bearer_allowed: false,
            expires_in: None,
            tags: vec![],
            selectors: vec![],
        };
        let answer = http
            .post(format!("{url}/v1/agents"))
            .bearer_auth(&*admin)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("registering {name}: {e}"))?;
        let status = answer.status();
        if status != reqwest::StatusCode::CREATED {
            let text = answer.text().await.unwrap_or_default();
            return Err(format!("registering {name} answered {status}: {text}"));
        }
        out.push((name, key.to_private_jwk().to_string()));
    }
}

async fn run(args: &[String]) -> Result<()> {
    let [url, admin, n, prefix, keys_file, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    let n: usize = n
        .parse()
        .map_err(|_| format!("N must be a count\n{USAGE}"))?;
    let concurrency: usize = match rest.first() {
        Some(c) => c
            .parse()
            .ok()
            .filter(|c| (1..=256).contains(c))
            .ok_or_else(|| format!("CONCURRENCY must be 1 to 256\n{USAGE}"))?,
        None => 16,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(keys_file)
        .map_err(|e| format!("{keys_file} (it must not exist yet): {e}"))?;

    let http = reqwest::Client::new();
    let url: Arc<str> = url.trim_end_matches('/').into();
    let (admin, prefix): (Arc<str>, Arc<str>) = (admin.as_str().into(), prefix.as_str().into());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(worker(
            http.clone(),
            url.clone(),
            admin.clone(),
            prefix.clone(),
            next.clone(),
            n,
        ));
    }
    let mut out = BufWriter::new(file);
    let mut registered = 0;
    while let Some(done) = workers.join_next().await {
        for (name, jwk) in done.map_err(|e| e.to_string())?? {
            writeln!(out, "{name}\t{jwk}").map_err(|e| e.to_string())?;
            registered += 1;
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "registered {registered} agents in {secs:.1} s ({:.0}/s)",
        registered as f64 / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("register_agents: {e}");
            ExitCode::FAILURE
        }
    }
}
