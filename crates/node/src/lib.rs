//! `agentauth node`: the SPIFFE Workload API on a host away from the
//! authority. The node attests once with a join token (`agentauth node
//! token`), keeps its node X.509-SVID and key in its data dir (0600), and
//! from then on authenticates by that SVID over mutual TLS: it renews it at
//! half-life, follows the entries assigned to it and the bundles, and gets
//! its workloads' SVIDs from the authority. Local callers are attested by
//! the kernel as on the authority's own socket, and each also has the
//! selector `node:<name>`, which every entry a node serves carries.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentauth_api::{
    JwtSvidIssued, NodeAttestation, NodeCsr, NodeEntries, NodeEntry, NodeJwtRequest, X509SvidIssued,
};
use agentauth_core::{SpiffeId, unix_now};
use agentauth_workload::{
    Bundles, Endpoint, Identities, JwtIdentity, Selector, Selectors, WorkloadError, X509Identity,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The file in the data dir that holds the node's SVID and key.
pub const NODE_SVID_FILE: &str = "node-svid.json";
/// How long one call to the authority may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong running a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Neither a stored node SVID nor a join token to get one.
    #[error(
        "no node SVID in {0}: give --join-token (from `agentauth node token`) on the first start"
    )]
    NoIdentity(String),
    /// The authority refused or could not be reached.
    #[error("the authority: {0}")]
    Authority(String),
    /// The data dir or the node SVID file could not be used.
    #[error("the node's data dir: {0}")]
    DataDir(String),
    /// The Workload API socket failed.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The authority's base URL, `https://…` (it runs `serve --tls`).
    pub authority: String,
    /// The CA certificates (PEM) the authority's TLS certificate chains to:
    /// its trust bundle, handed to the node out of band.
    pub authority_bundle_pem: String,
    /// The one-time join token, for the first start.
    pub join_token: Option<String>,
    /// Where the node keeps its SVID and key.
    pub data_dir: PathBuf,
    /// The Unix socket to serve the Workload API on.
    pub socket: PathBuf,
    /// How often entries and bundles are fetched again.
    pub recheck: Duration,
}

/// The node's own SVID as kept on disk.
#[derive(Serialize, Deserialize, Clone)]
struct NodeSvid {
    spiffe_id: String,
    chain_pem: String,
    key_pem: String,
    expires_at: i64,
    /// Half its life: when it is renewed.
    renew_at: i64,
}

impl NodeSvid {
    fn from_issued(issued: X509SvidIssued, key_pkcs8_der: Vec<u8>) -> Self {
        let now = unix_now();
        Self {
            renew_at: now + (issued.expires_at - now) / 2,
            spiffe_id: issued.spiffe_id,
            chain_pem: issued.x509_svid,
            key_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", key_pkcs8_der)),
            expires_at: issued.expires_at,
        }
    }

