//! The reader agent of the seed scenario: it may only read customers, and
//! calls the customer agent with a token from its own key.
//!
//! ```sh
//! agentauth agent register reader --permission read:customer --key-out reader.key.json
//! cargo run --example reader_agent -- reader.key.json http://127.0.0.1:9001 42
//! ```
//! `AGENTAUTH_URL` names the authority (default http://127.0.0.1:8080).

use agentauth_core::{AgentName, SpiffeId, TrustDomain};
use agentauth_sdk::{Client, SdkError};

/// Reads customer `id` from the customer agent at `base_url`.
pub async fn read_customer(
    client: &Client,
    base_url: &str,
    customer: &SpiffeId,
    id: u64,
) -> Result<reqwest::Response, SdkError> {
    let request = client.http().get(format!("{base_url}/api/customer/{id}"));
    client
        .call(request, customer, &scope("read:customer"))
        .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let key_file = args.next().unwrap_or_else(|| "reader.key.json".into());
    let customer_url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:9001".into());
    let id: u64 = args.next().unwrap_or_else(|| "42".into()).parse()?;
    let authority =
        std::env::var("AGENTAUTH_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());

    let key = agentauth_core::SigningKey::from_private_jwk(&serde_json::from_str(
        &std::fs::read_to_string(&key_file)?,
    )?)?;
    let metadata = agentauth_sdk::Metadata::fetch(&reqwest::Client::new(), &authority).await?;
    let domain = TrustDomain::new(&metadata.trust_domain)?;
    let client = Client::new(
        &authority,
        SpiffeId::agent(&domain, &AgentName::new("reader")?),
        key,
    );
    let customer = SpiffeId::agent(&domain, &AgentName::new("customer")?);

    let response = read_customer(&client, &customer_url, &customer, id).await?;
    println!("{} {}", response.status(), response.text().await?);
    Ok(())
}

/// A scope written in this file, known to be valid.
fn scope(text: &str) -> agentauth_core::Scope {
    agentauth_core::Scope::parse(text).expect("the scopes written here are valid")
}
