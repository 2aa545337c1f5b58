//! `agentauth serve`: flags over `AGENTAUTH_*` environment over a TOML file over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use agentauth_authority::{Config, MASTER_KEY_ENV};
use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

/// Flags of `agentauth serve`; each also reads an `AGENTAUTH_*` variable.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "AGENTAUTH_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory for the SQLite file, master key and admin credential, all 0600 and checked on start [default: ./agentauth-data].
    #[arg(long, env = "AGENTAUTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://… for PostgreSQL [default: SQLite file in the data dir].
    #[arg(long, env = "AGENTAUTH_DATABASE_URL")]
    database_url: Option<String>,
    /// SPIFFE trust domain of the agents [default: agentauth.local].
    #[arg(long, env = "AGENTAUTH_TRUST_DOMAIN")]
    trust_domain: Option<String>,
    /// Issuer URL [default: http://<listen>].
    #[arg(long, env = "AGENTAUTH_ISSUER")]
    issuer: Option<String>,
    /// Default access token lifetime in seconds [default: 300].
    #[arg(long, env = "AGENTAUTH_TOKEN_LIFETIME_SECS")]
    token_lifetime_secs: Option<i64>,
    /// Longest access token lifetime in seconds [default: 3600].
    #[arg(long, env = "AGENTAUTH_MAX_TOKEN_LIFETIME_SECS")]
    max_token_lifetime_secs: Option<i64>,
    /// Accept only the issuer as a client assertion audience.
    #[arg(long, env = "AGENTAUTH_STRICT_CLIENT_ASSERTION_AUDIENCE")]
    strict_client_assertion_audience: Option<bool>,
    /// Longest client assertion lifetime (exp ahead of now) in seconds; each jti is kept until its exp [default: 3600].
    #[arg(long, env = "AGENTAUTH_MAX_CLIENT_ASSERTION_LIFETIME_SECS")]
    max_client_assertion_lifetime_secs: Option<i64>,
    /// Most actors a delegation chain may name [default: 4].
    #[arg(long, env = "AGENTAUTH_MAX_DELEGATION_DEPTH")]
    max_delegation_depth: Option<usize>,
    /// Most generations of spawned agents below a registered agent (0 to 32) [default: 4].
    #[arg(long, env = "AGENTAUTH_MAX_SPAWN_DEPTH")]
    max_spawn_depth: Option<usize>,
    /// Most live (active, unexpired) children one agent may have spawned [default: 16].
    #[arg(long, env = "AGENTAUTH_MAX_LIVE_CHILDREN")]
    max_live_children: Option<usize>,
    /// Deployment environment that policies see as context.environment [default: development].
    #[arg(long, env = "AGENTAUTH_ENVIRONMENT")]
    environment: Option<String>,
    /// Seconds a request waiting for approval stays valid [default: 600].
    #[arg(long, env = "AGENTAUTH_APPROVAL_TTL_SECS")]
    approval_ttl_secs: Option<i64>,
    /// Seconds an agent must wait between polls of a pending approval [default: 5].
    #[arg(long, env = "AGENTAUTH_APPROVAL_INTERVAL_SECS")]
    approval_interval_secs: Option<i64>,
    /// Token requests per second from one address before 429, burst twice that; 0 is no limit [default: 1000].
    #[arg(long, env = "AGENTAUTH_TOKEN_REQUESTS_PER_ADDRESS")]
    token_requests_per_address: Option<u32>,
    /// Token requests per second from one authenticated client before 429, burst twice that; 0 is no limit [default: 200].
    #[arg(long, env = "AGENTAUTH_TOKEN_REQUESTS_PER_CLIENT")]
    token_requests_per_client: Option<u32>,
    /// Most connections served at once; further ones wait [default: 1024].
    #[arg(long, env = "AGENTAUTH_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client may take to send its request headers before it is disconnected [default: 10].
    #[arg(long, env = "AGENTAUTH_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: Option<u64>,
    /// Seconds over which token requests refused before their client authenticated are counted into one audit record (1 to 3600) [default: 10].
    #[arg(long, env = "AGENTAUTH_REFUSAL_AUDIT_WINDOW_SECS")]
    refusal_audit_window_secs: Option<u64>,
    /// Events per second one agent may report to the audit log before 429, burst twice that; 0 is no limit [default: 1000].
    #[arg(long, env = "AGENTAUTH_AUDIT_EVENTS_PER_AGENT")]
    audit_events_per_agent: Option<u32>,
    /// Days after which a new signing key is made, published before it signs; 0 is never (only `agentauth keys rotate`) [default: 30].
    #[arg(long, env = "AGENTAUTH_SIGNING_KEY_ROTATION_DAYS")]
    signing_key_rotation_days: Option<u32>,
    /// Seconds a new signing key is in the JWKS before it signs, at least every verifier's JWKS refresh interval (0 to 86400) [default: 600].
    #[arg(long, env = "AGENTAUTH_SIGNING_KEY_PUBLISH_LEAD_SECS")]
    signing_key_publish_lead_secs: Option<i64>,
    /// Seconds between re-reads of the active policy set, the admin credential and the operators; on PostgreSQL a NOTIFY tells every replica of a change at once, and this covers notifications missed (1 to 3600) [default: 2].
    #[arg(long, env = "AGENTAUTH_REPLICA_REREAD_SECS")]
    replica_reread_secs: Option<u64>,
    /// Seconds an X.509-SVID lives; clients renew at half-life (60 to 86400) [default: 3600].
    #[arg(long, env = "AGENTAUTH_SVID_LIFETIME_SECS")]
    svid_lifetime_secs: Option<i64>,
    /// Days the X.509 certificate authority made on first start lives (1 to 3650) [default: 365].
    #[arg(long, env = "AGENTAUTH_CA_LIFETIME_DAYS")]
    ca_lifetime_days: Option<u32>,
    /// The trust bundle's spiffe_refresh_hint: seconds after which consumers and federated authorities fetch it again; a new CA is published twice this long before it signs (5 to 86400) [default: 300].
    #[arg(long, env = "AGENTAUTH_BUNDLE_REFRESH_HINT_SECS")]
    bundle_refresh_hint_secs: Option<u64>,
    /// Serve HTTPS (TLS 1.3) with the authority's own X.509-SVID, renewed at half-life; clients may present their X.509-SVID. The issuer becomes https://…
    #[arg(long, env = "AGENTAUTH_TLS")]
    tls: bool,
    /// Serve the SPIFFE Workload API on this Unix socket (a path, or unix:///PATH): local processes that match an agent's selectors get its SVIDs; off when unset.
    #[arg(long, env = "AGENTAUTH_WORKLOAD_SOCKET")]
    workload_socket: Option<String>,
    /// An upstream CA's certificate (PEM, then its chain up to the root): with --upstream-ca-key, each new X.509 CA is an intermediate it signs and the trust bundle publishes its root; off when unset.
    #[arg(long, env = "AGENTAUTH_UPSTREAM_CA_CERT", requires = "upstream_ca_key")]
    upstream_ca_cert: Option<PathBuf>,
    /// The upstream CA's ECDSA P-256 private key (PEM; the file must be readable by its owner only).
    #[arg(long, env = "AGENTAUTH_UPSTREAM_CA_KEY", requires = "upstream_ca_cert")]
    upstream_ca_key: Option<PathBuf>,
    /// TOML file with any of the settings above (snake_case keys).
    #[arg(long, env = "AGENTAUTH_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "AGENTAUTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Send a span per request to this OpenTelemetry collector over OTLP/HTTP (for example http://127.0.0.1:4318; /v1/traces is added); off when unset.
    #[arg(long, env = "AGENTAUTH_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl ServeArgs {
    /// The effective configuration.
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?
            }
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = &self.data_dir {
            config.data_dir.clone_from(v);
        }
        if self.database_url.is_some() {
            config.database_url.clone_from(&self.database_url);
        }
        if let Some(v) = &self.trust_domain {
            config.trust_domain.clone_from(v);
        }
        if self.issuer.is_some() {
            config.issuer.clone_from(&self.issuer);
        }
        if let Some(v) = self.token_lifetime_secs {
            config.token_lifetime_secs = v;
        }
        if let Some(v) = self.max_token_lifetime_secs {
            config.max_token_lifetime_secs = v;
        }
        if let Some(v) = self.strict_client_assertion_audience {
            config.strict_client_assertion_audience = v;
        }
        if let Some(v) = self.max_client_assertion_lifetime_secs {
            config.max_client_assertion_lifetime_secs = v;
        }
        if let Some(v) = self.max_delegation_depth {
            config.max_delegation_depth = v;
        }
        if let Some(v) = self.max_spawn_depth {
            config.max_spawn_depth = v;
        }
        if let Some(v) = self.max_live_children {
            config.max_live_children = v;
        }
        if let Some(v) = &self.environment {
            config.environment.clone_from(v);
        }
        if let Some(v) = self.approval_ttl_secs {
            config.approval_ttl_secs = v;
        }
        if let Some(v) = self.approval_interval_secs {
            config.approval_interval_secs = v;
        }
        if let Some(v) = self.token_requests_per_address {
            config.token_requests_per_address = v;
        }
        if let Some(v) = self.token_requests_per_client {
            config.token_requests_per_client = v;
        }
        if let Some(v) = self.max_connections {
            config.max_connections = v;
        }
        if let Some(v) = self.header_read_timeout_secs {
            config.header_read_timeout_secs = v;
        }
        if let Some(v) = self.refusal_audit_window_secs {
            config.refusal_audit_window_secs = v;
        }
        if let Some(v) = self.audit_events_per_agent {
            config.audit_events_per_agent = v;
        }
        if let Some(v) = self.signing_key_rotation_days {
            config.signing_key_rotation_days = v;
        }
        if let Some(v) = self.replica_reread_secs {
            config.replica_reread_secs = v;
        }
        if let Some(v) = self.svid_lifetime_secs {
            config.svid_lifetime_secs = v;
        }
        if let Some(v) = self.ca_lifetime_days {
            config.ca_lifetime_days = v;
        }
        if self.tls {
            config.tls = true;
        }
        if let Some(v) = self.bundle_refresh_hint_secs {
            config.bundle_refresh_hint_secs = v;
        }
        if let Some(v) = &self.workload_socket {
            config.workload_socket = Some(if v.starts_with("unix:") {
                agentauth_workload::socket_path(v)?
            } else {
                PathBuf::from(v)
            });
        }
        if let Some(v) = self.signing_key_publish_lead_secs {
            config.signing_key_publish_lead_secs = v;
        }
        if let Some(v) = &self.upstream_ca_cert {
            config.upstream_ca_cert = Some(v.clone());
        }
        if let Some(v) = &self.upstream_ca_key {
            config.upstream_ca_key = Some(v.clone());
        }
        Ok(config)
    }
}

