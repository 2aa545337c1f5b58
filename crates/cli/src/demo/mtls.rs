//! The mutual-TLS scenario: a planner and an executor get their X.509-SVIDs
//! from the authority's Workload API (this process is the workload of both),
//! the planner gets tokens bound to its certificate (RFC 8705
//! tls_client_auth) and calls the executor over mutual TLS; the CA rotates
//! mid-run without a failed call; a token stolen onto another certificate is
//! refused, and so is the planner once disabled.

use std::os::unix::fs::MetadataExt as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentauth_api::{AgentPatch, AgentStatus, AgentView, NewAgent};
use agentauth_core::{AgentName, Scope, SigningKey, SpiffeId, TrustDomain, certificate_thumbprint};
use agentauth_sdk::mtls::{AllowedPeers, SvidSource, client_config, serve, server_config};
use agentauth_sdk::{Client, SdkError, VerifiedAgent, Verifier, VerifierConfig};
use anyhow::Context as _;
use serde_json::Value;

use super::{Admin, Step, report};

/// An HTTPS client over `source`'s current SVID that accepts only `peer`;
/// every request opens a fresh connection with a full handshake, so a
/// rotated certificate is presented at once.
fn mtls_client(source: &Arc<SvidSource>, peer: &SpiffeId) -> anyhow::Result<reqwest::Client> {
    let mut tls = client_config(source, AllowedPeers::Only(vec![peer.clone()]))?;
    tls.resumption = rustls::client::Resumption::disabled();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(0)
        .build()?)
}

/// The planner: its SVID source, and a token bound to the certificate it
/// was issued for, renewed whenever the certificate changes.
struct Planner {
    client: Client,
    source: Arc<SvidSource>,
    to_executor: reqwest::Client,
    executor: SpiffeId,
    scope: Scope,
    /// The token and the thumbprint of the certificate it is bound to.
    token: tokio::sync::Mutex<Option<(String, String)>>,
}

impl Planner {
    /// A token bound to the current certificate: the cached one, or a new one
    /// by tls_client_auth.
    async fn token(&self) -> anyhow::Result<String> {
        let now = certificate_thumbprint(&self.source.leaf());
        let mut cached = self.token.lock().await;
        if let Some((token, bound)) = &*cached
            && *bound == now
        {
            return Ok(token.clone());
        }
        let token = match self
            .client
            .fetch_certificate_bound_token(&self.source, &self.executor, &self.scope)
            .await
        {
            Ok(token) => token.token,
            Err(SdkError::TokenRefused { error, .. }) => anyhow::bail!("refused: {error}"),
            Err(e) => return Err(e.into()),
        };
        *cached = Some((token.clone(), now));
        Ok(token)
    }

