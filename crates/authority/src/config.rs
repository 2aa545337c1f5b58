//! The authority's configuration: one `Config`, read from flags, `AGENTAUTH_*`
//! environment variables and a TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Everything `agentauth serve` can be told, from flags, `AGENTAUTH_*`
/// environment variables or a TOML file (in that order of precedence).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the SQLite database, master key and admin credential live.
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; unset means SQLite in the data dir.
    pub database_url: Option<String>,
    /// The SPIFFE trust domain of every agent.
    pub trust_domain: String,
    /// The issuer URL; unset means `http://<listen>` with the bound port.
    pub issuer: Option<String>,
    /// Default access token lifetime in seconds.
    pub token_lifetime_secs: i64,
    /// Longest access token lifetime a request can get.
    pub max_token_lifetime_secs: i64,
    /// Accept only the issuer as a client assertion's `aud` (draft-ietf-oauth-rfc7523bis).
    pub strict_client_assertion_audience: bool,
    /// How far ahead a client assertion's `exp` may lie, in seconds. The
    /// default (3600) accepts what common libraries sign (authlib: 3600 s);
    /// each `jti` is remembered until its `exp`, so replay stays impossible.
    pub max_client_assertion_lifetime_secs: i64,
    /// Most actors a delegation chain (`act`) may name.
    pub max_delegation_depth: usize,
    /// Most generations of spawned agents below a registered agent (its
    /// children are generation 1); at most [`SPAWN_DEPTH_CEILING`].
    pub max_spawn_depth: usize,
    /// Most live (active, unexpired) children one agent may have spawned.
    pub max_live_children: usize,
    /// The deployment environment policies see as `context.environment`.
    pub environment: String,
    /// Seconds a request waiting for a person's approval stays valid.
    pub approval_ttl_secs: i64,
    /// Seconds an agent must wait between polls of a pending approval.
    pub approval_interval_secs: i64,
    /// Token requests per second one peer address may send (burst: twice
    /// that); 0 turns the limit off.
    pub token_requests_per_address: u32,
    /// Token requests per second one authenticated client may send (burst:
    /// twice that); 0 turns the limit off.
    pub token_requests_per_client: u32,
    /// Most connections served at once; more wait for a free slot.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers before it is
    /// disconnected (slow clients cannot hold connections open).
    pub header_read_timeout_secs: u64,
    /// Seconds over which token requests refused before their client
    /// authenticated are counted into one audit record.
    pub refusal_audit_window_secs: u64,
    /// Events per second one agent may report to the audit log (burst:
    /// twice that); 0 turns the limit off.
    pub audit_events_per_agent: u32,
    /// Days after which a new signing key is made (and published
    /// `signing_key_publish_lead_secs` before it signs); 0 turns the
    /// schedule off, leaving `agentauth keys rotate`.
    pub signing_key_rotation_days: u32,
    /// Seconds a new signing key is published in the JWKS before it signs
    /// anything: at least the refresh interval of every verifier's JWKS
    /// cache (the SDK refreshes every 300 s), so none meets an unknown key.
    pub signing_key_publish_lead_secs: i64,
    /// Seconds between a replica's re-reads of the active policy set, the
    /// admin credential and the operators. On PostgreSQL a `NOTIFY` tells
    /// every replica of a change at once; the re-read covers notifications
    /// lost while a replica's listening connection was down.
    pub replica_reread_secs: u64,
    /// Seconds an X.509-SVID lives (clients renew at half-life).
    pub svid_lifetime_secs: i64,
    /// Days the certificate authority made on first start lives.
    pub ca_lifetime_days: u32,
    /// The trust bundle's `spiffe_refresh_hint`: how often consumers (and
    /// federated authorities) fetch it again. A new CA is published twice
    /// this long before it signs.
    pub bundle_refresh_hint_secs: u64,
    /// Serve HTTPS with the authority's own X.509-SVID instead of HTTP.
    pub tls: bool,
    /// Where to serve the SPIFFE Workload API (a Unix socket path); off
    /// when unset.
    pub workload_socket: Option<PathBuf>,
    /// An upstream CA's certificate (PEM, then its chain up to the root):
    /// with `upstream_ca_key`, every new X.509 CA is an intermediate it
    /// signs, and the bundle publishes its root.
    pub upstream_ca_cert: Option<PathBuf>,
    /// The upstream CA's ECDSA P-256 private key (PEM, a file only the
    /// authority's user may read).
    pub upstream_ca_key: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./agentauth-data"),
            database_url: None,
            trust_domain: "agentauth.local".into(),
            issuer: None,
            token_lifetime_secs: 300,
            max_token_lifetime_secs: 3600,
            strict_client_assertion_audience: false,
            max_client_assertion_lifetime_secs: agentauth_core::DEFAULT_MAX_ASSERTION_LIFETIME_SECS,
            max_delegation_depth: 4,
            max_spawn_depth: 4,
            max_live_children: 16,
            environment: "development".into(),
            approval_ttl_secs: 600,
            approval_interval_secs: 5,
            token_requests_per_address: 1000,
            token_requests_per_client: 200,
            max_connections: 1024,
            header_read_timeout_secs: 10,
            refusal_audit_window_secs: 10,
            audit_events_per_agent: 1000,
            signing_key_rotation_days: 30,
            signing_key_publish_lead_secs: 600,
            replica_reread_secs: 2,
            svid_lifetime_secs: 3600,
            ca_lifetime_days: 365,
            bundle_refresh_hint_secs: 300,
            workload_socket: None,
            tls: false,
            upstream_ca_cert: None,
            upstream_ca_key: None,
        }
    }
}

