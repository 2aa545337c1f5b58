//! The verifier's copy of the authority's active policy set, and the last
//! check of the layer: the local policy decision with the request's context.
//!
//! The set is fetched from `GET /v1/policy` (with its ETag) at start and
//! again whenever the revocation feed announces a new version. What policies
//! see of an agent (owner, tags, ephemeral, parent) comes from
//! `GET /v1/policy/agents/{name}` and is kept for [`FACTS_TTL`]. Anything
//! that cannot be known (a set that does not load here, facts that cannot be
//! fetched) denies: the layer fails closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use agentauth_api::PolicyDistribution;
use agentauth_core::{AccessClaims, SpiffeId, unix_now};
use agentauth_policy::{
    AgentFacts, Clock, Outcome, PolicyFile, PolicySet, Query, RequestContext, Target,
};
use http::request::Parts;

use crate::{Check, Denial, SdkError};

/// How long an agent's facts are trusted before they are fetched again.
pub(crate) const FACTS_TTL: Duration = Duration::from_secs(60);
/// Most agents whose facts are kept.
const MAX_FACTS: usize = 10_000;

/// What a route tells the policy about itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteContext {
    /// `context.sensitivity`; `unspecified` if not said.
    pub(crate) sensitivity: Option<String>,
    /// The kind of the typed resource the route serves: the resource is then
    /// `Resource::"<decoded request path>"` (e.g. `"/invoices/42"`) of this
    /// kind, in this agent.
    pub(crate) resource_kind: Option<String>,
}

/// The policy set this verifier decides with.
#[derive(Debug)]
pub(crate) enum Active {
    /// The authority has no active set: nothing to decide.
    Off,
    /// This version decides.
    On {
        version: i64,
        etag: Option<String>,
        set: Arc<PolicySet>,
    },
    /// The authority's active set does not load here: every request is denied.
    Broken { version: i64, why: String },
}

/// The policy state of one verifier.
#[derive(Debug)]
pub(crate) struct PolicyView {
    active: RwLock<Arc<Active>>,
    facts: Mutex<HashMap<String, (Arc<AgentFacts>, Instant)>>,
    /// A refresh task is running.
    refreshing: AtomicBool,
    /// A new version was announced since the running refresh started.
    announced: AtomicBool,
}

impl PolicyView {
    pub(crate) fn new() -> Self {
        Self {
            active: RwLock::new(Arc::new(Active::Off)),
            facts: Mutex::new(HashMap::new()),
            refreshing: AtomicBool::new(false),
            announced: AtomicBool::new(false),
        }
    }

    /// The set in use now.
    pub(crate) fn current(&self) -> Arc<Active> {
        self.active.read().expect("lock").clone()
    }

    /// The version in use; `None` when policy is off.
    pub(crate) fn version(&self) -> Option<i64> {
        match &*self.current() {
            Active::Off => None,
            Active::On { version, .. } | Active::Broken { version, .. } => Some(*version),
        }
    }

