//! Which policies can apply to a principal, action and target: those whose
//! scope (`principal`, `action`, `resource` constraints) matches.
//!
//! A scope depends only on the entities of a query, never on its context, so
//! it is worked out once per query shape, by Cedar itself over scope-only
//! copies of the policies, and kept with the shape's entities. Any other
//! policy is false before its conditions are reached (Cedar evaluates the
//! scope first and short-circuits), so leaving it out changes neither the
//! outcome, nor the determining policies, nor the errors.
//!
//! Of the policies whose scope matches, those whose conditions never read
//! `context` are decided by the shape alone (its entities are part of it),
//! so they are evaluated once, with the shape, and their result is kept. A
//! decision evaluates only the conditions that read the context.
//!
//! One shape of condition is common enough to index as well: a policy whose
//! first condition starts with `context.chain.contains(Agent::"x")` is false
//! (Cedar short-circuits `&&`, and that test cannot fail) unless `x` is in
//! the request's chain, so it is evaluated only for requests whose chain
//! holds `x`. Blocklists of agents are written that way.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use cedar_policy::{Authorizer, Entities, Policy, PolicyId, Request};

use crate::decision::{AgentFacts, Query, Target};
use crate::entities::entities;
use crate::error::{PolicyError, Problem, RequestError, refused};

/// Most query shapes one policy set keeps; all are dropped when it is full,
/// so a flood of distinct queries costs bounded memory.
const MAX_SHAPES: usize = 4_096;

/// A policy set's scopes, and what it worked out per query shape.
#[derive(Debug)]
pub(crate) struct Scopes {
    /// Every policy's scope alone: a permit with the policy's ID and no
    /// conditions, so that Cedar names each policy whose scope matches.
    scopes: cedar_policy::PolicySet,
    /// The policies whose conditions never read `context`.
    context_free: HashSet<PolicyId>,
    /// Policies that apply only when an agent is in the chain, by policy.
    chain_guards: HashMap<PolicyId, String>,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    shapes: HashMap<u64, (Shape, Arc<Prepared>)>,
    /// Candidate sets by the IDs they hold: many shapes share one.
    sets: HashMap<Vec<PolicyId>, Arc<cedar_policy::PolicySet>>,
}

/// What a decision needs besides its request: the shape's entities and the
/// policies whose scope matches it.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) entities: Entities,
    /// The candidates whose conditions read the context, but for the
    /// chain-guarded ones.
    pub(crate) policies: Arc<cedar_policy::PolicySet>,
    /// Chain-guarded candidates, with the agent each needs in the chain.
    guarded: Vec<(PolicyId, String)>,
    /// What the context-free candidates decided for this shape.
    pub(crate) fixed: Evaluated,
}

/// What Cedar said of some policies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Evaluated {
    /// The determining policies: satisfied forbids if any, else satisfied permits.
    pub(crate) satisfied: Vec<String>,
    /// Policies that failed to evaluate.
    pub(crate) failed: Vec<String>,
    /// Why they failed.
    pub(crate) errors: Vec<String>,
}

impl Evaluated {
    /// Reads a Cedar response.
    pub(crate) fn of(response: &cedar_policy::Response) -> Self {
        let diagnostics = response.diagnostics();
        let mut out = Self {
            satisfied: diagnostics.reason().map(ToString::to_string).collect(),
            ..Self::default()
        };
        for e in diagnostics.errors() {
            out.errors.push(e.to_string());
            match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    out.failed.push(e.policy_id().to_string());
                }
            }
        }
        out
    }
}

