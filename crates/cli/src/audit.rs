//! `agentauth audit …`: verify the hash chain and its authentication codes
//! (against a signed checkpoint too), take checkpoints, follow and export the log.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use agentauth_api::{AuditCheckpoint, AuditPage};
use agentauth_authority::{KeyRing, MASTER_KEY_ENV, MasterKey, verify_checkpoint};
use agentauth_core::{AuditKey, AuditRecord, verify_chain};
use agentauth_store::{AuditFilter, Store};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::Method;

use crate::admin_client::Connection;

/// Audit commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check that no record was edited, removed, reordered or written without
    /// the audit key (reads the store directly; needs the master key).
    Verify {
        /// A checkpoint from `audit checkpoint`: also prove that the log
        /// still holds every record up to it, unchanged.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a signed checkpoint of the log's head, to keep where the
    /// database's writers cannot reach it.
    Checkpoint {
        /// Write it to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show the latest records from the authority, optionally following new ones.
    Tail {
        /// How many records to show first.
        #[arg(long, default_value_t = 20)]
        lines: i64,
        /// Keep polling for new records.
        #[arg(long)]
        follow: bool,
        /// Only records naming this agent.
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Write every record as JSON Lines (reads the store directly).
    Export {
        /// Output file [default: stdout].
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which store to read.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Database URL [default: the SQLite file in the data dir].
    #[arg(long, env = "AGENTAUTH_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// The authority's data dir (its master.key opens the audit key,
    /// unless AGENTAUTH_MASTER_KEY is set).
    #[arg(long, env = "AGENTAUTH_DATA_DIR", default_value = "./agentauth-data")]
    pub(crate) data_dir: PathBuf,
}

impl StoreArgs {
    /// The authority's master key, which the audit key is derived from.
    fn master_key(&self) -> anyhow::Result<MasterKey> {
        let from_env = std::env::var(MASTER_KEY_ENV).ok();
        MasterKey::load(&self.data_dir, from_env.as_deref())
            .map_err(|e| anyhow::anyhow!("{}", e.detail()))
            .context("verifying the audit log needs the authority's master key")
    }

    pub(crate) async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let file = self.data_dir.join("agentauth.db");
                anyhow::ensure!(
                    file.exists(),
                    "no audit log at {} (use --data-dir or --database-url)",
                    file.display()
                );
                file.display().to_string()
            }
        };
        agentauth_store::open(&url)
            .await
            .context("opening the store")
    }
}

/// Page size when reading the whole log.
const PAGE: i64 = 1000;

/// Reads every record in order, a page at a time, handing each page to `each`.
pub(crate) async fn for_each_page(
    store: &dyn Store,
    mut each: impl FnMut(&[AuditRecord]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut since = 0;
    loop {
        let page = store
            .audit_records(&AuditFilter {
                since,
                limit: PAGE,
                ..AuditFilter::default()
            })
            .await?;
        each(&page)?;
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => since = last.seq,
            _ => return Ok(()),
        }
    }
}

/// Verifies the whole chain of `store` and every record's authentication
/// code under `key`, and, given a checkpoint's record and hash, that the
/// log still holds that record unchanged; `Err` names the first bad record.
pub(crate) async fn verify_store(
    store: &dyn Store,
    key: &AuditKey,
    checkpoint: Option<(i64, &str)>,
) -> anyhow::Result<Result<i64, String>> {
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut records = Vec::new();
    for_each_page(store, |page| {
        records.extend_from_slice(page);
        Ok(())
    })
    .await?;
    let verified = verify_chain(&records, head_seq, &head_hash, key).map_err(|b| b.to_string());
    let Ok(n) = verified else {
        return Ok(verified);
    };
    if let Some((seq, hash)) = checkpoint.filter(|(seq, _)| *seq > 0) {
        let at = usize::try_from(seq - 1).ok().and_then(|i| records.get(i));
        match at {
            Some(r) if r.hash == hash => {}
            Some(_) => {
                return Ok(Err(format!(
                    "the log was rewritten up to record {seq}: its hash is not the checkpoint's"
                )));
            }
            None => {
                return Ok(Err(format!(
                    "the log ends at record {n} but the checkpoint covers {seq}; records were removed"
                )));
            }
        }
    }
    Ok(Ok(n))
}

pub(crate) async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { checkpoint, store } => verify(checkpoint, &store).await,
        AuditCommand::Checkpoint { out, conn } => {
            let taken: AuditCheckpoint = conn
                .admin_with(Method::POST, "/v1/audit/checkpoint", &serde_json::json!({}))
                .await?;
            let text = format!("{}\n", taken.checkpoint);
            match out {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "checkpoint of record {} written to {}",
                        taken.seq,
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { out, store } => {
            let store = store.open().await?;
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            for_each_page(&*store, |page| {
                for record in page {
                    serde_json::to_writer(&mut sink, record)?;
                    sink.write_all(b"\n")?;
                }
                Ok(())
            })
            .await?;
            sink.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Tail {
            lines,
            follow,
            agent,
            conn,
        } => tail(&conn, lines, follow, agent).await,
    }
}

/// `audit verify [--checkpoint FILE]`.
async fn verify(checkpoint: Option<PathBuf>, args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let store = args.open().await?;
    let master = args.master_key()?;
    let covered = match &checkpoint {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let keys = KeyRing::load(&*store, &master, 0)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
            match verify_checkpoint(&keys, &text) {
                Ok(claims) => Some(claims),
                Err(e) => {
                    println!("checkpoint REFUSED: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        None => None,
    };
    let at = covered.as_ref().map(|c| (c.seq, c.hash.as_str()));
    let key = master
        .audit_key(&*store)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail()))
        .context("the master key does not open this store's audit key")?;
    match verify_store(&*store, &key, at).await? {
        Ok(n) => {
            print!("audit log intact: {n} records, hash chain and authentication codes verified");
            match covered {
                Some(c) => println!("; unchanged up to the checkpoint at record {}", c.seq),
                None => println!(),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(first_bad) => {
            println!("audit log TAMPERED: {first_bad}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn tail(
    conn: &Connection,
    lines: i64,
    follow: bool,
    agent: Option<String>,
) -> anyhow::Result<ExitCode> {
    let filter = agent.map(|a| format!("&agent={a}")).unwrap_or_default();
    let head: AuditPage = conn.admin(Method::GET, "/v1/audit?limit=1").await?;
    let mut since = (head.head.seq - lines).max(0);
    loop {
        let page: AuditPage = conn
            .admin(
                Method::GET,
                &format!("/v1/audit?since={since}&limit=1000{filter}"),
            )
            .await?;
        let records = &page.records;
        for r in records {
            let when = humantime::format_rfc3339_millis(
                UNIX_EPOCH + Duration::from_millis(r.event.time_ms.max(0) as u64),
            );
            println!(
                "{:>6} {when} {:<16} {:<5} actor={} subject={} aud={} scope=\"{}\" {}",
                r.seq,
                r.event.kind,
                r.event.decision.as_str(),
                r.event.actor,
                r.event.subject,
                r.event.audience,
                r.event.scope,
                r.event.reason
            );
        }
        since = page.head.seq.max(records.last().map_or(since, |r| r.seq));
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
