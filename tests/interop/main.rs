//! Interop tests: maintained third-party libraries (Python: authlib, PyJWT,
//! joserfc, http-message-signatures; Node: openid-client, jose, dpop), each
//! used the way its own documentation shows, against the real `agentauth`
//! binary and the example customer agent behind the SDK's layer. Each check
//! is a subprocess (`py/checks.py`, `js/checks.mjs`) that prints one JSON
//! answer; the libraries are pinned in `requirements.txt` and
//! `package-lock.json` and installed once under `target/interop/`.
//! Without python3, npm or the registries the tests skip, unless
//! `AGENTAUTH_TEST_INTEROP=required` (CI) makes them fail.

#![allow(unreachable_pub)]

#[path = "../e2e/support.rs"]
mod support;

/// The example customer agent, put behind the layer for the calls.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/customer_agent.rs"]
mod customer_agent;

mod node;
mod python;
mod spiffe;
mod toolchain;

use agentauth_core::{SigningKey, SpiffeId};
use agentauth_sdk::{Verifier, VerifierConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use support::{Server, id};

/// A running authority with the customer agent behind the layer.
pub struct Scene {
    /// The authority.
    pub server: Server,
    /// `GET` here reads customer 42 with `read:customer`.
    pub customer_url: String,
    _verifier: Verifier,
}

impl Scene {
    /// Starts the authority, registers `customer`, and serves it behind the layer.
    pub async fn start() -> Self {
        let server = Server::start().await;
        server.register("customer", &[]).await;
        let verifier = Verifier::connect(VerifierConfig::new(
            &server.url,
            SpiffeId::parse(&id("customer")).unwrap(),
        ))
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let customer_url = format!("http://{}/api/customer/42", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, customer_agent::router(&verifier)).into_future());
        Self {
            server,
            customer_url,
            _verifier: verifier,
        }
    }

    /// Registers agent `name` with `permissions` and this key.
    pub async fn register(&self, name: &str, permissions: &[&str], key: &SigningKey) {
        let body = json!({"name": name, "permissions": permissions, "public_jwk": key.public_jwk().to_json()});
        let (status, answer) = self
            .server
            .admin_json(Method::POST, "/v1/agents", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    /// What every check is told: the issuer, the agent and its private key,
    /// the customer agent as audience and URL, the scope to ask for.
    pub fn input(&self, name: &str, key: &SigningKey) -> Value {
        json!({
            "issuer": self.server.url,
            "client_id": id(name),
            "private_jwk": key.to_private_jwk(),
            "resource": id("customer"),
            "audience": id("customer"),
            "scope": "read:customer",
            "url": self.customer_url,
        })
    }

    /// A token for `name` addressed to the customer agent, through the SDK's own path.
    pub async fn token(&self, name: &str, key: &SigningKey) -> String {
        let (status, body) = self
            .server
            .token(name, key, &id("customer"), "read:customer")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// Asserts a check answered `ok` and returns its answer.
pub fn ok(answer: Value) -> Value {
    assert_eq!(answer["ok"], true, "{answer:#}");
    answer
}
