//! The chain scenario: planner → executor → database, each hop exchanging the
//! token it received, signing every request with its own key.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentauth_api::{Delegation, NewDelegation, OAuthError, TaskCompletion, TaskView};
use agentauth_core::{AccessClaims, AgentName, SigningKey, SpiffeId, TrustDomain, b64url_decode};
use agentauth_sdk::{Client, SdkError, Verifier, VerifierConfig};
use serde_json::json;

use super::{Step, outcome, report, token_outcome};

// The demo runs the very code of the example, so they cannot drift apart.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../examples/delegation_chain.rs"]
mod delegation_chain;

fn claims(token: &str) -> anyhow::Result<AccessClaims> {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(b64url_decode)
        .ok_or_else(|| anyhow::anyhow!("not a JWT"))?;
    Ok(serde_json::from_slice(&payload)?)
}

async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(axum::serve(listener, router).into_future());
    Ok(url)
}

pub(super) async fn run() -> anyhow::Result<ExitCode> {
    let (authority, admin, data_dir, _dir) = super::authority().await?;
    let url = admin.url.clone();
    let domain = TrustDomain::new("agentauth.local")?;
    let id = |name: &str| -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::agent(&domain, &AgentName::new(name)?))
    };
    let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate_ed25519()).collect();
    admin.register("planner", &["read:db"], &keys[0]).await?;
    admin
        .register("executor", &["read:db", "write:db"], &keys[1])
        .await?;
    admin.register("database", &[], &keys[2]).await?;
    admin.register("orders", &[], &keys[3]).await?;
    for (from, to, permissions) in [
        ("planner", "executor", &["read:db"][..]),
        ("executor", "database", &["read:db", "write:db"][..]),
    ] {
        let grant = NewDelegation {
            to: to.to_owned(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        };
        let path = format!("/v1/agents/{from}/delegations");
        let _: Delegation = admin.send(reqwest::Method::POST, &path, &grant).await?;
    }

    let verifier = |name: &str, key: &SigningKey| {
        let config = VerifierConfig::new(&url, id(name).expect("valid name"));
        let client = Client::new(&url, id(name).expect("valid name"), key.clone());
        async move { anyhow::Ok(Verifier::connect(config).await?.with_audit(client)) }
    };
    let database_verifier = verifier("database", &keys[2]).await?;
    let database_url = serve(delegation_chain::database_router(&database_verifier)).await?;
    let executor = Client::new(&url, id("executor")?, keys[1].clone());
    let executor_verifier = verifier("executor", &keys[1]).await?;
    let downstream = delegation_chain::Downstream {
        client: executor.clone(),
        database_url: database_url.clone(),
        database_id: id("database")?,
    };
    let executor_url = serve(delegation_chain::executor_router(
        &executor_verifier,
        downstream,
    ))
    .await?;
    println!("executor on {executor_url}, database on {database_url}\n");

    let planner = Client::new(&url, id("planner")?, keys[0].clone());
    let executor_id = id("executor")?;
    let mut steps = Vec::new();
    let mut step = |name, expected: &str, got: String| {
        steps.push(Step {
            name,
            expected: expected.into(),
            got,
        })
    };

    // 1. The whole chain works, and every hop is in the task's audit trail.
    let report_call = planner.http().post(format!("{executor_url}/run/report"));
    step(
        "3-hop call planner → executor → database",
        "200",
        outcome(
            planner
                .call(report_call, &executor_id, &scope("read:db"))
                .await,
        )
        .await,
    );
    let txn = claims(&planner.token(&executor_id, &scope("read:db")).await?.token)?
        .txn
        .map(|t| t.to_string())
        .unwrap_or_default();
    executor_verifier.flush_audit().await;
    database_verifier.flush_audit().await;
    let task: TaskView = admin
        .send(reqwest::Method::GET, &format!("/v1/tasks/{txn}"), &())
        .await?;
    let at_database = task.hops.iter().any(|h| {
        h.event.kind == agentauth_core::AuditKind::RequestAllowed
            && h.event.actor == id("database").map(|i| i.to_string()).unwrap_or_default()
            && h.event.chain
                == format!(
                    "{} {}",
                    executor_id,
                    id("planner").map(|i| i.to_string()).unwrap_or_default()
                )
    });
    step(
        "the database's audit names the chain executor, planner",
        "yes",
        if at_database {
            "yes".into()
        } else {
            "no".into()
        },
    );

    // 2. The planner cannot reach write:db through the executor.
    let write = planner
        .http()
        .post(format!("{executor_url}/run/write"))
        .json(&json!({"month": "2026-11"}));
    let escalation = match planner.call(write, &executor_id, &scope("read:db")).await {
        Ok(r) => {
            let status = r.status().as_u16();
            let description = r
                .json::<OAuthError>()
                .await
                .map(|e| e.error_description)
                .unwrap_or_default();
            let why = description.split(':').next().unwrap_or("").to_owned();
            format!("{status} {why}")
        }
        Err(e) => format!("error: {e}"),
    };
    step(
        "planner escalates to write:db via executor",
        "403 invalid_scope",
        escalation,
    );

    // 3. The executor cannot exchange a token that was not addressed to it.
    let for_orders = planner_token(&url, &keys[0], &id("planner")?, &id("orders")?).await?;
    step(
        "executor exchanges a token for another agent",
        "refused: invalid_request",
        token_outcome(
            executor
                .exchange(&for_orders, &id("database")?, &scope("read:db"))
                .await,
        ),
    );

    // A delegated token the executor holds for the database.
    let incoming = planner.token(&executor_id, &scope("read:db")).await?;
    let delegated = executor
        .exchange(&incoming.token, &id("database")?, &scope("read:db"))
        .await?;
    let rows_url = format!("{database_url}/db/rows");

    // 4. A tampered body breaks the signature.
    let mut tampered = executor
        .http()
        .post(&rows_url)
        .bearer_auth(&delegated.token)
        .json(&json!({"n": 1}))
        .build()?;
    executor.sign(&mut tampered)?;
    *tampered.body_mut() = Some(reqwest::Body::from(r#"{"n":2}"#));
    step(
        "tampered body",
        "401 proof",
        outcome(
            executor
                .http()
                .execute(tampered)
                .await
                .map_err(SdkError::from),
        )
        .await,
    );

    // 5. A replayed request is refused.
    let mut once = executor
        .http()
        .get(&rows_url)
        .bearer_auth(&delegated.token)
        .build()?;
    executor.sign(&mut once)?;
    let again = once
        .try_clone()
        .ok_or_else(|| anyhow::anyhow!("request cannot be cloned"))?;
    let first = outcome(executor.http().execute(once).await.map_err(SdkError::from)).await;
    let second = outcome(executor.http().execute(again).await.map_err(SdkError::from)).await;
    step(
        "replayed request",
        "200 then 401 replay",
        format!("{first} then {second}"),
    );

    // 6. A stolen token is useless without its key.
    let thief = Client::new(&url, id("orders")?, keys[3].clone());
    let mut stolen = thief
        .http()
        .get(&rows_url)
        .bearer_auth(&delegated.token)
        .build()?;
    thief.sign(&mut stolen)?;
    step(
        "stolen token signed with another key",
        "401 proof",
        outcome(thief.http().execute(stolen).await.map_err(SdkError::from)).await,
    );

    // 7. The task is revoked mid-flight: the next hop is refused within a second.
    let task_id = claims(&delegated.token)?
        .txn
        .map(|t| t.to_string())
        .unwrap_or_default();
    let complete = format!("/v1/tasks/{task_id}/complete");
    let _: TaskCompletion = admin.send(reqwest::Method::POST, &complete, &()).await?;
    let started = Instant::now();
    let mut got = String::new();
    while started.elapsed() < Duration::from_secs(2) {
        got = outcome(
            executor
                .send(executor.http().get(&rows_url), &delegated)
                .await,
        )
        .await;
        if got != "200" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = started.elapsed();
    println!(
        "task revocation refused at the database after {} ms",
        waited.as_millis()
    );
    let within = if waited < Duration::from_secs(1) {
        got
    } else {
        format!("{got} after {} ms", waited.as_millis())
    };
    step(
        "task revoked mid-flight: next hop within 1 s",
        "401 revocation",
        within,
    );
    step(
        "task revoked: further exchanges",
        "refused: invalid_request",
        token_outcome(
            executor
                .exchange(&incoming.token, &id("database")?, &scope("read:db"))
                .await,
        ),
    );

    executor_verifier.flush_audit().await;
    database_verifier.flush_audit().await;
    step(
        "audit verify",
        "intact",
        super::audit_verdict(&data_dir).await?,
    );
    authority.shutdown().await;
    Ok(report(&steps))
}

/// A token of the planner for `audience`, outside any cache.
async fn planner_token(
    url: &str,
    key: &SigningKey,
    planner: &SpiffeId,
    audience: &SpiffeId,
) -> anyhow::Result<String> {
    let client = Client::new(url, planner.clone(), key.clone());
    Ok(client
        .fetch_token(audience, &scope("read:db"), None)
        .await?
        .token)
}

/// A scope written in this file, known to be valid.
fn scope(text: &str) -> agentauth_core::Scope {
    agentauth_core::Scope::parse(text).expect("the scopes written here are valid")
}