impl Config {
    /// The database URL, defaulting to the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| self.data_dir.join("agentauth.db").display().to_string())
    }
}

/// The highest `max_spawn_depth` accepted: the ancestry of every agent is
/// walked in full for policy, so it stays short.
pub const SPAWN_DEPTH_CEILING: usize = 32;

/// The longest `signing_key_publish_lead_secs` accepted (one day).
pub(crate) const MAX_PUBLISH_LEAD_SECS: i64 = 86_400;

/// Why a configuration cannot work; the authority refuses to start with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `trust_domain` is not a valid SPIFFE trust domain.
    #[error(transparent)]
    TrustDomain(agentauth_core::Error),
    /// An approval lifetime or polling interval below one second.
    #[error("approval_ttl_secs and approval_interval_secs must be at least 1")]
    ApprovalTimes,
    /// No connection slot, or no time to send request headers.
    #[error("max_connections and header_read_timeout_secs must be at least 1")]
    ConnectionLimits,
    /// A refusal-counting window out of range.
    #[error("refusal_audit_window_secs must be 1 to 3600")]
    RefusalWindow,
    /// A signing-key schedule out of range.
    #[error(
        "signing_key_publish_lead_secs must be 0 to {MAX_PUBLISH_LEAD_SECS} and signing_key_rotation_days at most 3650"
    )]
    KeyRotation,
    /// An SVID or CA lifetime out of range.
    #[error("svid_lifetime_secs must be 60 to 86400 and ca_lifetime_days 1 to 3650")]
    SvidLifetimes,
    /// A bundle refresh hint out of range.
    #[error("bundle_refresh_hint_secs must be 5 to 86400")]
    BundleRefreshHint,
    /// Only one of the upstream CA's certificate and key is given.
    #[error("upstream_ca_cert and upstream_ca_key go together: give both or neither")]
    UpstreamCaPair,
    /// The upstream CA cannot be read or is not one.
    #[error("upstream CA: {0}")]
    UpstreamCa(String),
    /// The Workload API socket cannot be bound.
    #[error("workload_socket: {0}")]
    WorkloadSocket(String),
    /// A replica re-read interval out of range.
    #[error("replica_reread_secs must be 1 to 3600")]
    RereadInterval,
    /// Token lifetimes out of order.
    #[error("token lifetimes must satisfy 1 <= token_lifetime_secs <= max_token_lifetime_secs")]
    TokenLifetimes,
    /// A client assertion lifetime below one second.
    #[error("max_client_assertion_lifetime_secs must be at least 1")]
    AssertionLifetime,
    /// A spawn limit out of range.
    #[error(
        "max_spawn_depth must be 0 to {SPAWN_DEPTH_CEILING} and max_live_children at most 100000"
    )]
    SpawnLimits,
    /// A file holding a secret (master key, admin credential, SQLite
    /// database) may be read or written by others than its owner.
    #[error(
        "{} has mode {mode:04o}, but it holds secrets and must be readable only by its owner; fix it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    LooseFileMode {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl Config {
    /// The SQLite database file, unless the store is PostgreSQL.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        let url = self.database_url();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return None;
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(&url);
        let path = path.split('?').next().unwrap_or(path);
        (!path.is_empty() && !path.starts_with(':')).then(|| path.into())
    }

    /// Every file of the data dir and store that holds a secret.
    pub fn secret_files(&self) -> Vec<std::path::PathBuf> {
        let mut files = vec![
            self.data_dir.join(crate::keys::MASTER_KEY_FILE),
            self.data_dir.join(crate::admin::ADMIN_TOKEN_FILE),
        ];
        if let Some(db) = self.sqlite_path() {
            for suffix in ["-wal", "-shm"] {
                let mut side = db.clone().into_os_string();
                side.push(suffix);
                files.push(side.into());
            }
            files.push(db);
        }
        if let Some(key) = &self.upstream_ca_key {
            files.push(key.clone());
        }
        files
    }

    /// Checks what can be checked before anything is opened.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.approval_ttl_secs < 1 || self.approval_interval_secs < 1 {
            return Err(ConfigError::ApprovalTimes);
        }
        if self.token_lifetime_secs < 1 || self.max_token_lifetime_secs < self.token_lifetime_secs {
            return Err(ConfigError::TokenLifetimes);
        }
        if self.max_client_assertion_lifetime_secs < 1 {
            return Err(ConfigError::AssertionLifetime);
        }
        if self.max_spawn_depth > SPAWN_DEPTH_CEILING || self.max_live_children > 100_000 {
            return Err(ConfigError::SpawnLimits);
        }
        if self.max_connections < 1 || self.header_read_timeout_secs < 1 {
            return Err(ConfigError::ConnectionLimits);
        }
        if !(1..=3600).contains(&self.refusal_audit_window_secs) {
            return Err(ConfigError::RefusalWindow);
        }
        if !(0..=MAX_PUBLISH_LEAD_SECS).contains(&self.signing_key_publish_lead_secs)
            || self.signing_key_rotation_days > 3650
        {
            return Err(ConfigError::KeyRotation);
        }
        if !(1..=3600).contains(&self.replica_reread_secs) {
            return Err(ConfigError::RereadInterval);
        }
        if !(60..=86_400).contains(&self.svid_lifetime_secs)
            || !(1..=3650).contains(&self.ca_lifetime_days)
        {
            return Err(ConfigError::SvidLifetimes);
        }
        if !(5..=86_400).contains(&self.bundle_refresh_hint_secs) {
            return Err(ConfigError::BundleRefreshHint);
        }
        if self.upstream_ca_cert.is_some() != self.upstream_ca_key.is_some() {
            return Err(ConfigError::UpstreamCaPair);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_reread_interval_outside_one_second_to_an_hour_is_refused() {
        for (secs, ok) in [
            (0, false),
            (1, true),
            (2, true),
            (3600, true),
            (3601, false),
        ] {
            let config = Config {
                replica_reread_secs: secs,
                ..Config::default()
            };
            assert_eq!(
                config.check().is_ok(),
                ok,
                "replica_reread_secs = {secs}: {:?}",
                config.check()
            );
        }
        let refused = Config {
            replica_reread_secs: 0,
            ..Config::default()
        };
        assert!(matches!(refused.check(), Err(ConfigError::RereadInterval)));
    }
}
