//! One token check behind every door: the same revocation cases run through
//! the SDK's verifying layer, introspection, token exchange and the
//! authority's own API, against the real binary, and all four give the same
//! verdict.

use std::time::Duration;

use agentauth_core::{SigningKey, SpiffeId};
use agentauth_sdk::{AccessToken, Client, Verifier, VerifierConfig};
use axum::Router;
use axum::routing::get;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, claims, id, scope, spiffe};

/// What a case revokes, relative to the token under test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Revoke {
    Nothing,
    /// The token itself, by `jti`.
    TheToken,
    /// The token the planner first got, from which the one under test was exchanged.
    ItsAncestor,
    /// Its task, completed.
    ItsTask,
    /// The key its presenter binds it to.
    ItsKey,
    /// Its presenter (`client_id`).
    ItsPresenter,
    /// Its subject, the agent that started the chain.
    ItsSubject,
    /// The agent in the middle of its `act` chain, disabled.
    AnActorInTheMiddle,
    /// The agent in the middle of its `act` chain, deleted.
    AnActorInTheMiddleDeleted,
    /// The agent in the middle of its `act` chain, deleted and its name
    /// registered again (a new identity, with a new key).
    AnActorInTheMiddleReRegistered,
}

impl Revoke {
    /// Whether the case has a counterpart for the planner's token for the
    /// authority: tokens for the authority belong to no task and are never
    /// exchanged, so they have no task, no ancestor and no actor chain, and
    /// their presenter is the planner (whose disabling is `ItsSubject`).
    fn api_counterpart(self) -> bool {
        !matches!(
            self,
            Self::ItsAncestor
                | Self::ItsTask
                | Self::AnActorInTheMiddle
                | Self::AnActorInTheMiddleDeleted
                | Self::AnActorInTheMiddleReRegistered
                | Self::ItsPresenter
        )
    }
}

/// The verdicts of the four doors for one token.
#[derive(Debug, PartialEq)]
struct Verdicts {
    layer: bool,
    introspection: bool,
    exchange: bool,
    /// `None` where the case has no counterpart for a token addressed to
    /// the authority ([`Revoke::api_counterpart`]).
    api: Option<bool>,
}

