//! The `agentauth` command line as a user runs it against a live authority:
//! agent administration, tokens, the audit log and the demo.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use agentauth_core::{
    ACCESS_TOKEN_TYP, AuditRecord, Header, SigningKey, b64url_decode, b64url_encode, chain_hash,
    sign_compact, verify_chain,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, command, id, output_within};

/// What a finished command left behind.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts failure with exactly one line on stderr starting with `error:`
    /// and mentioning `mentions`.
    fn fails_with(&self, mentions: &str) {
        assert!(!self.success, "expected failure, stdout: {}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got: {}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", self.stderr);
        assert!(
            lines[0].contains(mentions),
            "\"{}\" should mention \"{mentions}\"",
            lines[0]
        );
    }

    fn succeeds(&self) -> &Self {
        assert!(
            self.success,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

fn finish(output: Output) -> Run {
    Run {
        success: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn run(cmd: &mut Command) -> Run {
    finish(output_within(cmd, Duration::from_secs(30)))
}

/// `agentauth ARGS --data-dir <server data dir>` against the server.
fn cli(s: &Server, args: &[&str]) -> Run {
    run(command()
        .env("AGENTAUTH_URL", &s.url)
        .args(args)
        .arg("--data-dir")
        .arg(&s.data_dir))
}

/// `agentauth ARGS` with the admin credential in the environment.
fn cli_as(s: &Server, admin: &str, args: &[&str]) -> Run {
    run(command()
        .env("AGENTAUTH_URL", &s.url)
        .env("AGENTAUTH_ADMIN_TOKEN", admin)
        .args(args))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn agent_register_writes_a_private_key_that_matches_the_registry_entry() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("reader.key.json");
    let out = cli(
        &s,
        &[
            "agent",
            "register",
            "reader",
            "--permission",
            "read:customer",
            "-p",
            "read:orders",
            "--key-out",
            path_str(&key_file),
            "--description",
            "reads customers",
            "--owner",
            "team-a",
        ],
    );
    out.succeeds();
    assert!(
        out.stdout
            .contains("registered reader (spiffe://agentauth.local/agent/reader)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(path_str(&key_file)));

    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let private: Value =
        serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert!(private["d"].is_string(), "the file holds the private key");
    let key = SigningKey::from_private_jwk(&private).unwrap();

    let (status, entry) = s.admin_json(Method::GET, "/v1/agents/reader", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entry["public_jwk"], key.public_jwk().to_json());
    assert!(entry["public_jwk"].get("d").is_none());
    assert_eq!(entry["jkt"], key.public_jwk().thumbprint().0);
    assert_eq!(
        entry["permissions"],
        json!(["read:customer", "read:orders"])
    );
    assert_eq!(entry["description"], "reads customers");
    assert_eq!(entry["owner"], "team-a");

    // The key in the file is the one the authority accepts.
    s.register("customer", &[]).await;
    let (status, body) = s
        .token("reader", &key, &id("customer"), "read:orders")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let p256_file = dir.path().join("p256.key.json");
    cli(
        &s,
        &[
            "agent",
            "register",
            "p256-agent",
            "-p",
            "read:customer",
            "--key-type",
            "p256",
            "--key-out",
            path_str(&p256_file),
        ],
    )
    .succeeds();
    let private: Value =
        serde_json::from_str(&std::fs::read_to_string(&p256_file).unwrap()).unwrap();
    assert_eq!(
        (private["kty"].as_str(), private["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    let (_, entry) = s
        .admin_json(Method::GET, "/v1/agents/p256-agent", None)
        .await;
    let p256 = SigningKey::from_private_jwk(&private).unwrap();
    assert_eq!(entry["public_jwk"], p256.public_jwk().to_json());
    let out = cli(
        &s,
        &[
            "token",
            "get",
            "--key",
            path_str(&p256_file),
            "--agent",
            "p256-agent",
            "--audience",
            "customer",
            "--scope",
            "read:customer",
        ],
    );
    assert_eq!(
        claims(out.succeeds().stdout.trim())["cnf"]["jkt"],
        p256.public_jwk().thumbprint().0
    );
}

#[tokio::test]
async fn agent_register_never_overwrites_a_key_and_leaves_nothing_behind_when_refused() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("reader.key.json");
    cli(
        &s,
        &[
            "agent",
            "register",
            "reader",
            "--key-out",
            path_str(&key_file),
        ],
    )
    .succeeds();
    let original = std::fs::read(&key_file).unwrap();
    let before = s.snapshot().await;

    let out = cli(
        &s,
        &[
            "agent",
            "register",
            "writer",
            "--key-out",
            path_str(&key_file),
        ],
    );
    out.fails_with("reader.key.json");
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        original,
        "the key is intact"
    );
    assert_eq!(s.snapshot().await, before, "no agent was registered");

    let invalid = dir.path().join("invalid.key.json");
    let out = cli(
        &s,
        &[
            "agent",
            "register",
            "Bad_Name",
            "--key-out",
            path_str(&invalid),
        ],
    );
    out.fails_with("not a valid agent name");
    assert!(!invalid.exists(), "no key file for an invalid name");
    let out = cli(
        &s,
        &[
            "agent",
            "register",
            "writer",
            "-p",
            "not a permission",
            "--key-out",
            path_str(&invalid),
        ],
    );
    out.fails_with("400 invalid_request");
    assert!(
        !invalid.exists(),
        "a refused registration removes its key file"
    );

    let taken = dir.path().join("taken.key.json");
    let out = cli(
        &s,
        &["agent", "register", "reader", "--key-out", path_str(&taken)],
    );
    out.fails_with("409 conflict");
    assert!(
        !taken.exists(),
        "a refused registration removes its key file"
    );
    assert_eq!(s.snapshot().await, before);
}

fn list_rows(out: &Run) -> Vec<Vec<String>> {
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn agent_list_show_disable_enable_and_delete_manage_the_registry() {
    let s = Server::start().await;
    s.register("reader", &["read:orders", "read:customer"])
        .await;
    s.register("customer", &[]).await;

    let out = cli(&s, &["agent", "list"]);
    out.succeeds();
    assert_eq!(
        list_rows(&out),
        [
            vec!["customer", "active", id("customer").as_str()],
            vec![
                "reader",
                "active",
                id("reader").as_str(),
                "read:customer",
                "read:orders"
            ],
        ]
    );

    let out = cli_as(&s, &s.admin, &["agent", "show", "reader"]);
    out.succeeds();
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    let (_, entry) = s.admin_json(Method::GET, "/v1/agents/reader", None).await;
    assert_eq!(shown, entry);

    let status = || async {
        s.admin_json(Method::GET, "/v1/agents/reader", None).await.1["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let out = cli(&s, &["agent", "disable", "reader"]);
    out.succeeds();
    assert_eq!(status().await, "disabled");
    assert_eq!(list_rows(&out)[0][..2], ["reader", "disabled"]);
    assert_eq!(list_rows(&cli(&s, &["agent", "list"]))[1][1], "disabled");
    cli(&s, &["agent", "enable", "reader"]).succeeds();
    assert_eq!(status().await, "active");

    let out = cli(&s, &["agent", "delete", "reader"]);
    out.succeeds();
    assert_eq!(out.stdout.trim(), "deleted reader");
    let (code, _) = s.admin_json(Method::GET, "/v1/agents/reader", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(list_rows(&cli(&s, &["agent", "list"])).len(), 1);

    cli(&s, &["agent", "show", "reader"]).fails_with("404 not_found");
    cli(&s, &["agent", "disable", "reader"]).fails_with("404 not_found");
    cli(&s, &["agent", "delete", "reader"]).fails_with("404 not_found");
    cli(&s, &["agent", "show", "Reader"]).fails_with("not a valid agent name");

    let audit = s
        .store()
        .await
        .audit_records(&Default::default())
        .await
        .unwrap();
    let kinds: Vec<&str> = audit.iter().map(|r| r.event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "agent.created",
            "agent.created",
            "agent.updated",
            "agent.updated",
            "agent.deleted"
        ]
    );
}

#[tokio::test]
async fn admin_commands_need_a_valid_admin_credential() {
    let s = Server::start().await;
    s.register("reader", &[]).await;
    let before = s.snapshot().await;

    let nowhere = tempfile::tempdir().unwrap();
    let out = run(command()
        .env("AGENTAUTH_URL", &s.url)
        .args(["agent", "delete", "reader", "--data-dir"])
        .arg(nowhere.path()));
    out.fails_with("no admin credential");
    cli_as(&s, "aa_admin_wrong", &["agent", "delete", "reader"]).fails_with("401 invalid_token");
    cli_as(&s, "aa_admin_wrong", &["agent", "list"]).fails_with("401");
    assert_eq!(s.snapshot().await, before);

    // AGENTAUTH_ADMIN_TOKEN wins over the data dir's file.
    let out = run(command()
        .env("AGENTAUTH_URL", &s.url)
        .env("AGENTAUTH_ADMIN_TOKEN", "aa_admin_wrong")
        .args(["agent", "list", "--data-dir"])
        .arg(&s.data_dir));
    out.fails_with("401");
    let out = run(command().env("AGENTAUTH_ADMIN_TOKEN", &s.admin).args([
        "agent",
        "list",
        "--authority",
        s.url.as_str(),
    ]));
    assert_eq!(list_rows(out.succeeds())[0][0], "reader");
}

fn write_key(dir: &Path, key: &SigningKey) -> String {
    let path = dir.join("agent.key.json");
    std::fs::write(&path, key.to_private_jwk().to_string()).unwrap();
    path_str(&path).to_owned()
}

#[tokio::test]
async fn token_get_prints_a_jwt_for_the_audience_and_refuses_a_scope_not_held() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = write_key(dir.path(), &key);
    let get = |audience: &str, scope: &str| {
        cli(
            &s,
            &[
                "token",
                "get",
                "--key",
                &key_file,
                "--agent",
                "reader",
                "--audience",
                audience,
                "--scope",
                scope,
            ],
        )
    };

    let out = get("customer", "read:customer");
    out.succeeds();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let token = out.stdout.trim();
    assert_eq!(token.split('.').count(), 3);
    let c = claims(token);
    assert_eq!(c["aud"], id("customer"));
    assert_eq!(c["sub"], id("reader"));
    assert_eq!(c["iss"], s.url);
    assert_eq!(c["scope"], "read:customer");
    assert_eq!(c["cnf"]["jkt"], key.public_jwk().thumbprint().0);
    let introspected: Value = s
        .http
        .post(format!("{}/oauth/introspect", s.url))
        .bearer_auth(&s.admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);

    let out = get(&id("customer"), "read:customer");
    assert_eq!(claims(out.succeeds().stdout.trim())["aud"], id("customer"));
    let out = cli(
        &s,
        &[
            "token",
            "get",
            "--key",
            &key_file,
            "--agent",
            "reader",
            "--audience",
            "customer",
            "--scope",
            "read:customer",
            "--expires-in",
            "42",
        ],
    );
    let c = claims(out.succeeds().stdout.trim());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 42);

    let before = s.snapshot().await;
    let out = get("customer", "write:customer");
    out.fails_with("invalid_scope");
    assert!(out.stderr.contains("write:customer"));
    assert!(out.stdout.is_empty(), "no token on stdout");
    get("nobody", "read:customer").fails_with("invalid_target");
    assert_eq!(s.snapshot().await.agents, before.agents);

    let stranger = tempfile::tempdir().unwrap();
    let other_key = write_key(stranger.path(), &SigningKey::generate_ed25519());
    let out = cli(
        &s,
        &[
            "token",
            "get",
            "--key",
            &other_key,
            "--agent",
            "reader",
            "--audience",
            "customer",
            "--scope",
            "read:customer",
        ],
    );
    out.fails_with("invalid_client");
    let out = cli(
        &s,
        &[
            "token",
            "get",
            "--key",
            "/nonexistent/key.json",
            "--agent",
            "reader",
            "--audience",
            "customer",
            "--scope",
            "read:customer",
        ],
    );
    out.fails_with("/nonexistent/key.json");
}

#[tokio::test]
async fn token_inspect_accepts_a_genuine_token_and_rejects_an_altered_one() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let (_, body) = s
        .token("reader", &key, &id("customer"), "read:customer")
        .await;
    let token = body["access_token"].as_str().unwrap();
    let kid =
        serde_json::from_slice::<Value>(&b64url_decode(token.split('.').next().unwrap()).unwrap())
            .unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned();

    let out = cli(&s, &["token", "inspect", token]);
    out.succeeds();
    assert!(
        out.stdout
            .contains(&format!("signature: valid (key {kid}), issuer: {}", s.url)),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&id("customer")), "the claims are shown");

    let mut altered = claims(token);
    altered["scope"] = json!("read:customer write:customer");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(altered.to_string()),
        parts[2]
    );
    let out = cli(&s, &["token", "inspect", &forged]);
    assert!(!out.success, "{}", out.stdout);
    assert!(out.stdout.contains("INVALID"), "{}", out.stdout);
    assert!(!out.stdout.contains("signature: valid"));

    let foreign = SigningKey::generate_ed25519();
    let header = Header {
        alg: foreign.alg(),
        typ: Some(ACCESS_TOKEN_TYP.into()),
        kid: Some("not-ours".into()),
        jwk: None,
    };
    let signed = sign_compact(&header, &claims(token), &foreign);
    cli(&s, &["token", "inspect", &signed]).fails_with("INVALID");
    cli(&s, &["token", "inspect", "not-a-token"]).fails_with("not an agentauth access token");
}

/// Stops the server with SIGTERM so that its data dir stays and SQLite is closed.
fn stop_gracefully(s: &mut Server) {
    let status = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(true));
}

/// A copy of the data dir (database with its WAL files, keys).
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

async fn tamper(dir: &Path, statements: &[&'static str]) {
    let url = format!("sqlite://{}", dir.join("agentauth.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in statements {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

fn verify(dir: &Path) -> Run {
    run(command().args(["audit", "verify", "--data-dir"]).arg(dir))
}

/// A server with five audit records: two agents, two tokens, one refusal.
async fn busy_server() -> Server {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    for scope in ["read:customer", "read:customer", "write:customer"] {
        s.token("reader", &key, &id("customer"), scope).await;
    }
    assert_eq!(s.snapshot().await.audit_head, 5);
    s
}

#[tokio::test]
async fn audit_verify_passes_an_intact_log_and_names_the_first_tampered_record() {
    let mut s = busy_server().await;
    let live = verify(&s.data_dir);
    live.succeeds();
    assert_eq!(
        live.stdout.trim(),
        "audit log intact: 5 records, hash chain and authentication codes verified"
    );
    stop_gracefully(&mut s);
    verify(&s.data_dir).succeeds();

    let cases: [(&str, &[&'static str], &str); 4] = [
        (
            "an edited record",
            &["UPDATE audit_log SET decision = 'deny' WHERE seq = 2"],
            "audit record 2: its content does not match its hash",
        ),
        (
            "a removed record",
            &["DELETE FROM audit_log WHERE seq = 2"],
            "audit record 3: expected record 2 here",
        ),
        (
            "two swapped records",
            &[
                "UPDATE audit_log SET seq = -2 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = -2",
            ],
            "audit record 2: its link to the previous record is broken",
        ),
        (
            "a cut-off tail",
            &["DELETE FROM audit_log WHERE seq = 5"],
            "audit record 5: the log ends at record 4 but its head says 5",
        ),
    ];
    for (what, statements, expected) in cases {
        let copy = copy_dir(&s.data_dir);
        verify(copy.path()).succeeds();
        tamper(copy.path(), statements).await;
        let out = verify(copy.path());
        assert!(!out.success, "{what} went unnoticed: {}", out.stdout);
        assert!(
            out.stdout
                .contains(&format!("audit log TAMPERED: {expected}")),
            "{what}: {}",
            out.stdout
        );
    }

    // A database writer who edits record 2 and recomputes every hash after
    // it, and the head, still cannot write the records' authentication codes.
    let copy = copy_dir(&s.data_dir);
    let url = format!("sqlite://{}", copy.path().join("agentauth.db").display());
    let store = agentauth_store::open(&url).await.unwrap();
    let mut records = store.audit_records(&Default::default()).await.unwrap();
    drop(store);
    records[1].event.decision = agentauth_core::Decision::Deny;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut prev = records[0].hash.clone();
    for r in &mut records[1..] {
        r.hash = chain_hash(&prev, r.seq, &r.event);
        sqlx::query("UPDATE audit_log SET decision = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(r.event.decision.as_str())
            .bind(&prev)
            .bind(&r.hash)
            .bind(r.seq)
            .execute(&pool)
            .await
            .unwrap();
        prev.clone_from(&r.hash);
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&prev)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = verify(copy.path());
    assert!(!out.success);
    assert!(
        out.stdout
            .contains("audit log TAMPERED: audit record 2: its authentication code is wrong"),
        "{}",
        out.stdout
    );
    // Nor can anyone verify without the master key.
    let keyless = copy_dir(&s.data_dir);
    std::fs::remove_file(keyless.path().join("master.key")).unwrap();
    verify(keyless.path()).fails_with("master key");

    let empty = tempfile::tempdir().unwrap();
    verify(empty.path()).fails_with("no audit log at");
}

#[tokio::test]
async fn a_signed_checkpoint_proves_nothing_before_it_changed_or_went() {
    let mut s = busy_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoint.jws");
    cli(&s, &["audit", "checkpoint", "--out", path_str(&file)]).succeeds();
    let printed = cli(&s, &["audit", "checkpoint"]).succeeds().stdout.clone();
    assert_eq!(
        printed.trim().split('.').count(),
        3,
        "a compact JWS: {printed}"
    );
    let checkpoint = std::fs::read_to_string(&file).unwrap();
    let said = claims(checkpoint.trim());
    assert_eq!(said["seq"], 5, "{said}");
    // Taking a checkpoint is audited, after the head it covers.
    let records = s.audit_records("?limit=1000").await;
    assert_eq!(records[5]["kind"], "audit.checkpoint");
    assert_eq!(records[5]["actor"], "admin");
    stop_gracefully(&mut s);

    let with_checkpoint = |dir: &Path| {
        run(command()
            .args(["audit", "verify", "--checkpoint"])
            .arg(&file)
            .arg("--data-dir")
            .arg(dir))
    };
    let out = with_checkpoint(&s.data_dir);
    assert!(
        out.succeeds()
            .stdout
            .contains("unchanged up to the checkpoint at record 5"),
        "{}",
        out.stdout
    );

    // Cutting off the tail and rewinding the head leaves a chain that is
    // intact on its own; the checkpoint shows what went.
    let copy = copy_dir(&s.data_dir);
    tamper(
        copy.path(),
        &[
            "DELETE FROM audit_log WHERE seq >= 4",
            "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3) WHERE id = 1",
        ],
    )
    .await;
    verify(copy.path()).succeeds();
    let out = with_checkpoint(copy.path());
    assert!(!out.success);
    assert!(
        out.stdout
            .contains("audit log TAMPERED: the log ends at record 3 but the checkpoint covers 5"),
        "{}",
        out.stdout
    );

    // An altered checkpoint is refused, as is one of another authority.
    let mut parts: Vec<String> = checkpoint.trim().split('.').map(str::to_owned).collect();
    let mut forged = said.clone();
    forged["seq"] = json!(2);
    parts[1] = agentauth_core::b64url_encode(serde_json::to_vec(&forged).unwrap());
    std::fs::write(&file, parts.join(".")).unwrap();
    let out = with_checkpoint(&s.data_dir);
    assert!(!out.success);
    assert!(
        out.stdout
            .contains("checkpoint REFUSED: the checkpoint's signature is wrong"),
        "{}",
        out.stdout
    );
    let other = busy_server().await;
    let foreign = cli(&other, &["audit", "checkpoint"])
        .succeeds()
        .stdout
        .clone();
    std::fs::write(&file, foreign).unwrap();
    let out = with_checkpoint(&s.data_dir);
    assert!(out.stdout.contains("checkpoint REFUSED"), "{}", out.stdout);
}

#[tokio::test]
async fn audit_export_writes_one_json_record_per_line_up_to_the_head() {
    let s = busy_server().await;
    let out = cli(&s, &["audit", "export"]);
    out.succeeds();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (head, head_hash) = s.store().await.audit_head().await.unwrap();
    assert_eq!(lines.len() as i64, head);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"], i as i64 + 1);
        for field in ["hash", "prev_hash", "kind", "actor", "decision"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }
    assert_eq!(lines[0]["kind"], "agent.created");
    assert_eq!(lines[4]["kind"], "token.refused");
    let records: Vec<AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_value(l.clone()).unwrap())
        .collect();
    let key = s.audit_key().await;
    assert_eq!(verify_chain(&records, head, &head_hash, &key), Ok(head));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let out = cli(&s, &["audit", "export", "--out", path_str(&file)]);
    assert!(out.succeeds().stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        cli(&s, &["audit", "export"]).stdout
    );
}

#[tokio::test]
async fn audit_tail_prints_the_latest_records() {
    let s = busy_server().await;
    s.register("other", &[]).await;
    s.register("another", &[]).await;
    // seq 6 and 7 are the two new agents.
    let out = cli(&s, &["audit", "tail", "--lines", "5"]);
    out.succeeds();
    let rows = list_rows(&out);
    let seqs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(seqs, ["3", "4", "5", "6", "7"]);
    assert_eq!(rows[0][2], "token.issued");
    assert_eq!(rows[2][2], "token.refused");
    assert_eq!(rows[2][3], "deny");
    assert!(rows[4].contains(&format!("subject={}", id("another"))));

    let out = cli(
        &s,
        &["audit", "tail", "--lines", "100", "--agent", "customer"],
    );
    let rows = list_rows(out.succeeds());
    let seqs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(seqs, ["2", "3", "4", "5"]);
    assert!(
        out.stdout.lines().all(|l| l.contains(&id("customer"))),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn demo_runs_every_step_as_expected() {
    let out = run(command().arg("demo"));
    out.succeeds();
    assert!(
        out.stdout.contains("all 13 steps behaved as expected"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("FAIL"));
    for step in [
        "waits for approval",
        "agentauth approvals approve",
        "refund after the approval",
    ] {
        assert!(
            out.stdout.contains(step),
            "{step} missing from {}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn demo_chain_runs_every_step_as_expected() {
    let out = run(command().args(["demo", "chain"]));
    out.succeeds();
    assert!(
        out.stdout.contains("all 10 steps behaved as expected"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("FAIL"));
    for step in [
        "3-hop call",
        "escalates",
        "tampered body",
        "replayed request",
        "stolen token",
        "task revoked mid-flight",
    ] {
        assert!(
            out.stdout.contains(step),
            "{step} missing from {}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn demo_mtls_runs_every_step_as_expected() {
    let out = run(command().args(["demo", "mtls"]));
    out.succeeds();
    assert!(
        out.stdout.contains("all 8 steps behaved as expected"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("FAIL"));
    for step in [
        "token by its certificate",
        "CA rotated mid-run",
        "certificate rotated",
        "stolen token over another certificate",
        "planner disabled",
    ] {
        assert!(
            out.stdout.contains(step),
            "{step} missing from {}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn an_unreachable_authority_is_reported_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = write_key(dir.path(), &SigningKey::generate_ed25519());
    let unreachable = |args: &[&str]| {
        run(command()
            .env("AGENTAUTH_URL", "http://127.0.0.1:1")
            .env("AGENTAUTH_ADMIN_TOKEN", "aa_admin_x")
            .args(args))
    };
    unreachable(&["agent", "list"]).fails_with("cannot reach the authority at http://127.0.0.1:1");
    unreachable(&["agent", "disable", "reader"]).fails_with("cannot reach the authority");
    unreachable(&["audit", "tail"]).fails_with("cannot reach the authority");
    unreachable(&[
        "token",
        "get",
        "--key",
        &key_file,
        "--agent",
        "reader",
        "--audience",
        "customer",
        "--scope",
        "read:customer",
    ])
    .fails_with("authority unreachable");
    let out = unreachable(&[
        "agent",
        "register",
        "reader",
        "--key-out",
        &format!("{}/new.json", dir.path().display()),
    ]);
    out.fails_with("cannot reach the authority");
    assert!(
        !dir.path().join("new.json").exists(),
        "no key is left behind"
    );
}

/// A directory holding the given policy files.
fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn policy_load_refuses_an_invalid_set_with_positions_and_keeps_the_active_version() {
    let s = Server::start().await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples");
    let out = cli(&s, &["policy", "load", path_str(&examples), "--activate"]);
    out.succeeds();
    assert!(
        out.stdout
            .contains("loaded policy set version 1 (8 policies"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("activated policy set version 1"),
        "{}",
        out.stdout
    );
    let before = s.snapshot().await;

    let bad = policy_dir(&[
        (
            "good.cedar",
            "permit (principal, action in Action::\"read\", resource);\n",
        ),
        (
            "bad.cedar",
            "// two problems\npermit (principal, action, resource)\nwhen { principal.shoe_size > 3 };\n",
        ),
        ("notes.txt", "not a policy"),
    ]);
    let out = cli(&s, &["policy", "load", path_str(bad.path()), "--activate"]);
    assert!(!out.success);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(lines[0].starts_with("bad.cedar:3:"), "{}", out.stderr);
    assert!(lines[0].contains("shoe_size"), "{}", out.stderr);
    let last = lines.last().unwrap();
    assert!(last.starts_with("error: "), "{}", out.stderr);
    assert!(last.contains("active version is unchanged"), "{last}");
    assert_eq!(s.snapshot().await, before, "nothing was written");

    let out = cli(&s, &["policy", "list"]);
    let listed = out.succeeds().stdout.lines().count();
    assert_eq!(listed, 1, "{}", out.stdout);
    assert!(out.stdout.contains("active"), "{}", out.stdout);
}

#[tokio::test]
async fn policy_versions_are_shown_diffed_activated_and_tested_from_the_cli() {
    let s = Server::start().await;
    s.register("reader", &["read:customer", "payments:create"])
        .await;
    s.register("customer", &[]).await;
    let v1 = policy_dir(&[(
        "reads.cedar",
        "@id(\"reads\")\npermit (principal, action in Action::\"read\", resource);\n",
    )]);
    let v2 = policy_dir(&[
        (
            "reads.cedar",
            "@id(\"reads\")\npermit (principal, action in Action::\"read\", resource)\nwhen { context.environment == \"production\" };\n",
        ),
        (
            "pay.cedar",
            "@id(\"pay\") @approval(\"required\") @approvers(\"finance\")\npermit (principal, action in Action::\"payments\", resource);\n",
        ),
    ]);
    cli(&s, &["policy", "load", path_str(v1.path()), "--activate"]).succeeds();
    cli(&s, &["policy", "load", path_str(v2.path())]).succeeds();

    let out = cli(&s, &["policy", "show", "2"]);
    out.succeeds();
    assert!(out.stdout.contains("// file: pay.cedar"), "{}", out.stdout);
    assert!(out.stdout.contains("pay"), "{}", out.stdout);

    let out = cli(&s, &["policy", "diff", "1", "2"]);
    out.succeeds();
    assert!(
        out.stdout
            .contains("+when { context.environment == \"production\" };"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("pay.cedar"), "{}", out.stdout);
    let out = cli(&s, &["policy", "diff", "2", "2"]);
    assert_eq!(out.succeeds().stdout.trim(), "no differences");

    let test = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "test",
            "--principal",
            "reader",
            "--action",
            "payments:create",
            "--resource",
            "customer",
        ];
        args.extend_from_slice(extra);
        cli(&s, &args)
    };
    let out = test(&[]);
    assert!(
        out.succeeds().stdout.contains("decision: deny"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("no policy permits it"),
        "{}",
        out.stdout
    );
    let out = test(&["--version", "2"]);
    assert!(
        out.succeeds().stdout.contains("decision: needs approval"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("finance"), "{}", out.stdout);
    assert!(out.stdout.contains("determined by: pay"), "{}", out.stdout);
    let out = test(&[
        "--dir",
        path_str(v2.path()),
        "--context",
        "{\"environment\": \"production\"}",
    ]);
    assert!(
        out.succeeds().stdout.contains("needs approval"),
        "{}",
        out.stdout
    );
    let out = test(&["--context", "[1]"]);
    out.fails_with("JSON object");

    let out = cli(&s, &["policy", "activate", "2"]);
    assert_eq!(
        out.succeeds().stdout.trim(),
        "activated policy set version 2"
    );
    let out = cli(&s, &["policy", "activate", "7"]);
    out.fails_with("not found");
    let out = cli(
        &s,
        &[
            "policy",
            "test",
            "--principal",
            "reader",
            "--action",
            "read:customer",
            "--resource",
            "customer",
        ],
    );
    assert!(
        out.succeeds().stdout.contains("decision: deny"),
        "development is not production: {}",
        out.stdout
    );
}

#[tokio::test]
async fn approvals_are_listed_approved_and_denied_from_the_cli() {
    let s = Server::start_with(&["--approval-interval-secs", "1"], &[]).await;
    let key = s
        .register("payer", &["payments:create", "payments:refund"])
        .await;
    s.register("bank", &[]).await;
    s.activate_examples().await;
    let ask = |scope: &'static str| {
        let key = key.clone();
        let s = &s;
        async move {
            let (status, body) = s.token("payer", &key, &id("bank"), scope).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            body["approval_id"].as_str().unwrap().to_owned()
        }
    };
    let create = ask("payments:create").await;
    let refund = ask("payments:refund").await;

    let out = cli(&s, &["approvals", "list"]);
    let listed = out.succeeds().stdout.clone();
    assert!(
        listed.contains(&create) && listed.contains(&refund),
        "{listed}"
    );
    assert!(listed.contains("approvers=finance"), "{listed}");

    // The policy names finance as approvers: the admin credential cannot decide.
    cli(&s, &["approvals", "approve", &create])
        .fails_with("only operators in the \"finance\" group");
    let operator = |name: &str| {
        let out = cli(&s, &["operator", "add", name, "--group", "finance"]);
        let token = out.succeeds().stdout.trim().to_owned();
        assert!(
            token.starts_with("aa_op_"),
            "stdout is only the credential: {token}"
        );
        token
    };
    let (alice, bob) = (operator("alice"), operator("bob"));
    let listed = cli(&s, &["operator", "list"]).succeeds().stdout.clone();
    assert!(listed.contains("alice groups=finance"), "{listed}");
    assert!(!listed.contains(&alice), "a credential is shown once");
    let out = cli_as(
        &s,
        &alice,
        &[
            "approvals",
            "approve",
            &create,
            "--by",
            "alice",
            "--reason",
            "invoice checked",
        ],
    );
    assert_eq!(out.succeeds().stdout.trim(), format!("approved {create}"));
    let out = cli_as(&s, &bob, &["approvals", "deny", &refund]);
    assert!(!out.success, "a denial needs a reason");
    cli_as(
        &s,
        &bob,
        &[
            "approvals",
            "deny",
            &refund,
            "--by",
            "alice",
            "--reason",
            "x",
        ],
    )
    .fails_with("the decision is recorded under the credential's holder, \"bob\"");
    let out = cli_as(
        &s,
        &bob,
        &["approvals", "deny", &refund, "--reason", "not ours"],
    );
    assert_eq!(out.succeeds().stdout.trim(), format!("denied {refund}"));
    let out = cli_as(&s, &alice, &["approvals", "approve", &refund]);
    out.fails_with("no longer pending");
    cli(&s, &["operator", "remove", "bob"]).succeeds();
    cli_as(&s, &bob, &["approvals", "list"]).fails_with("401");

    let out = cli(&s, &["approvals", "list"]);
    assert_eq!(out.succeeds().stdout.trim(), "no approvals");
    let out = cli(&s, &["approvals", "list", "--status", "all"]);
    assert!(
        out.succeeds()
            .stdout
            .contains("decided_by=alice reason=\"invoice checked\""),
        "{}",
        out.stdout
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = s
        .form_as(
            "payer",
            &key,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", &id("bank")),
                ("scope", "payments:create"),
                ("approval_id", &create),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn rotating_the_admin_credential_retires_the_old_one() {
    let s = Server::start().await;
    let old = s.admin.clone();
    let out = cli_as(&s, &old, &["admin", "rotate-credential"]);
    out.succeeds();
    let file = s.data_dir.join("admin-token");
    // Not a terminal: the credential is named by its file, never printed.
    assert!(out.stdout.contains(path_str(&file)), "{}", out.stdout);
    let new = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(new.starts_with("aa_admin_") && new != old);
    assert!(!out.stdout.contains(&new), "{}", out.stdout);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let agents = |token: String| {
        let request = s
            .http
            .get(format!("{}/v1/agents", s.url))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(agents(old.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(agents(new.clone()).await, StatusCode::OK);
    // The old credential cannot rotate it back.
    cli_as(&s, &old, &["admin", "rotate-credential"]).fails_with("401");
    let audit = cli_as(&s, &new, &["audit", "tail", "--lines", "5"]);
    audit.succeeds();
    assert!(
        audit.stdout.contains("admin.credential_rotated"),
        "{}",
        audit.stdout
    );
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_new_data_dir_that_verifies() {
    let s = busy_server().await;
    // Writes go on while the copy is made.
    let key = s.register("writer", &["read:customer"]).await;
    let writing = {
        let (s_url, key) = (s.url.clone(), key.clone());
        tokio::spawn(async move {
            let client = agentauth_sdk::Client::new(
                &s_url,
                agentauth_core::SpiffeId::parse(&id("writer")).unwrap(),
                key,
            );
            for _ in 0..20 {
                let _ = client
                    .fetch_token(
                        &agentauth_core::SpiffeId::parse(&id("customer")).unwrap(),
                        &crate::support::scope("read:customer"),
                        None,
                    )
                    .await;
            }
        })
    };
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("agentauth.backup");
    let backed = run(command()
        .args(["backup", "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(&s.data_dir));
    backed.succeeds();
    assert!(backed.stdout.contains("master.key"), "{}", backed.stdout);
    writing.await.unwrap();
    // Never over an existing file.
    run(command()
        .args(["backup", "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(&s.data_dir))
    .fails_with("must not exist");
    run(command().args([
        "backup",
        "--out",
        "x",
        "--database-url",
        "postgres://u@127.0.0.1/db",
    ]))
    .fails_with("pg_dump");

    // Restore: the copy as the new data dir's database, with the master key.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&out, restored.path().join("agentauth.db")).unwrap();
    std::fs::copy(
        s.data_dir.join("master.key"),
        restored.path().join("master.key"),
    )
    .unwrap();
    let verified = verify(restored.path());
    verified.succeeds();
    let records: usize = verified
        .stdout
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(records >= 6, "{}", verified.stdout);
    let url = restored.path().join("agentauth.db").display().to_string();
    let store = agentauth_store::open(&url).await.unwrap();
    let names: Vec<String> = store
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name.to_string())
        .collect();
    assert!(names.contains(&"writer".to_owned()), "{names:?}");
}