/// Runs the authority until SIGINT or SIGTERM.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let traces = crate::traces::Traces::init(args.log_format, args.otlp_endpoint.as_deref())?;
    let config = args.config()?;
    // Handlers go in before anything is announced, so a signal sent the moment
    // the banner appears already means a clean shutdown.
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let data_dir = config.data_dir.clone();
    let master_key = std::env::var(MASTER_KEY_ENV).ok();
    let running = agentauth_authority::start(config, master_key)
        .await
        .map_err(|e| anyhow!("starting the authority: {}", e.detail()))?;
    println!(
        "agentauth listening on {}://{} (issuer {})",
        if running.tls { "https" } else { "http" },
        running.addr,
        running.issuer
    );
    if let Some(token) = &running.admin_token {
        println!("{}", credential_banner(token, &data_dir));
    }
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    traces.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The line announcing a new admin credential: the credential itself only
/// when stdout is a terminal (a person reads it), otherwise only the file it
/// is in, so that it never lands in a log collector or a CI transcript.
pub(crate) fn credential_banner(token: &str, data_dir: &std::path::Path) -> String {
    let file = data_dir.join(agentauth_authority::ADMIN_TOKEN_FILE);
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        format!(
            "admin credential (shown once; also in {}): {token}",
            file.display()
        )
    } else {
        format!(
            "admin credential written to {} (not printed: stdout is not a terminal)",
            file.display()
        )
    }
}

