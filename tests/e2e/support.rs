//! Shared fixtures: a running authority binary, agents with keys, raw HTTP helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use agentauth_core::{ClientAssertionClaims, SigningKey, random_b64, unix_now};
use agentauth_sdk::Client;
use agentauth_store::{ScratchDatabase, Store};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The trust domain every test authority uses.
pub const TRUST_DOMAIN: &str = "agentauth.local";

/// The SPIFFE ID of agent `name`.
/// The authority's own SPIFFE ID, the audience of tokens for its API.
pub const AUTHORITY: &str = "spiffe://agentauth.local/authority";

pub fn id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/agent/{name}")
}

/// The SPIFFE ID of the agent `name`, typed.
pub fn spiffe(name: &str) -> agentauth_core::SpiffeId {
    id(name).parse().expect("test agent names are valid")
}

/// A scope written in a test, known to be valid.
pub fn scope(text: &str) -> agentauth_core::Scope {
    agentauth_core::Scope::parse(text).expect("test scopes are valid")
}

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_agentauth")
}

/// A command for the binary with no inherited AGENTAUTH_* settings.
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("AGENTAUTH_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `cmd` to completion with captured output, killing it and failing the
/// test if it has not finished `within`.
pub fn output_within(cmd: &mut Command, within: Duration) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{cmd:?} did not finish within {within:?}");
        }
    }
}

/// A running `agentauth serve` process.
pub struct Server {
    child: Child,
    /// Base URL (also the issuer).
    pub url: String,
    /// The admin credential printed at first start.
    pub admin: String,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The database URL the server uses.
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
    scratch: Option<ScratchDatabase>,
    /// A plain HTTP client.
    pub http: reqwest::Client,
}

