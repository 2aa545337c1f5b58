//! The seed scenario: a reader agent that may only read customers calls a customer agent.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentauth_api::{AgentPatch, AgentStatus, NewPolicySet, PolicyFile, PolicySetLoaded};
use agentauth_core::{AgentName, Scope, SigningKey, SpiffeId, TrustDomain};
use agentauth_sdk::{Client, Verifier, VerifierConfig};
use serde_json::json;

use super::{Step, outcome, report, token_outcome};

// The demo runs the very code of the examples, so they cannot drift apart.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../examples/customer_agent.rs"]
mod customer_agent;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../examples/reader_agent.rs"]
mod reader_agent;

pub(super) async fn run() -> anyhow::Result<ExitCode> {
    let (authority, admin, data_dir, _dir) = super::authority().await?;
    let url = admin.url.clone();

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
    let billing_key = SigningKey::generate_ed25519();
    admin
        .register("billing", &["payments:refund"], &billing_key)
        .await?;

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
                .call(write, &customer, &scope("write:customer"))
                .await,
        )
        .await,
    );

    admin
        .patch("reader", &permissions(&["read:orders"]))
        .await?;
    step(
        "token for a permission no longer held",
        "refused: invalid_scope",
        token_outcome(
            reader
                .fetch_token(&customer, &scope("read:customer"), None)
                .await,
        ),
    );
    let get = reader.http().get(format!("{customer_url}/api/customer/42"));
    step(
        "read:customer removed, early check bypassed",
        "403 permission",
        outcome(reader.call(get, &customer, &scope("read:orders")).await).await,
    );
    admin
        .patch("reader", &permissions(&["read:customer"]))
        .await?;

    let write = reader
        .http()
        .post(format!("{customer_url}/api/customer"))
        .json(&json!({"name": "Eve"}));
    step(
        "reader writes with a read token",
        "403 permission",
        outcome(reader.call(write, &customer, &scope("read:customer")).await).await,
    );

    let get = reader.http().get(format!("{customer_url}/api/customer/42"));
    step(
        "token for another audience (orders)",
        "401 audience",
        outcome(
            reader
                .call(get, &id("orders")?, &scope("read:customer"))
                .await,
        )
        .await,
    );

    let short = reader
        .fetch_token(&customer, &scope("read:customer"), Some(1))
        .await?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let expired = reader
        .send(
            reader.http().get(format!("{customer_url}/api/customer/42")),
            &short,
        )
        .await;
    step("expired token", "401 time", outcome(expired).await);

    // Policy as code: the example policies make refunds wait for a person.
    let files = super::EXAMPLE_POLICIES
        .iter()
        .map(|(name, text)| PolicyFile {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    let policies = NewPolicySet {
        files,
        activate: true,
    };
    let _: PolicySetLoaded = admin
        .send(reqwest::Method::POST, "/v1/policies", &policies)
        .await?;
    let billing = Client::new(&url, id("billing")?, billing_key);
    let refund = || {
        billing
            .http()
            .post(format!("{customer_url}/api/customer/42/refund"))
            .json(&json!({"amount": "12.50"}))
    };
    let pending = billing
        .call(refund(), &customer, &scope("payments:refund"))
        .await;
    let (got, pending) = match pending {
        Err(agentauth_sdk::SdkError::ApprovalPending(p)) => ("waits for approval".into(), Some(p)),
        other => (outcome(other).await, None),
    };
    step(
        "refund (policy: payments need approval)",
        "waits for approval",
        got,
    );
    if let Some(pending) = pending {
        // The policy names the finance group as approvers: a person in it
        // decides, under their own credential.
        println!("$ agentauth operator add demo-operator --group finance");
        let operator: agentauth_api::OperatorCreated = admin
            .send(
                reqwest::Method::POST,
                "/v1/operators",
                &agentauth_api::NewOperator {
                    name: "demo-operator".into(),
                    groups: vec!["finance".into()],
                },
            )
            .await?;
        println!(
            "$ AGENTAUTH_ADMIN_TOKEN=<demo-operator's credential> agentauth approvals approve {} --reason \"refund checked\"",
            pending.approval_id
        );
        let approved = super::run_cli(
            &url,
            &operator.operator_token,
            &[
                "approvals",
                "approve",
                &pending.approval_id,
                "--reason",
                "refund checked",
            ],
        )?;
        step("agentauth approvals approve", "exit 0", approved);
        let got = match billing
            .wait_for_approval(&pending, Duration::from_secs(30))
            .await
        {
            Ok(_) => {
                outcome(
                    billing
                        .call(refund(), &customer, &scope("payments:refund"))
                        .await,
                )
                .await
            }
            Err(e) => format!("error: {e}"),
        };
        step("refund after the approval", "200", got);
    }

    let held = reader
        .fetch_token(&customer, &scope("read:customer"), None)
        .await?;
    let disabled = AgentPatch {
        status: Some(AgentStatus::Disabled),
        ..AgentPatch::default()
    };
    admin.patch("reader", &disabled).await?;
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
                .fetch_token(&customer, &scope("read:customer"), None)
                .await,
        ),
    );

    verifier.flush_audit().await;
    let verdict = super::audit_verdict(&data_dir).await?;
    step("audit verify", "intact", verdict);

    server.abort();
    authority.shutdown().await;
    Ok(report(&steps))
}

/// A registry change of the permissions alone.
fn permissions(list: &[&str]) -> AgentPatch {
    AgentPatch {
        permissions: Some(list.iter().map(|p| (*p).to_owned()).collect()),
        ..AgentPatch::default()
    }
}

/// A scope written in this file, known to be valid.
fn scope(text: &str) -> agentauth_core::Scope {
    agentauth_core::Scope::parse(text).expect("the scopes written here are valid")
}