    fn load(dir: &Path) -> Result<Option<Self>, NodeError> {
        match std::fs::read_to_string(dir.join(NODE_SVID_FILE)) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| NodeError::DataDir(format!("{NODE_SVID_FILE}: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::DataDir(e.to_string())),
        }
    }

    /// Writes the file whole (a temporary file renamed), readable by the
    /// owner alone.
    fn store(&self, dir: &Path) -> Result<(), NodeError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let text = serde_json::to_vec(self).map_err(|e| NodeError::DataDir(e.to_string()))?;
        let temporary = dir.join(format!("{NODE_SVID_FILE}.new"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| NodeError::DataDir(e.to_string()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| NodeError::DataDir(e.to_string()))?;
        std::fs::rename(&temporary, dir.join(NODE_SVID_FILE))
            .map_err(|e| NodeError::DataDir(e.to_string()))
    }
}

/// The authority as the node calls it: HTTPS checked against the bundle,
/// presenting the node SVID held now.
struct Authority {
    base: String,
    roots: Vec<reqwest::Certificate>,
    current: RwLock<(reqwest::Client, NodeSvid)>,
}

fn https(
    roots: &[reqwest::Certificate],
    svid: Option<&NodeSvid>,
) -> Result<reqwest::Client, NodeError> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .timeout(CALL_TIMEOUT)
        .tls_certs_only(roots.iter().cloned());
    if let Some(svid) = svid {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", svid.chain_pem, svid.key_pem).as_bytes())
                .map_err(|e| NodeError::DataDir(format!("the node SVID is unusable: {e}")))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| NodeError::Authority(e.to_string()))
}

/// The body of a successful answer, or the authority's refusal as text.
async fn answer<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, NodeError> {
    let response = sent.map_err(|e| NodeError::Authority(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let refusal: serde_json::Value = response.json().await.unwrap_or_default();
        return Err(NodeError::Authority(format!(
            "HTTP {status}: {}",
            refusal["error_description"]
                .as_str()
                .unwrap_or("no explanation")
        )));
    }
    response
        .json()
        .await
        .map_err(|e| NodeError::Authority(e.to_string()))
}

/// A fresh key and its CSR as PEM.
fn new_key() -> Result<(Vec<u8>, String), NodeError> {
    let key = agentauth_svid::NewKey::generate().map_err(|e| NodeError::DataDir(e.to_string()))?;
    let csr = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", key.csr_der));
    Ok((key.key_pkcs8_der, csr))
}

impl Authority {
    fn client(&self) -> reqwest::Client {
        self.current.read().expect("node lock").0.clone()
    }

    fn svid(&self) -> NodeSvid {
        self.current.read().expect("node lock").1.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Renews the node SVID when half its life has passed.
    async fn renew_if_due(&self, dir: &Path) -> Result<(), NodeError> {
        if unix_now() < self.svid().renew_at {
            return Ok(());
        }
        let (key, csr) = new_key()?;
        let issued: X509SvidIssued = answer(
            self.client()
                .post(self.url("/v1/nodes/svid"))
                .json(&NodeCsr { csr, agent: None })
                .send()
                .await,
        )
        .await?;
        let fresh = NodeSvid::from_issued(issued, key);
        fresh.store(dir)?;
        let client = https(&self.roots, Some(&fresh))?;
        *self.current.write().expect("node lock") = (client, fresh);
        tracing::info!("node SVID renewed");
        Ok(())
    }
}

/// The identities a node hands out: entries assigned to it, SVIDs from the
/// authority, bundles as the authority publishes them.
struct RemoteIdentities {
    authority: Arc<Authority>,
    node_selector: Selector,
    entries: RwLock<Vec<NodeEntry>>,
    bundles: RwLock<Arc<Bundles>>,
    held: tokio::sync::Mutex<HashMap<String, X509Identity>>,
    changes: watch::Sender<u64>,
}

impl RemoteIdentities {
    fn matching(&self, caller: &Selectors) -> Vec<NodeEntry> {
        let caller = caller.clone().with(self.node_selector.clone());
        self.entries
            .read()
            .expect("node lock")
            .iter()
            .filter(|e| caller.satisfy(&e.selectors))
            .cloned()
            .collect()
    }

    /// Fetches the entries and bundles; a change wakes the streams.
    async fn refresh(&self) -> Result<(), NodeError> {
        let client = self.authority.client();
        let entries: NodeEntries = answer(
            client
                .get(self.authority.url("/v1/nodes/entries"))
                .send()
                .await,
        )
        .await?;
        let map: serde_json::Value =
            answer(client.get(self.authority.url("/v1/bundles")).send().await).await?;
        let bundles = read_bundle_map(&map, &self.authority.svid().spiffe_id)?;
        let mut changed = false;
        {
            let mut held = self.entries.write().expect("node lock");
            if *held != entries.entries {
                *held = entries.entries;
                changed = true;
            }
        }
        {
            let mut held = self.bundles.write().expect("node lock");
            if **held != bundles {
                *held = Arc::new(bundles);
                changed = true;
            }
        }
        if changed {
            let names: Vec<String> = self
                .entries
                .read()
                .expect("node lock")
                .iter()
                .map(|e| e.name.clone())
                .collect();
            self.held
                .lock()
                .await
                .retain(|name, _| names.contains(name));
            self.changes.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    async fn issue(&self, entry: &NodeEntry) -> Result<X509Identity, WorkloadError> {
        let unavailable = |e: NodeError| WorkloadError::Unavailable(e.to_string());
        let (key, csr) = new_key().map_err(unavailable)?;
        let issued: X509SvidIssued = answer(
            self.authority
                .client()
                .post(self.authority.url("/v1/nodes/x509"))
                .json(&NodeCsr {
                    csr,
                    agent: Some(entry.name.clone()),
                })
                .send()
                .await,
        )
        .await
        .map_err(unavailable)?;
        let chain = agentauth_svid::certificates_from_pem(&issued.x509_svid)
            .map_err(|e| WorkloadError::Unavailable(e.to_string()))?;
        let now = unix_now();
        Ok(X509Identity {
            spiffe_id: issued.spiffe_id,
            chain_der: chain.concat(),
            key_pkcs8_der: key,
            renew_at: now + (issued.expires_at - now) / 2,
            hint: entry.name.clone(),
        })
    }
}

/// The bundle map of `GET /v1/bundles` as the Workload API hands it out,
/// the node's own trust domain first.
fn read_bundle_map(map: &serde_json::Value, node_id: &str) -> Result<Bundles, NodeError> {
    let own = SpiffeId::parse(node_id)
        .map_err(|e| NodeError::DataDir(e.to_string()))?
        .trust_domain()
        .to_owned();
    let domains = map["trust_domains"]
        .as_object()
        .ok_or_else(|| NodeError::Authority("the bundle map has no trust_domains".into()))?;
    let mut x509 = BTreeMap::new();
    let mut jwt = BTreeMap::new();
    for (name, document) in domains {
        let Ok(bundle) = agentauth_svid::SpiffeBundle::from_value(document) else {
            tracing::warn!(trust_domain = %name, "an unreadable bundle was left out");
            continue;
        };
        let id = format!("spiffe://{name}");
        x509.insert(id.clone(), bundle.x509_authorities.concat());
        let jwks = serde_json::json!({ "keys": bundle.jwt_jwks });
        jwt.insert(id, serde_json::to_vec(&jwks).unwrap_or_default());
    }
    Ok(Bundles {
        trust_domain: format!("spiffe://{own}"),
        x509,
        jwt,
    })
}

#[async_trait::async_trait]
impl Identities for RemoteIdentities {
    async fn x509_svids(&self, caller: &Selectors) -> Result<Vec<X509Identity>, WorkloadError> {
        let entries = self.matching(caller);
        let now = unix_now();
        let mut held = self.held.lock().await;
        let mut out = Vec::with_capacity(entries.len());
        for entry in &entries {
            let kept = held.get(&entry.name).filter(|h| h.renew_at > now).cloned();
            let identity = match kept {
                Some(identity) => identity,
                None => {
                    let fresh = self.issue(entry).await?;
                    held.insert(entry.name.clone(), fresh.clone());
                    fresh
                }
            };
            out.push(identity);
        }
        Ok(out)
    }

    async fn has_identity(&self, caller: &Selectors) -> Result<bool, WorkloadError> {
        Ok(!self.matching(caller).is_empty())
    }

    async fn jwt_svids(
        &self,
        caller: &Selectors,
        audience: &[String],
        spiffe_id: Option<&str>,
    ) -> Result<Vec<JwtIdentity>, WorkloadError> {
        let mut out = Vec::new();
        for entry in self
            .matching(caller)
            .into_iter()
            .filter(|e| spiffe_id.is_none_or(|id| e.spiffe_id == id))
        {
            let issued: JwtSvidIssued = answer(
                self.authority
                    .client()
                    .post(self.authority.url("/v1/nodes/jwt"))
                    .json(&NodeJwtRequest {
                        agent: entry.name.clone(),
                        audience: audience.to_vec(),
                    })
                    .send()
                    .await,
            )
            .await
            .map_err(|e| WorkloadError::Unavailable(e.to_string()))?;
            out.push(JwtIdentity {
                spiffe_id: issued.spiffe_id,
                token: issued.token,
                hint: entry.name,
            });
        }
        Ok(out)
    }

    fn bundles(&self) -> Arc<Bundles> {
        self.bundles.read().expect("node lock").clone()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The node's SVID: the one kept in the data dir, or a new one got with the
/// join token (which is then spent).
async fn node_svid(
    config: &NodeConfig,
    roots: &[reqwest::Certificate],
) -> Result<NodeSvid, NodeError> {
    if let Some(held) = NodeSvid::load(&config.data_dir)? {
        return Ok(held);
    }
    let token = config
        .join_token
        .clone()
        .ok_or_else(|| NodeError::NoIdentity(config.data_dir.display().to_string()))?;
    let (key, csr) = new_key()?;
    let issued: X509SvidIssued = answer(
        https(roots, None)?
            .post(format!("{}/v1/nodes/attest", config.authority))
            .json(&NodeAttestation {
                join_token: token,
                csr,
            })
            .send()
            .await,
    )
    .await?;
    let svid = NodeSvid::from_issued(issued, key);
    svid.store(&config.data_dir)?;
    tracing::info!(spiffe_id = %svid.spiffe_id, "node attested with its join token");
    Ok(svid)
}

/// Runs a node until `shutdown` resolves: attests (or loads its SVID),
/// fetches its entries and bundles, and serves the Workload API on the
/// socket.
pub async fn run(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|e| NodeError::DataDir(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(config.authority_bundle_pem.as_bytes())
        .map_err(|e| NodeError::DataDir(format!("the authority bundle is not PEM: {e}")))?;
    let base = config.authority.trim_end_matches('/').to_owned();
    let config = NodeConfig {
        authority: base.clone(),
        ..config
    };
    let svid = node_svid(&config, &roots).await?;
    let node_name = SpiffeId::parse(&svid.spiffe_id)
        .ok()
        .and_then(|id| {
            id.path()
                .strip_prefix("/agentauth/node/")
                .map(str::to_owned)
        })
        .ok_or_else(|| NodeError::DataDir("the stored SVID is not a node's".into()))?;
    let node_selector = Selector::parse(&format!("node:{node_name}"))?;
    let authority = Arc::new(Authority {
        base,
        current: RwLock::new((https(&roots, Some(&svid))?, svid)),
        roots,
    });
    authority.renew_if_due(&config.data_dir).await?;
    let identities = Arc::new(RemoteIdentities {
        authority: authority.clone(),
        node_selector,
        entries: RwLock::new(Vec::new()),
        bundles: RwLock::new(Arc::new(Bundles::default())),
        held: tokio::sync::Mutex::new(HashMap::new()),
        changes: watch::Sender::new(0),
    });
    identities.refresh().await?;
    let follower = {
        let identities = Arc::downgrade(&identities);
        let (recheck, dir) = (config.recheck, config.data_dir.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(recheck).await;
                let Some(identities) = identities.upgrade() else {
                    return;
                };
                if let Err(e) = identities.authority.renew_if_due(&dir).await {
                    tracing::warn!(error = %e, "renewing the node SVID failed");
                }
                if let Err(e) = identities.refresh().await {
                    tracing::warn!(error = %e, "fetching entries and bundles failed");
                }
            }
        })
    };
    let endpoint = Endpoint::bind(&config.socket)?;
    tracing::info!(socket = %config.socket.display(), node = %node_name, "SPIFFE Workload API listening");
    let served = endpoint.serve(identities, config.recheck, shutdown).await;
    follower.abort();
    served.map_err(NodeError::from)
}