/// A TOML error as one line: the message and where it is.
fn toml_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let place = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(" at line {line}, column {column}")
    });
    anyhow!(
        "parsing {}{}: {}",
        path.display(),
        place.unwrap_or_default(),
        e.message().trim()
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(argv: &[&str]) -> anyhow::Result<Config> {
        Wrapper::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))?
            .args
            .config()
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agentauth.toml");
        std::fs::write(&file, "trust_domain = \"example.org\"\ntoken_lifetime_secs = 120\nlisten = \"127.0.0.1:9000\"\n").unwrap();
        let path = file.to_str().unwrap();
        let from_file = config(&["--config", path]).unwrap();
        assert_eq!(from_file.trust_domain, "example.org");
        assert_eq!(from_file.token_lifetime_secs, 120);
        assert_eq!(from_file.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(from_file.max_token_lifetime_secs, 3600);
        let overridden = config(&[
            "--config",
            path,
            "--listen",
            "127.0.0.1:9100",
            "--trust-domain",
            "x.test",
        ])
        .unwrap();
        assert_eq!(overridden.listen, SocketAddr::from(([127, 0, 0, 1], 9100)));
        assert_eq!(overridden.trust_domain, "x.test");
        assert_eq!(overridden.token_lifetime_secs, 120);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "trust_domian = \"typo.org\"\n").unwrap();
        let err = config(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("trust_domian"), "{err:#}");
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.data_dir, PathBuf::from("./agentauth-data"));
        assert_eq!(c.database_url(), "./agentauth-data/agentauth.db");
        assert_eq!(c.trust_domain, "agentauth.local");
        assert_eq!(
            (c.token_lifetime_secs, c.max_token_lifetime_secs),
            (300, 3600)
        );
        assert_eq!(c.max_client_assertion_lifetime_secs, 3600);
        let lowered = config(&["--max-client-assertion-lifetime-secs", "120"]).unwrap();
        assert_eq!(lowered.max_client_assertion_lifetime_secs, 120);
    }
}