impl Scopes {
    /// The scope-only copies of `policies`.
    pub(crate) fn new(policies: &cedar_policy::PolicySet) -> Result<Self, PolicyError> {
        let internal = |e: String| PolicyError::Invalid(vec![Problem::whole("(set)", e)]);
        let mut scopes = cedar_policy::PolicySet::new();
        let mut context_free = HashSet::new();
        let mut chain_guards = HashMap::new();
        for policy in policies.policies() {
            let mut json = policy.to_json().map_err(|e| internal(e.to_string()))?;
            if !json.get("conditions").is_some_and(reads_context) {
                context_free.insert(policy.id().clone());
            } else if let Some(agent) = chain_guard(&json) {
                chain_guards.insert(policy.id().clone(), agent);
            }
            let Some(fields) = json.as_object_mut() else {
                return Err(internal("a policy has no JSON form".into()));
            };
            fields.insert("effect".into(), "permit".into());
            fields.insert("conditions".into(), serde_json::Value::Array(Vec::new()));
            fields.remove("annotations");
            let scope = Policy::from_json(Some(policy.id().clone()), json)
                .map_err(|e| internal(e.to_string()))?;
            scopes.add(scope).map_err(|e| internal(e.to_string()))?;
        }
        Ok(Self {
            scopes,
            context_free,
            chain_guards,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The entities and candidate policies of `q`'s shape, worked out on
    /// first sight of the shape.
    pub(crate) fn prepare(
        &self,
        policies: &cedar_policy::PolicySet,
        authorizer: &Authorizer,
        q: &Query<'_>,
        request: &Request,
    ) -> Result<Arc<Prepared>, PolicyError> {
        let hash = shape_hash(q);
        if let Some(hit) = self
            .lock()
            .shapes
            .get(&hash)
            .and_then(|(shape, prepared)| shape.is(q).then(|| Arc::clone(prepared)))
        {
            return Ok(hit);
        }
        let entities = entities(q)?;
        let response = authorizer.is_authorized(request, &self.scopes, &entities);
        let mut matched: Vec<PolicyId> = response.diagnostics().reason().cloned().collect();
        matched.sort_unstable();
        // Each candidate is decided per shape, per request, or per request
        // whose chain holds its guard's agent.
        let (mut fixed_ids, mut ids, mut guarded) = (Vec::new(), Vec::new(), Vec::new());
        for id in matched {
            if self.context_free.contains(&id) {
                fixed_ids.push(id);
            } else if let Some(agent) = self.chain_guards.get(&id) {
                guarded.push((id, agent.clone()));
            } else {
                ids.push(id);
            }
        }
        let fixed = match fixed_ids.is_empty() {
            true => Evaluated::default(),
            false => {
                let set = subset(policies, &fixed_ids)?;
                Evaluated::of(&authorizer.is_authorized(request, &set, &entities))
            }
        };
        let mut cache = self.lock();
        if cache.shapes.len() >= MAX_SHAPES {
            cache.shapes.clear();
            cache.sets.clear();
        }
        let candidates = interned(&mut cache, policies, ids)?;
        let prepared = Arc::new(Prepared {
            entities,
            policies: candidates,
            guarded,
            fixed,
        });
        cache
            .shapes
            .insert(hash, (Shape::of(q), Arc::clone(&prepared)));
        Ok(prepared)
    }

    /// The policies a request of `prepared`'s shape evaluates: the shape's
    /// candidates and the chain-guarded ones whose agent is in `chain`.
    pub(crate) fn per_request(
        &self,
        policies: &cedar_policy::PolicySet,
        prepared: &Prepared,
        chain: &[String],
    ) -> Result<Arc<cedar_policy::PolicySet>, PolicyError> {
        let mut ids: Vec<PolicyId> = prepared
            .guarded
            .iter()
            .filter(|(_, agent)| chain.contains(agent))
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(Arc::clone(&prepared.policies));
        }
        ids.extend(prepared.policies.policies().map(|p| p.id().clone()));
        ids.sort_unstable();
        interned(&mut self.lock(), policies, ids)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic could break half-way.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a query's entities and candidates are worked out from, owned.
#[derive(Debug)]
struct Shape {
    principal: AgentFacts,
    action: String,
    target: AgentFacts,
    /// The typed resource's ID and kind, if the target is one.
    resource: Option<(String, String)>,
}

impl Shape {
    fn of(q: &Query<'_>) -> Self {
        let (target, resource) = match q.target {
            Target::Agent(agent) => (agent.clone(), None),
            Target::Resource {
                id,
                kind,
                served_by,
            } => (served_by.clone(), Some((id.to_owned(), kind.to_owned()))),
        };
        Self {
            principal: q.principal.clone(),
            action: q.action.to_owned(),
            target,
            resource,
        }
    }

    fn is(&self, q: &Query<'_>) -> bool {
        let target = match q.target {
            Target::Agent(agent) => self.resource.is_none() && &self.target == agent,
            Target::Resource {
                id,
                kind,
                served_by,
            } => {
                &self.target == served_by
                    && self
                        .resource
                        .as_ref()
                        .is_some_and(|(i, k)| i == id && k == kind)
            }
        };
        target && &self.principal == q.principal && self.action == q.action
    }
}

fn shape_hash(q: &Query<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    q.principal.hash(&mut h);
    q.action.hash(&mut h);
    match q.target {
        Target::Agent(agent) => {
            0u8.hash(&mut h);
            agent.hash(&mut h);
        }
        Target::Resource {
            id,
            kind,
            served_by,
        } => {
            1u8.hash(&mut h);
            id.hash(&mut h);
            kind.hash(&mut h);
            served_by.hash(&mut h);
        }
    }
    h.finish()
}

/// The set of the policies named by `ids` (sorted), shared by every shape
/// and request that evaluates the same ones.
fn interned(
    cache: &mut Cache,
    policies: &cedar_policy::PolicySet,
    ids: Vec<PolicyId>,
) -> Result<Arc<cedar_policy::PolicySet>, PolicyError> {
    if let Some(set) = cache.sets.get(&ids) {
        return Ok(Arc::clone(set));
    }
    if cache.sets.len() >= MAX_SHAPES {
        cache.sets.clear();
    }
    let set = Arc::new(subset(policies, &ids)?);
    cache.sets.insert(ids, Arc::clone(&set));
    Ok(set)
}

/// The policies of `policies` named by `ids`.
fn subset(
    policies: &cedar_policy::PolicySet,
    ids: &[PolicyId],
) -> Result<cedar_policy::PolicySet, PolicyError> {
    let mut set = cedar_policy::PolicySet::new();
    for id in ids {
        if let Some(policy) = policies.policy(id) {
            set.add(policy.clone())
                .map_err(refused(RequestError::Candidates))?;
        }
    }
    Ok(set)
}

/// Whether a policy's conditions (as Cedar's JSON form) mention `context`.
/// Every read of the context is the variable `{"Var": "context"}`; a
/// false positive only costs evaluating the policy per request.
fn reads_context(json: &serde_json::Value) -> bool {
    match json {
        serde_json::Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| (k == "Var" && v.as_str() == Some("context")) || reads_context(v)),
        serde_json::Value::Array(items) => items.iter().any(reads_context),
        _ => false,
    }
}

/// The agent a policy needs in the chain, if its first condition is a
/// `when` whose first conjunct is `context.chain.contains(Agent::"x")`.
fn chain_guard(json: &serde_json::Value) -> Option<String> {
    let first = json.get("conditions")?.get(0)?;
    if first.get("kind")?.as_str()? != "when" {
        return None;
    }
    let mut expr = first.get("body")?;
    while let Some(left) = expr.get("&&").and_then(|and| and.get("left")) {
        expr = left;
    }
    let contains = expr.get("contains")?;
    let set = contains.get("left")?.get(".")?;
    if set.get("left")?.get("Var")?.as_str()? != "context" || set.get("attr")?.as_str()? != "chain"
    {
        return None;
    }
    let entity = contains.get("right")?.get("Value")?.get("__entity")?;
    if entity.get("type")?.as_str()? != "Agent" {
        return None;
    }
    entity.get("id")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Clock, Outcome, RequestContext};
    use crate::set::{PolicyFile, PolicySet};

    fn json(text: &str) -> serde_json::Value {
        Policy::parse(None, text)
            .expect("parses")
            .to_json()
            .expect("json")
    }

    #[test]
    fn only_a_leading_chain_membership_test_guards_a_policy() {
        let guard = |text| chain_guard(&json(text));
        assert_eq!(
            guard(
                "forbid (principal, action, resource) when { context.chain.contains(Agent::\"x\") && context.delegation_depth > 1 && principal.ephemeral };"
            ),
            Some("x".into())
        );
        assert_eq!(
            guard(
                "forbid (principal, action, resource) when { context.chain.contains(Agent::\"x\") };"
            ),
            Some("x".into())
        );
        // Evaluated after something that may fail or hold: not a guard.
        assert_eq!(
            guard(
                "forbid (principal, action, resource) when { context.delegation_depth > 1 && context.chain.contains(Agent::\"x\") };"
            ),
            None
        );
        assert_eq!(
            guard(
                "forbid (principal, action, resource) unless { context.chain.contains(Agent::\"x\") };"
            ),
            None
        );
        assert_eq!(
            guard(
                "forbid (principal, action, resource) when { context.chain.contains(Agent::\"x\") || true };"
            ),
            None
        );
    }

    #[test]
    fn a_read_of_the_context_anywhere_makes_a_policy_per_request() {
        let reads = |text| reads_context(&json(text)["conditions"]);
        assert!(reads(
            "permit (principal, action, resource) when { principal.ephemeral } unless { if principal.ephemeral then context.txn == \"\" else false };"
        ));
        assert!(!reads(
            "permit (principal, action, resource) when { principal.tags.contains(\"context\") && resource.name == \"Var\" };"
        ));
        assert!(!reads("permit (principal, action, resource);"));
    }

    #[test]
    fn a_flood_of_shapes_stays_bounded_and_decides_as_before() {
        let set = PolicySet::load(&[PolicyFile {
            name: "t.cedar".into(),
            text: concat!(
                "@id(\"reads\") permit (principal, action in Action::\"read\", resource);\n",
                "@id(\"frozen\") forbid (principal, action, resource) when { principal.tags.contains(\"frozen\") };\n",
                "@id(\"rogue\") forbid (principal, action, resource) when { context.chain.contains(Agent::\"rogue\") };\n",
            )
            .into(),
        }])
        .expect("valid");
        let target = AgentFacts {
            name: "t".into(),
            ..AgentFacts::default()
        };
        let context = RequestContext {
            purpose: String::new(),
            sensitivity: "unspecified".into(),
            delegation_depth: 0,
            chain: vec!["rogue".into()],
            txn: String::new(),
            environment: "dev".into(),
            time: Clock::at_unix(0),
            client_ip: [127, 0, 0, 1].into(),
            tls_peer: String::new(),
        };
        let decide = |principal: &AgentFacts, chain_holds_rogue: bool| {
            let mut c = context.clone();
            if !chain_holds_rogue {
                c.chain.clear();
            }
            set.decide(&Query {
                principal,
                action: "read:x",
                target: Target::Agent(&target),
                context: &c,
            })
            .expect("decides")
        };
        let caller = AgentFacts {
            name: "caller".into(),
            ..AgentFacts::default()
        };
        assert_eq!(decide(&caller, false).outcome, Outcome::Permit);
        for i in 0..MAX_SHAPES + 10 {
            let flood = AgentFacts {
                owner: format!("owner-{i}"),
                tags: if i % 2 == 0 {
                    vec!["frozen".into()]
                } else {
                    vec![]
                },
                ..caller.clone()
            };
            let d = decide(&flood, false);
            let expected = if i % 2 == 0 {
                Outcome::Deny
            } else {
                Outcome::Permit
            };
            assert_eq!(d.outcome, expected, "{i}");
            let cache = set.scopes.lock();
            assert!(cache.shapes.len() <= MAX_SHAPES);
            assert!(cache.sets.len() <= MAX_SHAPES);
        }
        // The first shape, long since dropped, is worked out again alike.
        assert_eq!(decide(&caller, false).outcome, Outcome::Permit);
        let d = decide(&caller, true);
        assert_eq!(
            (d.outcome, d.policies),
            (Outcome::Deny, vec!["rogue".into()])
        );
    }
}
