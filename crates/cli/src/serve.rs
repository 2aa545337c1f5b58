//! `agentauth serve`: flags over `AGENTAUTH_*` environment over a TOML file over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use agentauth_authority::{Config, MASTER_KEY_ENV};
use anyhow::Context as _;
use clap::{Args, ValueEnum};

/// Flags of `agentauth serve`; each also reads an `AGENTAUTH_*` variable.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "AGENTAUTH_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory for the SQLite file, master key and admin credential [default: ./agentauth-data].
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
    /// TOML file with any of the settings above (snake_case keys).
    #[arg(long, env = "AGENTAUTH_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "AGENTAUTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
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
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
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
        Ok(config)
    }
}

/// Installs the tracing subscriber (`RUST_LOG` filters, default `info`).
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the authority until SIGINT or SIGTERM.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let config = args.config()?;
    let data_dir = config.data_dir.clone();
    let master_key = std::env::var(MASTER_KEY_ENV).ok();
    let running = agentauth_authority::start(config, master_key)
        .await
        .context("starting the authority")?;
    println!(
        "agentauth listening on http://{} (issuer {})",
        running.addr, running.issuer
    );
    if let Some(token) = &running.admin_token {
        println!(
            "admin credential (shown once; also in {}/admin-token): {token}",
            data_dir.display()
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return;
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
