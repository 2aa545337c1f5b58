//! The SPIFFE Workload API inside `serve` (`--workload-socket`): the
//! authority is its own identity source. A local process that satisfies an
//! agent's selectors gets that agent's X.509-SVID (a key pair made here, a
//! CSR signed by the current CA), renewed at half-life or as soon as
//! another CA takes over signing, JWT-SVIDs, and the trust bundles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentauth_core::{AuditKind, Decision, unix_now};
use agentauth_store::AgentRow;
use agentauth_workload::{
    Bundles, Endpoint, Identities, JwtIdentity, Selectors, WorkloadError, X509Identity,
};
use tokio::sync::watch;

use crate::audit::event;
use crate::server::State;
use crate::svid::JWT_SVID_LIFETIME_SECS;

/// Who the audit log names as issuing through the socket.
const ACTOR: &str = "workload-api";

/// An SVID handed out, kept until it is due again.
struct Held {
    identity: X509Identity,
    /// Serial of the CA that signed it.
    signer: String,
}

/// The authority as the Workload API's identity source.
pub(crate) struct LocalIdentities {
    state: Arc<State>,
    /// By agent name; only agents that still have an entry stay. Held
    /// across an issuance, so concurrent callers never issue twice.
    held: tokio::sync::Mutex<HashMap<String, Held>>,
}

impl LocalIdentities {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self {
            state,
            held: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The active, unexpired agents whose entry the caller satisfies.
    async fn matching(&self, caller: &Selectors) -> Result<Vec<AgentRow>, WorkloadError> {
        let now = unix_now();
        let entries = self
            .state
            .store
            .agents_with_selectors()
            .await
            .map_err(|e| WorkloadError::Unavailable(e.to_string()))?;
        self.held
            .lock()
            .await
            .retain(|name, _| entries.iter().any(|a| a.name.as_str() == name));
        Ok(entries
            .into_iter()
            .filter(|a| {
                a.status == agentauth_store::AgentStatus::Active
                    && a.expires_at.is_none_or(|at| at > now)
                    && caller.satisfy(&a.selectors)
            })
            .collect())
    }

    /// A new X.509-SVID for `agent` from the CA signing now.
    async fn issue(&self, agent: &AgentRow) -> Result<Held, WorkloadError> {
        let unavailable = |e: String| WorkloadError::Unavailable(e);
        let key = agentauth_svid::NewKey::generate().map_err(|e| unavailable(e.to_string()))?;
        let now = unix_now();
        let ring = self.state.cas();
        let signer = ring.signer(now);
        let issued = signer
            .issue(
                &key.csr_der,
                &agent.id,
                now,
                self.state.config.svid_lifetime_secs,
            )
            .map_err(|e| unavailable(e.to_string()))?;
        let mut audit = event(
            AuditKind::SvidIssued,
            ACTOR,
            &issued.serial,
            Decision::Allow,
        );
        audit.reason = format!(
            "X.509-SVID for {} until {} (serial {}) over the Workload API",
            agent.id, issued.expires_at, issued.serial
        );
        self.state
            .store
            .append_audit(&[audit])
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Held {
            identity: X509Identity {
                spiffe_id: agent.id.to_string(),
                chain_der: std::iter::once(issued.der.as_slice())
                    .chain(signer.intermediates())
                    .flatten()
                    .copied()
                    .collect(),
                key_pkcs8_der: key.key_pkcs8_der,
                renew_at: now + (issued.expires_at - now) / 2,
                hint: agent.name.to_string(),
            },
            signer: signer.serial(),
        })
    }
}