    /// Fetches the active set unless the ETag says it is the one held.
    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        authority_url: &str,
    ) -> Result<(), SdkError> {
        let current = self.current();
        let mut request = http.get(format!("{authority_url}/v1/policy"));
        if let Active::On {
            etag: Some(etag), ..
        } = &*current
        {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SdkError::Authority(format!("policy set: {e}")))?;
        let status = response.status();
        if status == http::StatusCode::NOT_MODIFIED {
            return Ok(());
        }
        if !status.is_success() {
            return Err(SdkError::Authority(format!(
                "the policy set endpoint answered {status}"
            )));
        }
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: PolicyDistribution = response
            .json()
            .await
            .map_err(|e| SdkError::Authority(format!("policy set: {e}")))?;
        let version = match (body.active, body.version) {
            (false, _) => {
                *self.active.write().expect("lock") = Arc::new(Active::Off);
                return Ok(());
            }
            (true, Some(v)) => v,
            (true, None) => {
                return Err(SdkError::Authority(
                    "the policy set endpoint named no version".into(),
                ));
            }
        };
        let files: Vec<PolicyFile> = body
            .files
            .unwrap_or_default()
            .into_iter()
            .map(|f| PolicyFile {
                name: f.name,
                text: f.text,
            })
            .collect();
        let active = match PolicySet::load(&files) {
            Ok(set) => Active::On {
                version,
                etag,
                set: Arc::new(set),
            },
            Err(e) => {
                tracing::error!(version, error = %e, "the authority's policy set does not load here: denying every request");
                Active::Broken {
                    version,
                    why: e.to_string(),
                }
            }
        };
        *self.active.write().expect("lock") = Arc::new(active);
        // Facts may have changed along with the policies that read them.
        self.facts.lock().expect("lock").clear();
        Ok(())
    }

    /// Refreshes in the background after a feed announcement: one task at a
    /// time, which fetches again if another announcement came meanwhile.
    pub(crate) fn refresh_soon(self: &Arc<Self>, http: reqwest::Client, authority_url: String) {
        self.announced.store(true, Ordering::Release);
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let view = self.clone();
        tokio::spawn(async move {
            loop {
                while view.announced.swap(false, Ordering::AcqRel) {
                    if let Err(e) = view.refresh(&http, &authority_url).await {
                        tracing::warn!(error = %e, "fetching the new policy set failed");
                    }
                }
                view.refreshing.store(false, Ordering::Release);
                // An announcement between the last check and the store above
                // found the task still running: take it on.
                if !view.announced.load(Ordering::Acquire)
                    || view.refreshing.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }

    /// The facts of the agent named `name`, from the cache while fresh.
    async fn facts(
        &self,
        http: &reqwest::Client,
        authority_url: &str,
        name: &str,
    ) -> Result<Arc<AgentFacts>, Denial> {
        if let Some((facts, at)) = self.facts.lock().expect("lock").get(name)
            && at.elapsed() < FACTS_TTL
        {
            return Ok(facts.clone());
        }
        let unknown = |why: String| {
            Denial::new(
                Check::Policy,
                format!("what policy needs to know of {name} is unavailable: {why}"),
            )
        };
        let response = http
            .get(format!("{authority_url}/v1/policy/agents/{name}"))
            .send()
            .await
            .map_err(|e| unknown(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unknown(format!(
                "the authority answered {}",
                response.status()
            )));
        }
        let shown: agentauth_api::AgentFacts = response
            .json()
            .await
            .map_err(|e: reqwest::Error| unknown(e.to_string()))?;
        let facts = Arc::new(AgentFacts {
            name: shown.name,
            trust_domain: shown.trust_domain,
            owner: shown.owner,
            tags: shown.tags,
            ephemeral: shown.ephemeral,
            parent: shown.parent,
            ancestors: shown.ancestors,
        });
        let mut cache = self.facts.lock().expect("lock");
        if cache.len() >= MAX_FACTS {
            cache.retain(|_, (_, at)| at.elapsed() < FACTS_TTL);
            if cache.len() >= MAX_FACTS {
                cache.clear();
            }
        }
        cache.insert(name.to_owned(), (facts.clone(), Instant::now()));
        Ok(facts)
    }

    /// The local policy decision for `permission` with the request's context.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn check(
        &self,
        http: &reqwest::Client,
        authority_url: &str,
        me: &SpiffeId,
        environment: &str,
        claims: &AccessClaims,
        permission: &str,
        route: &RouteContext,
        parts: &Parts,
    ) -> Result<(), Denial> {
        let current = self.current();
        let (version, set) = match &*current {
            Active::Off => return Ok(()),
            Active::Broken { version, why } => {
                return Err(Denial::new(
                    Check::Policy,
                    format!("policy set version {version} does not load here: {why}"),
                ));
            }
            Active::On { version, set, .. } => (*version, set.clone()),
        };
        let principal = self
            .facts(http, authority_url, &entity_name(me, &claims.client_id))
            .await?;
        let own = self
            .facts(http, authority_url, &entity_name(me, me.as_str()))
            .await?;
        let actors = claims.actor_chain();
        let mut chain = vec![entity_name(me, &claims.sub)];
        chain.extend(actors.iter().map(|a| entity_name(me, a)));
        let context = RequestContext {
            purpose: claims.purpose.clone().unwrap_or_default(),
            sensitivity: route
                .sensitivity
                .clone()
                .unwrap_or_else(|| "unspecified".into()),
            delegation_depth: actors.len() as i64,
            chain,
            txn: claims.txn.clone().unwrap_or_default(),
            environment: environment.to_owned(),
            time: Clock::at_unix(unix_now()),
            client_ip: peer_ip(parts),
        };
        // The decoded path, as the router matched it: `/invoices/%34%32` is
        // the resource `/invoices/42`.
        let path = percent_encoding::percent_decode_str(parts.uri.path())
            .decode_utf8()
            .map_err(|_| Denial::new(Check::Policy, "the request path is not UTF-8"))?;
        let target = match route.resource_kind.as_deref() {
            Some(kind) => Target::Resource {
                id: &path,
                kind,
                served_by: &own,
            },
            None => Target::Agent(&own),
        };
        let decision = set
            .decide(&Query {
                principal: &principal,
                action: permission,
                target,
                context: &context,
            })
            .map_err(|e| Denial::new(Check::Policy, e.to_string()))?;
        match decision.outcome {
            // Approval belongs to issuance: the token was issued after it.
            Outcome::Permit | Outcome::NeedsApproval { .. } => Ok(()),
            Outcome::Deny => Err(Denial::new(
                Check::Policy,
                format!(
                    "policy version {version} denies \"{permission}\": {}",
                    decision.denial_reason()
                ),
            )),
        }
    }
}

/// The entity name of a SPIFFE ID, within this verifier's trust domain.
fn entity_name(me: &SpiffeId, id: &str) -> String {
    agentauth_policy::entity_name(id, me.trust_domain())
}

/// The peer address, when the server was started with connection info.
fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}
