//! An agent that only calls others: the SDK built without its verifying
//! layer (no axum, no Cedar), fetching one token.
//!
//! ```sh
//! agentauth agent register reader --key-out reader.key.json
//! cargo run -p agentauth-sdk --no-default-features --example client_only -- \
//!     http://127.0.0.1:8080 reader reader.key.json customer read:customer
//! ```
//!
//! Arguments: the authority's URL, the agent's name, its private key file (as
//! `agentauth agent register --key-out` writes it; `-` generates a fresh
//! Ed25519 key, which the authority refuses until its public JWK, printed
//! first, is registered), and optionally the target agent (default
//! `customer`) and the scope (default `read:customer`). Prints the granted
//! scope and lifetime, never the token.

use std::error::Error;
use std::process::ExitCode;

use agentauth_core::{AgentName, Scope, SigningKey, SpiffeId, TrustDomain};
use agentauth_sdk::{Client, Metadata};

const USAGE: &str = "usage: client_only AUTHORITY_URL AGENT KEY_FILE|- [TARGET] [SCOPE]";

/// The agent's key: read from `path`, or generated for `-`.
fn load_key(path: &str) -> Result<SigningKey, Box<dyn Error>> {
    if path == "-" {
        let key = SigningKey::generate_ed25519();
        println!("generated public JWK: {}", key.public_jwk().to_json());
        return Ok(key);
    }
    let jwk = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    Ok(SigningKey::from_private_jwk(&jwk)?)
}

async fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    let [authority, agent, key_file, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    let target = rest.first().map_or("customer", String::as_str);
    let scope = rest.get(1).map_or("read:customer", String::as_str);
    let key = load_key(key_file)?;
    // Agent IDs live in the authority's trust domain, which its metadata names.
    let metadata = Metadata::fetch(&reqwest::Client::new(), authority).await?;
    let domain = TrustDomain::new(&metadata.trust_domain)?;
    let me = SpiffeId::agent(&domain, &AgentName::new(agent)?);
    let audience = SpiffeId::agent(&domain, &AgentName::new(target)?);

    let client = Client::new(authority, me, key);
    let token = client.token(&audience, &Scope::parse(scope)?).await?;
    println!(
        "{} got a token for {audience}: scope \"{}\", valid {} s",
        client.agent_id(),
        token.scope,
        token.expires_at - token.issued_at
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client_only: {e}");
            ExitCode::FAILURE
        }
    }
}
