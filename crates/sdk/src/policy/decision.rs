//! The local Cedar decision (the `policy` feature): one loaded policy set and
//! the agent facts it reads. What policies see of an agent (owner, tags,
//! ephemeral, parent) comes from `GET /v1/policy/agents/{name}` and is kept
//! for [`FACTS_TTL`]; facts that cannot be fetched deny.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentauth_core::{AccessClaims, SpiffeId, unix_now};
use agentauth_policy::{
    AgentFacts, Clock, Outcome, PolicyError, PolicyFile, PolicySet, Query, RequestContext, Target,
};
use http::request::Parts;

use super::{FactsSource, RouteContext};
use crate::{Check, Denial};

/// How long an agent's facts are trusted before they are fetched again.
const FACTS_TTL: Duration = Duration::from_secs(60);
/// Most agents whose facts are kept.
const MAX_FACTS: usize = 10_000;
/// The scope that lets an agent read what policies know of other agents.
static POLICY_READ: std::sync::LazyLock<agentauth_core::Scope> = std::sync::LazyLock::new(|| {
    agentauth_core::Scope::parse("policy:read").expect("a valid permission")
});

/// One version of the policy set, loaded, with the facts fetched for it.
#[derive(Debug)]
pub(crate) struct Decider {
    set: PolicySet,
    facts: Mutex<HashMap<String, (Arc<AgentFacts>, Instant)>>,
}

impl Decider {
    /// Loads the authority's policy files; fails if they do not load here.
    pub(crate) fn load(files: &[PolicyFile]) -> Result<Self, PolicyError> {
        Ok(Self {
            set: PolicySet::load(files)?,
            facts: Mutex::new(HashMap::new()),
        })
    }

    /// The facts of the agent named `name`, from the cache while fresh.
    async fn facts(&self, source: &FactsSource<'_>, name: &str) -> Result<Arc<AgentFacts>, Denial> {
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
        let Some(client) = source.client else {
            return Err(unknown(
                "the verifier has no client to ask the authority with (Verifier::with_client)"
                    .into(),
            ));
        };
        let token = client
            .token(source.authority_id, &POLICY_READ)
            .await
            .map_err(|e| unknown(e.to_string()))?;
        let request = client
            .http()
            .get(format!("{}/v1/policy/agents/{name}", source.authority_url));
        let response = client
            .send(request, &token)
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

    /// The decision of set `version` for `permission` with the request's context.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn decide(
        &self,
        version: i64,
        source: &FactsSource<'_>,
        me: &SpiffeId,
        environment: &str,
        claims: &AccessClaims,
        permission: &str,
        route: &RouteContext,
        parts: &Parts,
    ) -> Result<(), Denial> {
        let principal = self
            .facts(source, &entity_name(me, claims.client_id.as_str()))
            .await?;
        let own = self.facts(source, &entity_name(me, me.as_str())).await?;
        let mut chain = vec![entity_name(me, claims.sub.as_str())];
        chain.extend(claims.actors().map(|a| entity_name(me, a.as_str())));
        let context = RequestContext {
            purpose: claims.purpose.clone().unwrap_or_default(),
            sensitivity: route
                .sensitivity
                .clone()
                .unwrap_or_else(|| "unspecified".into()),
            delegation_depth: chain.len() as i64 - 1,
            chain,
            txn: claims
                .txn
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            environment: environment.to_owned(),
            time: Clock::at_unix(unix_now()),
            client_ip: peer_ip(parts),
            tls_peer: parts
                .extensions
                .get::<crate::mtls::PeerId>()
                .map(|p| p.0.to_string())
                .unwrap_or_default(),
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
        let decision = self
            .set
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