/// planner → router → executor → database, each hop by token exchange in
/// one task, plus the planner's own token for the authority.
struct Scene {
    server: Server,
    keys: Vec<(&'static str, SigningKey)>,
    database: Client,
    database_url: String,
    verifier: Verifier,
    /// The planner's first token, for the router.
    first: String,
    /// The token under test: for the database, presented by the executor.
    token: AccessToken,
    /// The planner's token for the authority's API (tokens for the authority carry no task).
    api_token: AccessToken,
}

const TXN: &str = "task-standing";

impl Scene {
    async fn start() -> Self {
        let server = Server::start().await;
        let mut keys = Vec::new();
        for name in ["planner", "router", "executor", "database"] {
            keys.push((name, server.register(name, &["read:db"]).await));
        }
        server.register("sink", &[]).await;
        for (from, to) in [
            ("planner", "router"),
            ("router", "executor"),
            ("executor", "database"),
            ("database", "sink"),
        ] {
            let (status, body) = server
                .admin_json(
                    Method::POST,
                    &format!("/v1/agents/{from}/delegations"),
                    Some(json!({"to": to, "permissions": ["read:db"]})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let key = |name: &str| keys.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        let first = planner_token(&server, &key("planner"), &id("router"), "read:db").await;
        let router = server.client("router", &key("router"));
        let second = router
            .exchange(&first.token, &spiffe("executor"), &scope("read:db"))
            .await
            .unwrap();
        let executor = server.client("executor", &key("executor"));
        let token = executor
            .exchange(&second.token, &spiffe("database"), &scope("read:db"))
            .await
            .unwrap();
        let api_token = planner_token(
            &server,
            &key("planner"),
            "spiffe://agentauth.local/authority",
            "audit:write",
        )
        .await;

        let mut config =
            VerifierConfig::new(&server.url, SpiffeId::parse(&id("database")).unwrap());
        config.revocation_poll = Duration::from_secs(60);
        let verifier = Verifier::connect(config).await.unwrap();
        let app = Router::new().route(
            "/rows",
            get(|| async { "rows" }).layer(verifier.require("read:db")),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let database_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, app).into_future());
        let database = server.client("database", &key("database"));
        Self {
            server,
            keys,
            database,
            database_url,
            verifier,
            first: first.token,
            token,
            api_token,
        }
    }

    fn key(&self, name: &str) -> &SigningKey {
        &self.keys.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn client(&self, name: &str) -> Client {
        self.server.client(name, self.key(name))
    }

    /// Applies `what` through the admin API, for the token under test and,
    /// where it has a counterpart, for the API token.
    async fn revoke(&self, what: Revoke) {
        let revoke = |kind: &'static str, value: String| async move {
            let (status, body) = self
                .server
                .admin_json(
                    Method::POST,
                    "/v1/revocations",
                    Some(json!({"kind": kind, "value": value})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        };
        let disable = |name: &'static str| async move {
            let (status, body) = self
                .server
                .admin_json(
                    Method::PATCH,
                    &format!("/v1/agents/{name}"),
                    Some(json!({"status": "disabled"})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        };
        match what {
            Revoke::Nothing => {}
            Revoke::TheToken => {
                revoke("token", claims(&self.token.token).jti).await;
                revoke("token", claims(&self.api_token.token).jti).await;
            }
            Revoke::ItsAncestor => revoke("token", claims(&self.first).jti).await,
            Revoke::ItsTask => {
                let (status, body) = self
                    .server
                    .admin_json(Method::POST, &format!("/v1/tasks/{TXN}/complete"), None)
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            Revoke::ItsKey => {
                // The executor's binds the token under test, the planner's the API token.
                for name in ["executor", "planner"] {
                    let jkt = self.key(name).public_jwk().thumbprint().0;
                    revoke("key", jkt).await;
                }
            }
            Revoke::ItsPresenter => disable("executor").await,
            Revoke::ItsSubject => disable("planner").await,
            Revoke::AnActorInTheMiddle => disable("router").await,
            Revoke::AnActorInTheMiddleDeleted => self.delete("router").await,
            Revoke::AnActorInTheMiddleReRegistered => {
                self.delete("router").await;
                self.server.register("router", &["read:db"]).await;
            }
        }
        self.verifier.refresh_revocations().await.unwrap();
    }

    async fn delete(&self, name: &str) {
        let (status, body) = self
            .server
            .admin_json(Method::DELETE, &format!("/v1/agents/{name}"), None)
            .await;
        assert!(status.is_success(), "{status}: {body}");
    }

    async fn verdicts(&self, what: Revoke) -> Verdicts {
        let executor = self.client("executor");
        let layer = executor
            .send(
                self.server.http.get(format!("{}/rows", self.database_url)),
                &self.token,
            )
            .await
            .unwrap();
        let layer_status = layer.status();
        let layer_body: Value = layer.json().await.unwrap_or(Value::Null);
        if layer_status != StatusCode::OK {
            assert_eq!(layer_body["check"], "revocation", "{what:?}: {layer_body}");
        }
        let introspection = self.server.introspect(&self.token.token).await;
        let exchange = self
            .database
            .exchange(&self.token.token, &spiffe("sink"), &scope("read:db"))
            .await;
        let api = match what.api_counterpart() {
            false => None,
            true => {
                let planner = self.client("planner");
                let request = self
                    .server
                    .http
                    .post(format!("{}/v1/audit/events", self.server.url))
                    .json(&json!({"events": []}));
                let response = planner.send(request, &self.api_token).await.unwrap();
                Some(response.status() == StatusCode::OK)
            }
        };
        Verdicts {
            layer: layer_status == StatusCode::OK,
            introspection: introspection["active"] == true,
            exchange: exchange.is_ok(),
            api,
        }
    }
}

/// The planner's client_credentials token for `audience` in the task.
async fn planner_token(
    server: &Server,
    key: &SigningKey,
    audience: &str,
    scope: &str,
) -> AccessToken {
    let (status, body) = server
        .form_as(
            "planner",
            key,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", audience),
                ("scope", scope),
                ("txn", TXN),
                ("purpose", "nightly report"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    AccessToken {
        token: body["access_token"].as_str().unwrap().to_owned(),
        scope: agentauth_core::Scope::parse(scope).unwrap(),
        expires_at: i64::MAX,
        issued_at: 0,
    }
}

#[tokio::test]
async fn every_door_gives_the_same_verdict_on_the_same_token() {
    let cases = [
        (Revoke::Nothing, true),
        (Revoke::TheToken, false),
        (Revoke::ItsAncestor, false),
        (Revoke::ItsTask, false),
        (Revoke::ItsKey, false),
        (Revoke::ItsPresenter, false),
        (Revoke::ItsSubject, false),
        (Revoke::AnActorInTheMiddle, false),
        (Revoke::AnActorInTheMiddleDeleted, false),
        (Revoke::AnActorInTheMiddleReRegistered, false),
    ];
    for (what, stands) in cases {
        let scene = Scene::start().await;
        scene.revoke(what).await;
        let got = scene.verdicts(what).await;
        let api = what.api_counterpart().then_some(stands);
        let want = Verdicts {
            layer: stands,
            introspection: stands,
            exchange: stands,
            api,
        };
        assert_eq!(got, want, "{what:?}");
        scene.server.stop().await;
    }
}
