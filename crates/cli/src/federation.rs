//! `agentauth federation …`: foreign trust domains whose bundles the
//! authority follows (SPIFFE federation), so agents accept their SVIDs.

use std::path::PathBuf;
use std::process::ExitCode;

use agentauth_api::{FederationList, FederationView, NewFederation};
use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;

use crate::admin_client::Connection;

/// `agentauth federation …`.
#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Follow a foreign trust domain's bundle endpoint (profile https_web):
    /// its bundle is fetched now (nothing is stored if that fails), then
    /// again at the refresh hint it gives, and handed to agents by the
    /// Workload API and `GET /v1/bundles`.
    Add {
        /// The foreign trust domain's name, e.g. `partner.example`.
        trust_domain: String,
        /// Its bundle endpoint, an https:// URL.
        url: String,
        /// PEM CA certificates the endpoint's server certificate may chain
        /// to, beside the system's roots (for a private PKI).
        #[arg(long, value_name = "PEM_FILE")]
        endpoint_ca: Option<PathBuf>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the federated trust domains: the bundle held, when it was
    /// fetched, when it is fetched next, and the last fetch error.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Fetch a federated trust domain's bundle now.
    Refresh {
        /// The foreign trust domain's name.
        trust_domain: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop trusting a foreign trust domain, at once.
    Remove {
        /// The foreign trust domain's name.
        trust_domain: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn show(view: &FederationView) {
    println!(
        "{}  {}  sequence {}  {} CA certificates  {} JWT-SVID keys  fetched {}  next {}{}",
        view.trust_domain,
        view.bundle_endpoint_url,
        view.sequence,
        view.x509_authorities,
        view.jwt_authorities,
        view.refreshed_at,
        view.refresh_at,
        view.last_error
            .as_deref()
            .map(|e| format!("  last error: {e}"))
            .unwrap_or_default()
    );
}

pub(crate) async fn run(cmd: FederationCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FederationCommand::Add {
            trust_domain,
            url,
            endpoint_ca,
            conn,
        } => {
            let endpoint_ca = match endpoint_ca {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => None,
            };
            let body = NewFederation {
                trust_domain,
                bundle_endpoint_url: url,
                endpoint_ca,
            };
            let view: FederationView = conn
                .admin_with(Method::POST, "/v1/federation", &body)
                .await?;
            show(&view);
        }
        FederationCommand::List { conn } => {
            let list: FederationList = conn.admin(Method::GET, "/v1/federation").await?;
            for view in &list.trust_domains {
                show(view);
            }
        }
        FederationCommand::Refresh { trust_domain, conn } => {
            let path = format!("/v1/federation/{trust_domain}/refresh");
            let view: FederationView = conn.admin_with(Method::POST, &path, &()).await?;
            show(&view);
        }
        FederationCommand::Remove { trust_domain, conn } => {
            let path = format!("/v1/federation/{trust_domain}");
            let _: serde_json::Value = conn.admin(Method::DELETE, &path).await?;
            println!("no longer federated with {trust_domain}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