#[async_trait::async_trait]
impl Identities for LocalIdentities {
    async fn x509_svids(&self, caller: &Selectors) -> Result<Vec<X509Identity>, WorkloadError> {
        let agents = self.matching(caller).await?;
        let now = unix_now();
        let signer = self.state.cas().signer(now).serial();
        let mut out = Vec::with_capacity(agents.len());
        let mut held = self.held.lock().await;
        for agent in &agents {
            let kept = held
                .get(agent.name.as_str())
                .filter(|h| h.identity.renew_at > now && h.signer == signer)
                .map(|h| h.identity.clone());
            let identity = match kept {
                Some(identity) => identity,
                None => {
                    let fresh = self.issue(agent).await?;
                    let identity = fresh.identity.clone();
                    held.insert(agent.name.to_string(), fresh);
                    identity
                }
            };
            out.push(identity);
        }
        Ok(out)
    }

    async fn has_identity(&self, caller: &Selectors) -> Result<bool, WorkloadError> {
        Ok(!self.matching(caller).await?.is_empty())
    }

    async fn jwt_svids(
        &self,
        caller: &Selectors,
        audience: &[String],
        spiffe_id: Option<&str>,
    ) -> Result<Vec<JwtIdentity>, WorkloadError> {
        let agents = self.matching(caller).await?;
        let now = unix_now();
        let key = &self.state.jwt_svid_key;
        let mut out = Vec::new();
        let mut audit = Vec::new();
        for agent in agents
            .iter()
            .filter(|a| spiffe_id.is_none_or(|id| a.id.as_str() == id))
        {
            let token = agentauth_core::mint_jwt_svid(
                &key.key,
                &key.kid,
                &agent.id,
                audience,
                now,
                JWT_SVID_LIFETIME_SECS,
            );
            let mut record = event(AuditKind::SvidIssued, ACTOR, &agent.id, Decision::Allow);
            record.audience = audience.join(" ");
            record.reason = format!(
                "JWT-SVID for {} to {} until {} over the Workload API",
                agent.id,
                audience.join(" "),
                now + JWT_SVID_LIFETIME_SECS
            );
            audit.push(record);
            out.push(JwtIdentity {
                spiffe_id: agent.id.to_string(),
                token,
                hint: agent.name.to_string(),
            });
        }
        if !audit.is_empty() {
            self.state
                .store
                .append_audit(&audit)
                .await
                .map_err(|e| WorkloadError::Unavailable(e.to_string()))?;
        }
        Ok(out)
    }

    fn bundles(&self) -> Arc<Bundles> {
        let now = unix_now();
        let trust_domain = format!("spiffe://{}", self.state.trust_domain);
        let x509: Vec<u8> = self.state.cas().anchors(now).concat();
        let mut jwk = self.state.jwt_svid_key.key.public_jwk().to_json();
        jwk["kid"] = self.state.jwt_svid_key.kid.clone().into();
        jwk["use"] = "jwt-svid".into();
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": [jwk] }))
            .expect("a JWK set serialises");
        let mut bundles = Bundles {
            x509: [(trust_domain.clone(), x509)].into(),
            jwt: [(trust_domain.clone(), jwks)].into(),
            trust_domain,
        };
        // Federated trust domains, each under its own name, never merged.
        for (name, foreign) in self.state.federation.bundles() {
            let id = format!("spiffe://{name}");
            bundles
                .x509
                .insert(id.clone(), foreign.keys.x509_authorities.concat());
            let jwks = serde_json::to_vec(&serde_json::json!({ "keys": foreign.keys.jwt_jwks }))
                .expect("a JWK set serialises");
            bundles.jwt.insert(id, jwks);
        }
        Arc::new(bundles)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.state.ca_changes.subscribe()
    }
}

/// The Workload API served on `path` until `shutdown` fires.
pub(crate) fn spawn(
    endpoint: Endpoint,
    state: Arc<State>,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let recheck = Duration::from_secs(state.config.replica_reread_secs);
    let identities = Arc::new(LocalIdentities::new(state));
    tokio::spawn(async move {
        let path = endpoint.path().display().to_string();
        if let Err(e) = endpoint
            .serve(identities, recheck, async {
                let _ = shutdown.await;
            })
            .await
        {
            tracing::error!(error = %e, socket = %path, "the Workload API stopped");
        }
    })
}
