//! `agentauth serve` itself: first start and restarts, the master key,
//! configuration precedence, signals, log format, and PostgreSQL.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agentauth_core::{
    ClientAssertionClaims, SigningKey, b64url_decode, b64url_encode, random_b64, random_bytes,
    unix_now,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, command, id, output_within};

/// `agentauth serve` with its stdout captured line by line, for what the
/// fixture does not show: exactly what is printed.
struct Raw {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
}

impl Raw {
    fn spawn(data_dir: &Path) -> Self {
        let log = data_dir.with_extension("raw.log");
        let mut child = command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            log,
        }
    }

    /// The URL from the listening line.
    fn wait_listening(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("serve did not start; stdout {:?}, log:\n{log}", self.seen);
            };
            self.seen.push(line.clone());
            if let Some(rest) = line.strip_prefix("agentauth listening on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    }

    /// Sends SIGTERM; returns whether it exited 0 and everything it printed.
    fn terminate(mut self) -> (bool, Vec<String>) {
        sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        // The process is gone, so its stdout reaches end of file.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.success(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_secret_file_readable_by_others_refuses_the_start_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut first = Raw::spawn(&data_dir);
    first.wait_listening();
    assert!(first.terminate().0);
    for file in ["admin-token", "master.key", "agentauth.db"] {
        let path = data_dir.join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = output_within(
            command()
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data_dir),
            Duration::from_secs(30),
        );
        assert!(!out.status.success(), "{file}: the start is refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = path.display();
        assert!(
            stderr.contains(&format!("{shown} has mode 0644"))
                && stderr.contains(&format!("chmod 600 {shown}")),
            "{file}: {stderr}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut again = Raw::spawn(&data_dir);
    again.wait_listening();
    assert!(again.terminate().0, "with 0600 it starts again");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn get_json(http: &reqwest::Client, url: &str, admin: Option<&str>) -> (StatusCode, Value) {
    let mut request = http.get(url);
    if let Some(token) = admin {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_first_start_creates_private_files_and_names_the_admin_credentials_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    assert!(!data_dir.exists());

    let mut first = Raw::spawn(&data_dir);
    let url = first.wait_listening();
    assert_eq!(mode(&data_dir), 0o700, "the data dir is private");
    assert_eq!(mode(&data_dir.join("master.key")), 0o600);
    assert_eq!(mode(&data_dir.join("admin-token")), 0o600);
    assert_eq!(mode(&data_dir.join("agentauth.db")), 0o600);
    let master = std::fs::read_to_string(data_dir.join("master.key")).unwrap();
    assert_eq!(b64url_decode(master.trim()).unwrap().len(), 32);
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let admin = admin.trim().to_owned();
    assert!(admin.starts_with("aa_admin_"), "{admin}");
    let http = reqwest::Client::new();
    let (status, _) = get_json(&http, &format!("{url}/v1/agents"), Some(&admin)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the file holds the admin credential"
    );

    let (exited_cleanly, printed) = first.terminate();
    assert!(exited_cleanly);
    let credentials: Vec<&String> = printed
        .iter()
        .filter(|l| l.contains("admin credential"))
        .collect();
    assert_eq!(credentials.len(), 1, "{printed:?}");
    assert!(credentials[0].starts_with("admin credential"));
    assert!(
        printed.iter().all(|l| !l.contains(&admin)),
        "stdout is not a terminal: the credential is not printed: {printed:?}"
    );
    assert!(
        credentials[0].contains(&data_dir.join("admin-token").display().to_string()),
        "it says where the file is: {printed:?}"
    );

    let mut second = Raw::spawn(&data_dir);
    let url = second.wait_listening();
    // serve installs its signal handlers only after printing the banner, so a
    // SIGTERM sent on the banner itself may still kill it: be served first.
    let (status, _) = get_json(&http, &format!("{url}/healthz"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (exited_cleanly, printed) = second.terminate();
    assert!(exited_cleanly);
    assert!(
        printed
            .iter()
            .all(|l| !l.contains("admin credential") && !l.contains(&admin)),
        "a restart prints no credential: {printed:?}"
    );
    assert_eq!(
        std::fs::read_to_string(data_dir.join("admin-token"))
            .unwrap()
            .trim(),
        admin
    );
    assert_eq!(
        std::fs::read_to_string(data_dir.join("master.key")).unwrap(),
        master
    );
}

async fn introspect(s: &Server, token: &str) -> Value {
    s.http
        .post(format!("{}/oauth/introspect", s.url))
        .bearer_auth(&s.admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn jwks(s: &Server) -> Value {
    get_json(&s.http, &format!("{}/.well-known/jwks.json", s.url), None)
        .await
        .1
}

#[tokio::test]
async fn a_restart_keeps_the_signing_key_the_admin_credential_and_issued_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let first = Server::spawn(&data_dir, None, &[], &[]);
    let key = first.register("reader", &["read:customer"]).await;
    first.register("customer", &[]).await;
    let (status, body) = first
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let keys_before = jwks(&first).await;
    let admin = first.admin.clone();
    let issuer = first.url.clone();
    first.stop().await;

    // The same issuer URL, as a deployment behind a fixed address would have.
    let second = Server::spawn(&data_dir, None, &["--issuer", &issuer], &[]);
    assert_eq!(jwks(&second).await, keys_before, "the same signing key");
    let (status, agents) = get_json(
        &second.http,
        &format!("{}/v1/agents", second.url),
        Some(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the first credential still works");
    assert_eq!(agents["agents"].as_array().unwrap().len(), 2);

    let answer = introspect(&second, &token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["client_id"], id("reader"));

    let assertion =
        ClientAssertionClaims::sign(&key, &id("reader"), &issuer, random_b64(16), unix_now());
    let (status, body) = second
        .token_with(&assertion, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let header: Value = serde_json::from_slice(
        &b64url_decode(
            body["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], keys_before["keys"][0]["kid"]);
    assert_eq!(keys_before["keys"].as_array().unwrap().len(), 1);

    // The audit chain carried on across the restart.
    let out = output_within(
        command()
            .args(["audit", "verify", "--data-dir"])
            .arg(&data_dir),
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "audit log intact: 4 records, hash chain and authentication codes verified"
    );
}

/// Runs `serve` expecting it to fail at start-up; returns its stderr.
fn serve_fails(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_within(&mut cmd, Duration::from_secs(30));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "serve started: {stdout}");
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// Asserts that `stderr` is a single line mentioning `mentions`.
fn one_line(stderr: &str, mentions: &str) {
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(mentions),
        "\"{stderr}\" should mention \"{mentions}\""
    );
}

#[tokio::test]
async fn the_master_key_may_come_from_the_environment_and_only_the_same_key_unseals() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let master = b64url_encode(random_bytes(32));
    let env = [("AGENTAUTH_MASTER_KEY", master.as_str())];

    let first = Server::spawn(&data_dir, None, &[], &env);
    assert!(data_dir.join("admin-token").exists());
    assert!(
        !data_dir.join("master.key").exists(),
        "no key file when the key comes from the environment"
    );
    let keys = jwks(&first).await;
    first.register("reader", &[]).await;
    first.stop().await;

    let again = Server::spawn(&data_dir, None, &[], &env);
    assert_eq!(jwks(&again).await, keys);
    again.stop().await;

    let other = b64url_encode(random_bytes(32));
    let stderr = serve_fails(&data_dir, &[], &[("AGENTAUTH_MASTER_KEY", &other)]);
    one_line(
        &stderr,
        "error: starting the authority: a sealed key cannot be opened: wrong master key",
    );
    let stderr = serve_fails(&data_dir, &[], &[("AGENTAUTH_MASTER_KEY", "c2hvcnQ")]);
    one_line(&stderr, "the master key must be 32 bytes");
    // Without the variable a fresh key file is made, and it cannot unseal either.
    let stderr = serve_fails(&data_dir, &[], &[]);
    one_line(&stderr, "wrong master key");
    assert!(data_dir.join("master.key").exists());

    // The right key still works after all those refusals.
    let last = Server::spawn(&data_dir, None, &[], &env);
    assert_eq!(jwks(&last).await, keys);
    assert_eq!(last.snapshot().await.agents[0]["name"], "reader");
}

/// Registers reader and customer and gets a token; returns the trust domain
/// the authority announces and the token's lifetime.
async fn domain_and_lifetime(s: &Server) -> (String, i64) {
    let (_, metadata) = get_json(
        &s.http,
        &format!("{}/.well-known/oauth-authorization-server", s.url),
        None,
    )
    .await;
    let domain = metadata["trust_domain"].as_str().unwrap().to_owned();
    assert_eq!(
        metadata["authority_id"],
        format!("spiffe://{domain}/authority")
    );
    let key = SigningKey::generate_ed25519();
    let mut ids = Vec::new();
    for (name, permissions) in [
        ("reader", json!(["read:customer"])),
        ("customer", json!([])),
    ] {
        let (status, created) = s
            .admin_json(
                Method::POST,
                "/v1/agents",
                Some(json!({"name": name, "permissions": permissions, "public_jwk": key.public_jwk().to_json()})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["id"], format!("spiffe://{domain}/agent/{name}"));
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let assertion = ClientAssertionClaims::sign(&key, &ids[0], &s.url, random_b64(16), unix_now());
    let (status, body) = s.token_with(&assertion, &ids[1], "read:customer").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims: Value = serde_json::from_slice(
        &b64url_decode(
            body["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], ids[1]);
    let lifetime = body["expires_in"].as_i64().unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        lifetime
    );
    (domain, lifetime)
}

#[tokio::test]
async fn a_config_file_sets_defaults_that_the_environment_and_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agentauth.toml");
    std::fs::write(
        &file,
        "trust_domain = \"example.org\"\ntoken_lifetime_secs = 120\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let from_file = Server::start_with(&["--config", file], &[]).await;
    let over_file = Server::start_with(
        &["--config", file, "--token-lifetime-secs", "60"],
        &[("AGENTAUTH_TRUST_DOMAIN", "env.example")],
    )
    .await;
    let over_env = Server::start_with(
        &["--trust-domain", "flag.example"],
        &[
            ("AGENTAUTH_CONFIG", file),
            ("AGENTAUTH_TRUST_DOMAIN", "env.example"),
        ],
    )
    .await;
    assert_eq!(
        domain_and_lifetime(&from_file).await,
        ("example.org".to_owned(), 120)
    );
    assert_eq!(
        domain_and_lifetime(&over_file).await,
        ("env.example".to_owned(), 60),
        "the environment beats the file, a flag beats both"
    );
    assert_eq!(
        domain_and_lifetime(&over_env).await,
        ("flag.example".to_owned(), 120),
        "a flag beats the environment; AGENTAUTH_CONFIG names the file"
    );
    // A client ID in the default trust domain is not one of this authority's agents.
    let key = from_file.register("default-check", &[]).await;
    let (status, _) = from_file
        .token(
            "default-check",
            &key,
            "spiffe://example.org/agent/customer",
            "read:customer",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn serve_refuses_a_bad_configuration_before_touching_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };

    let unknown = config(
        "unknown.toml",
        "trust_domain = \"example.org\"\nlifetime = 5\n",
    );
    let stderr = serve_fails(&data_dir, &["--config", &unknown], &[]);
    one_line(
        &stderr,
        &format!("error: parsing {unknown} at line 2, column 1: unknown field `lifetime`"),
    );

    let stderr = serve_fails(&data_dir, &["--config", "/nonexistent/agentauth.toml"], &[]);
    one_line(&stderr, "reading /nonexistent/agentauth.toml");
    let zero = config("zero.toml", "token_lifetime_secs = 0\n");
    let stderr = serve_fails(&data_dir, &["--config", &zero], &[]);
    one_line(&stderr, "token_lifetime_secs");
    let stderr = serve_fails(&data_dir, &["--trust-domain", "Not A Domain"], &[]);
    one_line(&stderr, "not a valid trust domain");
    let stderr = serve_fails(&data_dir, &[], &[("AGENTAUTH_TOKEN_LIFETIME_SECS", "7200")]);
    one_line(&stderr, "max_token_lifetime_secs");
    assert!(!data_dir.exists(), "nothing was created");
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_server_with_exit_code_zero() {
    let (mut term, mut int) = (Server::start().await, Server::start().await);
    for (s, signal) in [(&mut term, "-TERM"), (&mut int, "-INT")] {
        // Sent the moment the banner appeared: the handlers are in place by then.
        let sent = Command::new("kill")
            .args([signal, &s.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        assert_eq!(
            s.wait_exit(Duration::from_secs(5)),
            Some(true),
            "{signal} ends the server with exit code 0"
        );
        assert!(
            s.http
                .get(format!("{}/healthz", s.url))
                .send()
                .await
                .is_err(),
            "nothing listens any more"
        );
    }
}

fn log_lines(s: &Server) -> Vec<String> {
    std::fs::read_to_string(s.data_dir.with_extension("log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn json_log_format_writes_one_json_object_per_stderr_line() {
    let info = ("RUST_LOG", "info");
    let by_flag = Server::start_with(&["--log-format", "json"], &[info]).await;
    let by_env = Server::start_with(&[], &[info, ("AGENTAUTH_LOG_FORMAT", "json")]).await;
    let human = Server::start_with(&[], &[info]).await;
    for s in [&by_flag, &by_env, &human] {
        let key = s.register("reader", &["read:customer"]).await;
        s.register("customer", &[]).await;
        let (status, _) = s
            .token("reader", &key, &id("customer"), "read:customer")
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    for s in [&by_flag, &by_env] {
        let lines = log_lines(s);
        assert!(lines.len() >= 2, "{lines:?}");
        let events: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        for event in &events {
            assert!(event["timestamp"].is_string(), "{event}");
            assert!(event["level"].is_string(), "{event}");
            assert!(event["fields"]["message"].is_string(), "{event}");
        }
        let issued = events
            .iter()
            .find(|e| e["fields"]["message"] == "token issued")
            .expect("the issuance is logged");
        assert_eq!(issued["level"], "INFO");
        assert_eq!(issued["fields"]["client"], id("reader"));
        assert_eq!(issued["fields"]["audience"], id("customer"));
    }
    let lines = log_lines(&human);
    assert!(
        lines.iter().any(|l| l.contains("token issued")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "the default format is for humans: {lines:?}"
    );
}

#[tokio::test]
async fn the_whole_flow_works_on_postgresql() {
    let Some(s) = Server::start_postgres().await else {
        return;
    };
    assert!(s.database_url.starts_with("postgres"));
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&s, &token).await["active"], true);
    assert!(
        !s.data_dir.join("agentauth.db").exists(),
        "no SQLite file when PostgreSQL is used"
    );

    let (status, _) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert_eq!(introspect(&s, &token).await, json!({"active": false}));
    let feed = get_json(&s.http, &format!("{}/v1/revocations?since=0", s.url), None)
        .await
        .1;
    assert_eq!(feed["revocations"][0]["subject"], id("reader"));
    assert_eq!(feed["revocations"][0]["action"], "revoke");

    let head = s.snapshot().await.audit_head;
    assert_eq!(
        head, 4,
        "2 created, issued, disabled; the refusal of a disabled client is counted into a window's record"
    );
    let out = output_within(
        command()
            .args(["audit", "verify", "--database-url", &s.database_url])
            .arg("--data-dir")
            .arg(&s.data_dir),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("audit log intact: {head} records, hash chain and authentication codes verified")
    );
    s.stop().await;
}
