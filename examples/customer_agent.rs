//! The customer agent of the seed scenario: it serves customer records to
//! agents whose token grants `read:customer`, creates customers for
//! `write:customer` and refunds them for `payments:refund` (a route that
//! tells policies it is highly sensitive and fails closed while the
//! revocation feed is down). Every request is verified by the agentauth layer.
//!
//! ```sh
//! agentauth agent register customer --key-out customer.key.json
//! cargo run --example customer_agent -- customer.key.json 127.0.0.1:9001
//! ```
//! `AGENTAUTH_URL` names the authority (default http://127.0.0.1:8080).

use agentauth_sdk::{Client, VerifiedAgent, Verifier, VerifierConfig};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The customer API, each route guarded by the permission it needs.
pub fn router(verifier: &Verifier) -> Router {
    Router::new()
        .route(
            "/api/customer/{id}",
            get(read_customer).layer(verifier.require("read:customer")),
        )
        .route(
            "/api/customer",
            post(create_customer).layer(verifier.require("write:customer")),
        )
        .route(
            "/api/customer/{id}/refund",
            post(refund_customer).layer(
                verifier
                    .require_fresh("payments:refund")
                    .sensitivity("high"),
            ),
        )
}

async fn refund_customer(caller: VerifiedAgent, Path(id): Path<u64>) -> Json<Value> {
    Json(json!({"refunded": id, "by": caller.agent, "task": caller.txn}))
}

async fn read_customer(caller: VerifiedAgent, Path(id): Path<u64>) -> Json<Value> {
    Json(
        json!({"id": id, "name": "John Doe", "email": "john@example.com", "served_to": caller.agent}),
    )
}

async fn create_customer(
    caller: VerifiedAgent,
    Json(customer): Json<Value>,
) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({"created": customer, "by": caller.agent})),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let key_file = args.next().unwrap_or_else(|| "customer.key.json".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9001".into());
    let authority =
        std::env::var("AGENTAUTH_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());

    let key = agentauth_core::SigningKey::from_private_jwk(&serde_json::from_str(
        &std::fs::read_to_string(&key_file)?,
    )?)?;
    let metadata = agentauth_sdk::Metadata::fetch(&reqwest::Client::new(), &authority).await?;
    let domain = agentauth_core::TrustDomain::new(&metadata.trust_domain)?;
    let me = agentauth_core::SpiffeId::agent(&domain, &agentauth_core::AgentName::new("customer")?);

    // The verifier checks tokens offline; the client lets it ship audit records as this agent.
    let verifier = Verifier::connect(VerifierConfig::new(&authority, me.clone()))
        .await?
        .with_audit(Client::new(&authority, me.clone(), key));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("customer agent {me} listening on http://{listen}");
    // Connection info gives policies the caller's address (`context.client_ip`).
    let app = router(&verifier).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}
