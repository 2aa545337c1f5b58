//! A three-hop delegation chain: a planner asks an executor for a report; the
//! executor reads the rows it needs from a database agent *on behalf of the
//! planner*, exchanging the planner's token (RFC 8693) so that the subject,
//! the task and the actor chain travel with the call, every hop is signed
//! with its own key, and no hop can widen what the planner was given.
//!
//! ```sh
//! agentauth serve &
//! AGENTAUTH_ADMIN_TOKEN=$(cat agentauth-data/admin-token) cargo run --example delegation_chain
//! ```

use agentauth_core::{AgentName, SigningKey, SpiffeId, TrustDomain};
use agentauth_sdk::{Client, SdkError, VerifiedAgent, Verifier, VerifierConfig};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The database agent: rows for `read:db`, inserts for `write:db`.
pub fn database_router(verifier: &Verifier) -> Router {
    Router::new()
        .route(
            "/db/rows",
            get(read_rows).layer(verifier.require("read:db")),
        )
        .route(
            "/db/rows",
            post(write_row).layer(verifier.require("write:db")),
        )
}

async fn read_rows(caller: VerifiedAgent) -> Json<Value> {
    Json(json!({
        "rows": [{"month": "2026-10", "revenue": 120_500}],
        "for": caller.subject,
        "via": caller.agent,
        "chain": caller.claims.actors().collect::<Vec<_>>(),
        "txn": caller.txn,
    }))
}

async fn write_row(caller: VerifiedAgent, Json(row): Json<Value>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({"written": row, "by": caller.agent})),
    )
}

/// Where the executor finds the database.
#[derive(Clone)]
pub struct Downstream {
    /// The executor's own client (its key).
    pub client: Client,
    /// Base URL of the database agent.
    pub database_url: String,
    /// The database agent's SPIFFE ID.
    pub database_id: SpiffeId,
}

/// The executor agent: it works for whoever calls it, with their authority only.
pub fn executor_router(verifier: &Verifier, downstream: Downstream) -> Router {
    Router::new()
        .route(
            "/run/report",
            post(report).layer(verifier.require("read:db")),
        )
        .route("/run/write", post(write).layer(verifier.require("read:db")))
        .with_state(downstream)
}

async fn report(State(d): State<Downstream>, caller: VerifiedAgent) -> (StatusCode, Json<Value>) {
    let request = d.client.http().get(format!("{}/db/rows", d.database_url));
    relay(
        d.client
            .on_behalf_of(&caller)
            .call(request, &d.database_id, &scope("read:db"))
            .await,
    )
    .await
}

async fn write(
    State(d): State<Downstream>,
    caller: VerifiedAgent,
    Json(row): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let request = d
        .client
        .http()
        .post(format!("{}/db/rows", d.database_url))
        .json(&row);
    relay(
        d.client
            .on_behalf_of(&caller)
            .call(request, &d.database_id, &scope("write:db"))
            .await,
    )
    .await
}

/// Passes the database's answer on, or says why the delegation was refused.
async fn relay(result: Result<reqwest::Response, SdkError>) -> (StatusCode, Json<Value>) {
    match result {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, Json(response.json().await.unwrap_or(Value::Null)))
        }
        Err(SdkError::TokenRefused {
            error, description, ..
        }) => (
            StatusCode::FORBIDDEN,
            Json(
                json!({"error": "delegation_refused", "error_description": format!("{error}: {description}")}),
            ),
        ),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": "upstream_failed", "error_description": e.to_string()})),
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let authority =
        std::env::var("AGENTAUTH_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let admin = std::env::var("AGENTAUTH_ADMIN_TOKEN")?;
    let http = reqwest::Client::new();
    let metadata = agentauth_sdk::Metadata::fetch(&http, &authority).await?;
    let domain = TrustDomain::new(&metadata.trust_domain)?;
    let id = |name: &str| -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::agent(&domain, &AgentName::new(name)?))
    };

    // Fresh keys and registrations (names suffixed so reruns do not collide).
    let suffix = agentauth_core::random_b64(3)
        .to_lowercase()
        .replace(['_', '-'], "x");
    let names = [
        format!("planner-{suffix}"),
        format!("executor-{suffix}"),
        format!("database-{suffix}"),
    ];
    let keys = [
        SigningKey::generate_ed25519(),
        SigningKey::generate_ed25519(),
        SigningKey::generate_ed25519(),
    ];
    let permissions = [
        json!(["read:db"]),
        json!(["read:db", "write:db"]),
        json!([]),
    ];
    for ((name, key), perms) in names.iter().zip(&keys).zip(permissions) {
        let body =
            json!({"name": name, "permissions": perms, "public_jwk": key.public_jwk().to_json()});
        http.post(format!("{authority}/v1/agents"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }
    for (from, to, perms) in [
        (&names[0], &names[1], json!(["read:db"])),
        (&names[1], &names[2], json!(["read:db", "write:db"])),
    ] {
        let body = json!({"to": to, "permissions": perms});
        http.post(format!("{authority}/v1/agents/{from}/delegations"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }

    let serve = |router: Router| async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(axum::serve(listener, router).into_future());
        anyhow::Ok(url)
    };
    // Each verifier has its agent's client, to ask the authority what
    // policies need to know of its callers.
    let database_client = Client::new(&authority, id(&names[2])?, keys[2].clone());
    let database_verifier = Verifier::connect(VerifierConfig::new(&authority, id(&names[2])?))
        .await?
        .with_client(database_client);
    let database_url = serve(database_router(&database_verifier)).await?;
    let executor_client = Client::new(&authority, id(&names[1])?, keys[1].clone());
    let executor_verifier = Verifier::connect(VerifierConfig::new(&authority, id(&names[1])?))
        .await?
        .with_client(executor_client.clone());
    let downstream = Downstream {
        client: executor_client,
        database_url,
        database_id: id(&names[2])?,
    };
    let executor_url = serve(executor_router(&executor_verifier, downstream)).await?;

    let planner = Client::new(&authority, id(&names[0])?, keys[0].clone());
    let report = planner.http().post(format!("{executor_url}/run/report"));
    let response = planner
        .call(report, &id(&names[1])?, &scope("read:db"))
        .await?;
    println!("report: {} {}", response.status(), response.text().await?);
    let write = planner
        .http()
        .post(format!("{executor_url}/run/write"))
        .json(&json!({"month": "2026-11"}));
    let response = planner
        .call(write, &id(&names[1])?, &scope("read:db"))
        .await?;
    println!(
        "write through the executor: {} {}",
        response.status(),
        response.text().await?
    );
    Ok(())
}

/// A scope written in this file, known to be valid.
fn scope(text: &str) -> agentauth_core::Scope {
    agentauth_core::Scope::parse(text).expect("the scopes written here are valid")
}