impl Server {
    /// `parent`'s spawn of `name` holding `agents:spawn read:db`, with a
    /// token for the authority; the answer's status and body, and the
    /// child's key.
    pub async fn spawn_child(
        &self,
        parent: &str,
        parent_key: &SigningKey,
        name: &str,
    ) -> (StatusCode, Value, SigningKey) {
        let (status, body) = self
            .token(parent, parent_key, AUTHORITY, "agents:spawn")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap();
        let key = SigningKey::generate_ed25519();
        let request = self
            .http
            .post(format!("{}/v1/agents", self.url))
            .json(&json!({
                "name": name, "permissions": ["agents:spawn", "read:db"], "expires_in": 600,
                "public_jwk": key.public_jwk().to_json()
            }));
        let response = send_with_token(request, token).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null), key)
    }

    /// An authority on SQLite in a fresh temporary data dir.
    pub async fn start() -> Self {
        Self::start_with(&[], &[]).await
    }

    /// Same, with extra `serve` flags and environment.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut server = Self::spawn(&data_dir, None, args, env);
        server._dir = Some(dir);
        server
    }

    /// An authority on a fresh PostgreSQL database at `DATABASE_URL`, or
    /// `None` when that PostgreSQL is not reachable and the test is skipped
    /// (the store's one rule: [`ScratchDatabase::for_test`]).
    pub async fn start_postgres() -> Option<Self> {
        let current = std::thread::current();
        let test = current.name().unwrap_or("(unnamed test)");
        let scratch = ScratchDatabase::for_test(test).await?;
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::spawn(&dir.path().join("data"), Some(&scratch.url), &[], &[]);
        server._dir = Some(dir);
        server.scratch = Some(scratch);
        Some(server)
    }

    /// Starts the binary on `data_dir` and waits for its listening line.
    pub fn spawn(
        data_dir: &Path,
        database_url: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let mut cmd = command();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let (url, admin) = read_banner(&mut child, data_dir);
        let database_url = database_url.map_or_else(
            || data_dir.join("agentauth.db").display().to_string(),
            str::to_owned,
        );
        Self {
            child,
            url,
            admin,
            data_dir: data_dir.to_owned(),
            database_url,
            _dir: None,
            scratch: None,
            http: reqwest::Client::new(),
        }
    }

    /// Kills the process with SIGKILL and reaps it: a crash, with no chance
    /// to flush or close anything. The data dir and database stay.
    pub fn crash(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Process ID, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit (after a signal) and returns whether it exited 0.
    pub fn wait_exit(&mut self, within: Duration) -> Option<bool> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The key the server authenticates audit records with (opened with its master key).
    pub async fn audit_key(&self) -> agentauth_core::AuditKey {
        agentauth_authority::MasterKey::load(&self.data_dir, None)
            .unwrap()
            .audit_key(&*self.store().await)
            .await
            .unwrap()
    }

    /// Opens the server's store directly, to check what was (not) written.
    pub async fn store(&self) -> Arc<dyn Store> {
        agentauth_store::open(&self.database_url).await.unwrap()
    }

    /// Registers `name` with `permissions` and a fresh Ed25519 key.
    pub async fn register(&self, name: &str, permissions: &[&str]) -> SigningKey {
        let key = SigningKey::generate_ed25519();
        let body = json!({"name": name, "permissions": permissions, "public_jwk": key.public_jwk().to_json()});
        let (status, answer) = self
            .admin_json(Method::POST, "/v1/agents", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        key
    }

    /// An SDK client for agent `name`.
    pub fn client(&self, name: &str, key: &SigningKey) -> Client {
        Client::new(
            &self.url,
            agentauth_core::SpiffeId::parse(&id(name)).unwrap(),
            key.clone(),
        )
    }

    /// An SDK client for agent `name` over `http` (custom roots, a client certificate).
    pub fn client_with_http(&self, name: &str, key: &SigningKey, http: reqwest::Client) -> Client {
        Client::with_http(
            &self.url,
            agentauth_core::SpiffeId::parse(&id(name)).unwrap(),
            key.clone(),
            http,
        )
    }

    /// Calls the admin API with the admin credential.
    pub async fn admin_json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.json_as(&self.admin, method, path, body).await
    }

    /// Adds an operator in `groups` and returns their credential.
    pub async fn add_operator(&self, name: &str, groups: &[&str]) -> String {
        let (status, body) = self
            .admin_json(
                Method::POST,
                "/v1/operators",
                Some(serde_json::json!({"name": name, "groups": groups})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["operator_token"].as_str().unwrap().to_owned()
    }

    /// Calls the API with `credential` (an operator's, or the admin's) as Bearer.
    pub async fn json_as(
        &self,
        credential: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Loads a policy set (file name, text) through the admin API.
    pub async fn load_policies(
        &self,
        files: &[(&str, &str)],
        activate: bool,
    ) -> (StatusCode, Value) {
        let files: Vec<Value> = files
            .iter()
            .map(|(name, text)| json!({"name": name, "text": text}))
            .collect();
        self.admin_json(
            Method::POST,
            "/v1/policies",
            Some(json!({"files": files, "activate": activate})),
        )
        .await
    }

    /// Loads and activates `policies/examples/`; returns the version.
    pub async fn activate_examples(&self) -> i64 {
        let owned = example_policies();
        let files: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let (status, body) = self.load_policies(&files, true).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["version"].as_i64().unwrap()
    }

    /// Posts a form and returns status and JSON.
    pub async fn form(&self, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .form(pairs)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Posts `params` to `path` authenticated as agent `name` (private_key_jwt
    /// with a fresh assertion).
    pub async fn form_as(
        &self,
        name: &str,
        key: &SigningKey,
        path: &str,
        params: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let assertion = self.assertion(name, key);
        let mut form = params.to_vec();
        form.push((
            "client_assertion_type",
            agentauth_core::CLIENT_ASSERTION_TYPE,
        ));
        form.push(("client_assertion", &assertion));
        self.form(path, &form).await
    }

    /// A fresh client assertion for `name` addressed to the issuer.
    pub fn assertion(&self, name: &str, key: &SigningKey) -> String {
        ClientAssertionClaims::sign(key, &id(name), &self.url, random_b64(16), unix_now())
    }

    /// A client_credentials request with a fresh assertion.
    pub async fn token(
        &self,
        name: &str,
        key: &SigningKey,
        audience: &str,
        scope: &str,
    ) -> (StatusCode, Value) {
        let assertion = self.assertion(name, key);
        let (status, body) = self.token_with(&assertion, audience, scope).await;
        if let Some(token) = body["access_token"].as_str() {
            remember_token_key(token, key);
        }
        (status, body)
    }

    /// A client_credentials request with the given assertion.
    pub async fn token_with(
        &self,
        assertion: &str,
        audience: &str,
        scope: &str,
    ) -> (StatusCode, Value) {
        self.form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    agentauth_core::CLIENT_ASSERTION_TYPE,
                ),
                ("client_assertion", assertion),
                ("resource", audience),
                ("scope", scope),
            ],
        )
        .await
    }

    /// What admin introspection (RFC 7662) says about `token`.
    pub async fn introspect(&self, token: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/oauth/introspect", self.url))
            .bearer_auth(&self.admin)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Records of the audit log as the admin API returns them for `query`
    /// (e.g. `?limit=1000`).
    /// The JWT-SVID keys of the trust bundle at `GET /v1/bundle`, as
    /// (`kid`, key); a JWT-SVID key never carries `x5c`.
    pub async fn jwt_svid_keys(&self) -> Vec<(String, agentauth_core::PublicJwk)> {
        let bundle: Value = self
            .http
            .get(format!("{}/v1/bundle", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        bundle["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "jwt-svid")
            .map(|k| {
                assert!(k.get("x5c").is_none(), "{k}");
                let mut jwk = k.clone();
                jwk.as_object_mut().unwrap().remove("use");
                let kid = jwk.as_object_mut().unwrap().remove("kid").unwrap();
                (
                    kid.as_str().unwrap().to_owned(),
                    agentauth_core::PublicJwk::from_json(&jwk).unwrap(),
                )
            })
            .collect()
    }

    pub async fn audit_records(&self, query: &str) -> Vec<Value> {
        let (status, body) = self
            .admin_json(Method::GET, &format!("/v1/audit{query}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["records"].as_array().unwrap().clone()
    }

    /// The reasons of the `token.refusals_counted` records so far, joined,
    /// waiting (at most 10 s) for the first one: refusals before
    /// authentication are written once per window.
    pub async fn counted_refusals(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.audit_records("?kind=token.refusals_counted").await;
            if !records.is_empty() {
                return records
                    .iter()
                    .map(|r| r["reason"].as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no token.refusals_counted record within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every entry of the revocation feed, as `GET /v1/revocations?since=0` lists them.
    pub async fn feed(&self) -> Vec<Value> {
        let feed: Value = self
            .http
            .get(format!("{}/v1/revocations?since=0", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        feed["revocations"].as_array().unwrap().clone()
    }

    /// Everything a refused write must leave unchanged.
    pub async fn snapshot(&self) -> Snapshot {
        let store = self.store().await;
        Snapshot {
            agents: serde_json::to_value(store.agents().await.unwrap()).unwrap(),
            revocations: store.revocations_since(0, 10_000).await.unwrap().len(),
            audit_head: store.audit_head().await.unwrap().0,
        }
    }

    /// Stops the server and drops its scratch database, if any.
    pub async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(scratch) = self.scratch.take() {
            scratch.drop_database().await.unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The claims of an access token, read without verifying it.
pub fn claims(token: &str) -> agentauth_core::AccessClaims {
    serde_json::from_slice(
        &agentauth_core::b64url_decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap()
}

/// The files of `policies/examples/`, sorted by name.
pub fn example_policies() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// What the store holds, for before/after comparisons.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    /// Every agent.
    pub agents: Value,
    /// Number of revocation entries.
    pub revocations: usize,
    /// Audit head sequence number.
    pub audit_head: i64,
}

/// Reads the listening URL and (on first start) the admin credential from stdout.
fn read_banner(child: &mut Child, data_dir: &Path) -> (String, String) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut url = None;
    let mut admin = None;
    while url.is_none() || admin.is_none() {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
            panic!("the server did not start; its log:\n{log}");
        };
        if let Some(rest) = line.strip_prefix("agentauth listening on ") {
            url = rest.split_whitespace().next().map(str::to_owned);
            // A restart on an existing data dir prints no credential: read the file.
            if let Ok(token) = std::fs::read_to_string(data_dir.join("admin-token")) {
                admin.get_or_insert(token.trim().to_owned());
            }
        } else if let Some((_, token)) = line.rsplit_once(": ")
            && line.starts_with("admin credential")
        {
            admin = Some(token.trim().to_owned());
        }
    }
    (url.unwrap(), admin.unwrap())
}

/// Keys of the tokens tests obtained, so requests to the authority's own API
/// can be signed (RFC 9421) by the key each token is bound to.
static TOKEN_KEYS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, SigningKey>>,
> = std::sync::LazyLock::new(Default::default);

/// Remembers which key `token` is bound to.
pub fn remember_token_key(token: &str, key: &SigningKey) {
    TOKEN_KEYS
        .lock()
        .unwrap()
        .insert(token.to_owned(), key.clone());
}

/// Sends `request` with `Authorization: Bearer token`, signed by the key the
/// token is bound to when the test knows it (unsigned otherwise).
pub async fn send_with_token(request: reqwest::RequestBuilder, token: &str) -> reqwest::Response {
    let mut request = request.bearer_auth(token).build().unwrap();
    let key = TOKEN_KEYS.lock().unwrap().get(token).cloned();
    if let Some(key) = key {
        let signer = Client::new(
            "http://127.0.0.1:1",
            agentauth_core::SpiffeId::parse(&id("signer")).unwrap(),
            key,
        );
        signer.sign(&mut request).unwrap();
    }
    reqwest::Client::new().execute(request).await.unwrap()
}

/// The selectors this test process has: its executable and its uid.
pub fn own_selectors() -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    vec![
        format!("unix:path:{}", exe.display()),
        format!("unix:uid:{uid}"),
    ]
}

/// An authority serving the Workload API on a socket in a temporary
/// directory, re-checking entries every second; the endpoint URI.
pub async fn authority_with_socket() -> (Server, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let s = Server::start_with(
        &[
            "--workload-socket",
            socket.to_str().unwrap(),
            "--replica-reread-secs",
            "1",
        ],
        &[],
    )
    .await;
    (s, dir, format!("unix://{}", socket.display()))
}

impl Server {
    /// Registers `name` with `permissions` and a Workload API entry of `selectors`.
    pub async fn register_entry(&self, name: &str, permissions: &[&str], selectors: &[String]) {
        let key = SigningKey::generate_ed25519();
        let (status, body) = self
            .admin_json(
                Method::POST,
                "/v1/agents",
                Some(json!({
                    "name": name, "permissions": permissions,
                    "public_jwk": key.public_jwk().to_json(), "selectors": selectors,
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["selectors"].as_array().unwrap().len(), selectors.len());
    }
}

/// An mTLS echo server on loopback for `source`, accepting `allowed`
/// clients; each accepted connection's peer SPIFFE ID goes to the channel.
pub async fn mtls_server(
    source: &std::sync::Arc<agentauth_sdk::mtls::SvidSource>,
    allowed: agentauth_sdk::mtls::AllowedPeers,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = agentauth_sdk::mtls::server_config(source, allowed).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let source = source.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx, source) = (acceptor.clone(), tx.clone(), source.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| source.peer_id(certs));
                let _ = tx.send(peer.map(|p| p.to_string()).unwrap_or_default());
                let mut buf = [0u8; 5];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(&buf).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, rx)
}

/// Dials `addr` with `config`, sends `hello` and reads it back; the
/// server's leaf certificate.
pub async fn mtls_call(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("agent.invalid").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"hello").await?;
    let mut back = [0u8; 5];
    tls.read_exact(&mut back).await?;
    assert_eq!(&back, b"hello");
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}