    /// Calls the executor once; one retry if the certificate rotated between
    /// the token and the handshake.
    async fn call(&self, url: &str) -> String {
        for _ in 0..2 {
            let token = match self.token().await {
                Ok(token) => token,
                Err(e) => return e.to_string(),
            };
            let before = certificate_thumbprint(&self.source.leaf());
            let outcome = super::outcome(
                self.to_executor
                    .get(url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(Into::into),
            )
            .await;
            if outcome == "401 proof" && certificate_thumbprint(&self.source.leaf()) != before {
                continue;
            }
            return outcome;
        }
        "401 proof".into()
    }
}

pub(super) async fn run() -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("api.sock");
    let data_dir = dir.path().join("data");
    let config = agentauth_authority::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        tls: true,
        workload_socket: Some(socket.clone()),
        replica_reread_secs: 1,
        ..agentauth_authority::Config::default()
    };
    let authority = agentauth_authority::start(config, None)
        .await
        .map_err(|e| anyhow::anyhow!("starting the authority: {}", e.detail()))?;
    let bundle = authority.trust_bundle_pem();
    let https = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(bundle.as_bytes())?)
        .build()?;
    let admin = Admin {
        http: https.clone(),
        url: authority.issuer.clone(),
        token: authority
            .admin_token
            .clone()
            .context("a fresh authority prints its admin credential")?,
    };
    let endpoint = format!("unix://{}", socket.display());
    println!(
        "authority on {} (temporary data dir {}), Workload API on {endpoint}",
        admin.url,
        data_dir.display()
    );

    // Both agents' entries name this very process: its executable and uid.
    let exe = std::env::current_exe()?.canonicalize()?;
    let uid = std::fs::metadata("/proc/self")?.uid();
    let selectors = vec![
        format!("unix:path:{}", exe.display()),
        format!("unix:uid:{uid}"),
    ];
    let domain = TrustDomain::new("agentauth.local")?;
    let id = |name: &str| -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::agent(&domain, &AgentName::new(name)?))
    };
    for (name, permissions) in [("planner", vec!["read:db"]), ("executor", vec![])] {
        let body = NewAgent {
            name: name.to_owned(),
            description: String::new(),
            owner: String::new(),
            permissions: permissions.into_iter().map(str::to_owned).collect(),
            public_jwk: SigningKey::generate_ed25519().public_jwk().to_json(),
            bearer_allowed: false,
            expires_in: None,
            tags: vec![],
            selectors: selectors.clone(),
        };
        let _: AgentView = admin
            .send(reqwest::Method::POST, "/v1/agents", &body)
            .await?;
    }
    let thief_key = SigningKey::generate_ed25519();
    admin.register("thief", &["svid:x509"], &thief_key).await?;

    let planner_source = SvidSource::from_workload_api_for(&endpoint, &id("planner")?).await?;
    let executor_source = SvidSource::from_workload_api_for(&endpoint, &id("executor")?).await?;

    // The executor: /data needs read:db, behind its layer, over mutual TLS.
    let mut verifier_config = VerifierConfig::new(&admin.url, id("executor")?);
    verifier_config.http = Some(https.clone());
    verifier_config.revocation_poll = Duration::from_millis(200);
    let verifier = Verifier::connect(verifier_config).await?;
    async fn data(caller: VerifiedAgent) -> String {
        format!("rows for {}", caller.agent)
    }
    let router = axum::Router::new().route(
        "/data",
        axum::routing::get(data).layer(verifier.require("read:db")),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let executor_url = format!("https://localhost:{}/data", listener.local_addr()?.port());
    tokio::spawn(serve(
        listener,
        Arc::new(server_config(&executor_source, AllowedPeers::TrustDomain)?),
        executor_source.clone(),
        router,
    ));
    println!("executor on {executor_url}, over mutual TLS\n");

    // Its registered key is never used: the certificate authenticates it.
    let planner = Planner {
        client: Client::with_http(
            &admin.url,
            id("planner")?,
            SigningKey::generate_ed25519(),
            https.clone(),
        ),
        to_executor: mtls_client(&planner_source, &id("executor")?)?,
        source: planner_source.clone(),
        executor: id("executor")?,
        scope: Scope::parse("read:db")?,
        token: tokio::sync::Mutex::new(None),
    };
    let mut steps = Vec::new();

    let token = planner.token().await;
    let bound = token
        .as_ref()
        .ok()
        .and_then(|t| super::claims(t).ok())
        .and_then(|c| c.cnf)
        .and_then(|c| c.x5t_s256)
        .is_some_and(|x5t| x5t == certificate_thumbprint(&planner_source.leaf()));
    steps.push(Step {
        name: "planner: token by its certificate",
        expected: "bound to the certificate".into(),
        got: if bound {
            "bound to the certificate".into()
        } else {
            format!("{token:?}")
        },
    });
    steps.push(Step {
        name: "planner → executor over mTLS",
        expected: "200".into(),
        got: planner.call(&executor_url).await,
    });

    // The CA rotates at once: both agents get new SVIDs pushed while the
    // planner keeps calling.
    let first_leaf = planner_source.leaf();
    let _: Value = admin
        .send(
            reqwest::Method::POST,
            "/v1/ca/rotate",
            &serde_json::json!({"now": true}),
        )
        .await?;
    let (mut served, mut rounds) = (0, 0);
    for _ in 0..40 {
        rounds += 1;
        if planner.call(&executor_url).await == "200" {
            served += 1;
        }
        if planner_source.leaf() != first_leaf && rounds >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    steps.push(Step {
        name: "CA rotated mid-run: calls served",
        expected: format!("{rounds} of {rounds}"),
        got: format!("{served} of {rounds}"),
    });
    steps.push(Step {
        name: "the planner's certificate rotated",
        expected: "yes".into(),
        got: if planner_source.leaf() == first_leaf {
            "no".into()
        } else {
            "yes".into()
        },
    });

    // The planner's token, stolen, over the thief's own certificate.
    let thief_svid = Client::with_http(&admin.url, id("thief")?, thief_key, https.clone())
        .x509_svid()
        .await?;
    let thief = mtls_client(&SvidSource::new(&thief_svid)?, &id("executor")?)?;
    let stolen = planner.token().await?;
    steps.push(Step {
        name: "stolen token over another certificate",
        expected: "401 proof".into(),
        got: super::outcome(
            thief
                .get(&executor_url)
                .bearer_auth(&stolen)
                .send()
                .await
                .map_err(Into::into),
        )
        .await,
    });

    // The planner disabled: its token no longer passes the executor's check.
    admin
        .patch(
            "planner",
            &AgentPatch {
                status: Some(AgentStatus::Disabled),
                ..AgentPatch::default()
            },
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    steps.push(Step {
        name: "planner disabled → its next call",
        expected: "401 revocation".into(),
        got: planner.call(&executor_url).await,
    });
    *planner.token.lock().await = None;
    steps.push(Step {
        name: "planner disabled → a new token",
        expected: "refused: invalid_client".into(),
        got: match planner.token().await {
            Ok(_) => "issued".into(),
            Err(e) => e.to_string(),
        },
    });
    steps.push(Step {
        name: "audit chain",
        expected: "intact".into(),
        got: super::audit_verdict(&data_dir).await?,
    });
    drop(verifier);
    authority.shutdown().await;
    Ok(report(&steps))
}
