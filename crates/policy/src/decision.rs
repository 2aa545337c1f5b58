//! One decision: may this agent use this permission on this target, in this
//! context, now; and must a person approve first.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::schema::action_group;
use crate::set::PolicySet;

/// What the registry knows of an agent, as the `Agent` entity's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentFacts {
    /// The agent's name: its entity ID (`Agent::"billing"`).
    pub name: String,
    /// Its trust domain.
    pub trust_domain: String,
    /// Who is accountable for it.
    pub owner: String,
    /// Free-form labels from the registry.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether it was spawned for one task.
    #[serde(default)]
    pub ephemeral: bool,
    /// The agent that spawned it, if ephemeral.
    #[serde(default)]
    pub parent: Option<String>,
    /// Every agent it descends from, nearest first (the parent, its parent,
    /// …), so `principal in Agent::"root"` holds for grandchildren too.
    #[serde(default)]
    pub ancestors: Vec<String>,
}

/// What a permission is asked for.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The agent that receives the request.
    Agent(&'a AgentFacts),
    /// A typed resource a route declares, served by `served_by`.
    Resource {
        /// The resource's ID, e.g. `invoice/42`.
        id: &'a str,
        /// Its kind, e.g. `invoice`.
        kind: &'a str,
        /// The agent serving it: the resource is `in` that agent.
        served_by: &'a AgentFacts,
    },
}

/// The UTC hour and ISO weekday (1 = Monday … 7 = Sunday) of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// 0–23.
    pub hour: i64,
    /// 1–7, Monday first.
    pub weekday: i64,
}

impl Clock {
    /// The clock at a Unix time.
    pub fn at_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        // 1970-01-01 was a Thursday (ISO 4).
        let weekday = (days + 3).rem_euclid(7) + 1;
        Self {
            hour: secs.rem_euclid(86_400) / 3_600,
            weekday,
        }
    }
}

/// The `context` record of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// The task's statement of intent.
    #[serde(default)]
    pub purpose: String,
    /// The route's sensitivity; `unspecified` where no route is known.
    #[serde(default = "unspecified")]
    pub sensitivity: String,
    /// How many actors delegated to reach this request.
    #[serde(default)]
    pub delegation_depth: i64,
    /// The names of every agent in the token: subject and actors.
    #[serde(default)]
    pub chain: Vec<String>,
    /// The task.
    #[serde(default)]
    pub txn: String,
    /// The deployment environment, e.g. `production`.
    #[serde(default)]
    pub environment: String,
    /// When the decision is made.
    pub time: Clock,
    /// The peer address of the request.
    #[serde(default = "unknown_ip")]
    pub client_ip: IpAddr,
}

fn unspecified() -> String {
    "unspecified".into()
}

fn unknown_ip() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}

/// One question for a policy set.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The agent presenting the token.
    pub principal: &'a AgentFacts,
    /// The permission asked for.
    pub action: &'a str,
    /// The agent or resource it is asked for.
    pub target: Target<'a>,
    /// The request context.
    pub context: &'a RequestContext,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Outcome {
    /// A permit applies and no forbid does.
    Permit,
    /// Permitted once a person approves: a determining permit says
    /// `@approval("required")`.
    NeedsApproval {
        /// The group named by `@approvers`, if any.
        approvers: Option<String>,
    },
    /// A forbid applies, or no permit does.
    Deny,
}

/// An outcome with the policies that determined it and any evaluation errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What was decided.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The IDs of the policies that determined it; empty for a default deny.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate, with why.
    pub errors: Vec<String>,
}

impl Decision {
    /// A sentence naming why a deny happened, for error descriptions.
    pub fn denial_reason(&self) -> String {
        if self.policies.is_empty() {
            "no policy permits it".into()
        } else {
            format!("forbidden by policy {}", self.policies.join(", "))
        }
    }
}

impl PolicySet {
    /// Decides one query. A forbid policy that fails to evaluate denies
    /// (Cedar would skip it, which would fail open).
    pub fn decide(&self, q: &Query<'_>) -> Result<Decision, PolicyError> {
        let (request, entities) = prepare(q)?;
        // Only the policies whose action scope can match this action (or its
        // group) are evaluated: any other policy is false without its
        // conditions ever being evaluated, so the outcome is the same.
        let mut satisfied: Vec<String> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for bucket in self.buckets_for(q.action) {
            let response = self.authorizer.is_authorized(&request, bucket, &entities);
            let diagnostics = response.diagnostics();
            satisfied.extend(diagnostics.reason().map(ToString::to_string));
            for e in diagnostics.errors() {
                errors.push(e.to_string());
                match e {
                    cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                        failed.push(e.policy_id().to_string());
                    }
                }
            }
        }
        satisfied.sort();
        satisfied.dedup();
        failed.sort();
        failed.dedup();
        errors.sort();
        errors.dedup();
        Ok(self.interpret(satisfied, failed, errors))
    }

    /// Combines what the buckets said: a satisfied (or failed) forbid
    /// denies, else a satisfied permit allows, else no permit denies.
    fn interpret(
        &self,
        satisfied: Vec<String>,
        failed: Vec<String>,
        errors: Vec<String>,
    ) -> Decision {
        let failed_forbids: Vec<String> = failed
            .iter()
            .filter(|id| self.summary(id).is_some_and(|s| s.effect == "forbid"))
            .cloned()
            .collect();
        if !failed_forbids.is_empty() {
            return Decision {
                outcome: Outcome::Deny,
                policies: failed_forbids,
                errors,
            };
        }
        let is_forbid = |id: &String| self.summary(id).is_some_and(|s| s.effect == "forbid");
        let forbids: Vec<String> = satisfied
            .iter()
            .filter(|id| is_forbid(id))
            .cloned()
            .collect();
        let allowed = forbids.is_empty() && !satisfied.is_empty();
        let mut policies = if forbids.is_empty() {
            satisfied
        } else {
            forbids
        };
        let outcome = match allowed {
            false => Outcome::Deny,
            true => {
                // An approval permit that failed to evaluate might have
                // applied: a broader permit must not skip the person.
                let approving = policies
                    .iter()
                    .chain(&failed)
                    .filter_map(|id| self.summary(id))
                    .find(|s| s.approval);
                let outcome = match approving {
                    Some(s) => Outcome::NeedsApproval {
                        approvers: s.approvers.clone(),
                    },
                    None => Outcome::Permit,
                };
                // Name the failed approval permits too: they are why a person must decide.
                policies.extend(
                    failed
                        .iter()
                        .filter(|id| self.summary(id).is_some_and(|s| s.approval))
                        .cloned(),
                );
                outcome
            }
        };
        Decision {
            outcome,
            policies,
            errors,
        }
    }
}

/// The Cedar request and entities of one query.
fn prepare(q: &Query<'_>) -> Result<(Request, Entities), PolicyError> {
    let principal = agent_uid(&q.principal.name)?;
    let action = action_uid(q.action)?;
    let mut entities: HashMap<EntityUid, Entity> = HashMap::new();
    let p = agent_entity(q.principal)?;
    entities.insert(p.uid(), p);
    let resource = match q.target {
        Target::Agent(agent) => {
            let e = agent_entity(agent)?;
            let uid = e.uid();
            entities.entry(uid.clone()).or_insert(e);
            uid
        }
        Target::Resource {
            id,
            kind,
            served_by,
        } => {
            let server = agent_entity(served_by)?;
            let uid = uid("Resource", id)?;
            let attrs = HashMap::from([(
                "kind".to_owned(),
                RestrictedExpression::new_string(kind.to_owned()),
            )]);
            let e = Entity::new(uid.clone(), attrs, HashSet::from([server.uid()]))
                .map_err(request_error)?;
            entities.entry(server.uid()).or_insert(server);
            entities.insert(uid.clone(), e);
            uid
        }
    };
    let mut action_parents = HashSet::new();
    if let Some(group) = action_group(q.action) {
        let g = action_uid(group)?;
        entities.insert(g.clone(), Entity::with_uid(g.clone()));
        action_parents.insert(g);
    }
    entities.insert(
        action.clone(),
        Entity::new_no_attrs(action.clone(), action_parents),
    );
    let entities = Entities::from_entities(entities.into_values(), None).map_err(request_error)?;
    let context = context(q.context)?;
    let request =
        Request::new(principal, action, resource, context, None).map_err(request_error)?;
    Ok((request, entities))
}

/// The entity name of an agent's SPIFFE ID: its agent name within
/// `trust_domain`, the whole ID otherwise (agents of other trust domains).
pub fn entity_name(id: &str, trust_domain: &str) -> String {
    match agentauth_core::SpiffeId::parse(id) {
        Ok(spiffe) if spiffe.trust_domain() == trust_domain => spiffe
            .agent_name()
            .map_or_else(|| id.to_owned(), |n| n.to_string()),
        _ => id.to_owned(),
    }
}

fn request_error(e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Request(e.to_string())
}

/// The entity type names, parsed once.
fn type_name(kind: &str) -> Result<EntityTypeName, PolicyError> {
    static NAMES: std::sync::LazyLock<[(&str, Option<EntityTypeName>); 3]> =
        std::sync::LazyLock::new(|| {
            ["Agent", "Action", "Resource"].map(|n| (n, EntityTypeName::from_str(n).ok()))
        });
    match NAMES.iter().find(|(n, _)| *n == kind) {
        Some((_, Some(name))) => Ok(name.clone()),
        _ => EntityTypeName::from_str(kind).map_err(request_error),
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, PolicyError> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(kind)?,
        EntityId::new(id),
    ))
}

fn agent_uid(name: &str) -> Result<EntityUid, PolicyError> {
    uid("Agent", name)
}

fn action_uid(permission: &str) -> Result<EntityUid, PolicyError> {
    uid("Action", permission)
}

fn agent_entity(a: &AgentFacts) -> Result<Entity, PolicyError> {
    let mut attrs = HashMap::from([
        (
            "name".to_owned(),
            RestrictedExpression::new_string(a.name.clone()),
        ),
        (
            "trust_domain".to_owned(),
            RestrictedExpression::new_string(a.trust_domain.clone()),
        ),
        (
            "owner".to_owned(),
            RestrictedExpression::new_string(a.owner.clone()),
        ),
        (
            "tags".to_owned(),
            RestrictedExpression::new_set(
                a.tags
                    .iter()
                    .map(|t| RestrictedExpression::new_string(t.clone())),
            ),
        ),
        (
            "ephemeral".to_owned(),
            RestrictedExpression::new_bool(a.ephemeral),
        ),
    ]);
    let mut parents = HashSet::new();
    for ancestor in &a.ancestors {
        parents.insert(agent_uid(ancestor)?);
    }
    if let Some(parent) = &a.parent {
        let p = agent_uid(parent)?;
        attrs.insert(
            "parent".to_owned(),
            RestrictedExpression::new_entity_uid(p.clone()),
        );
        parents.insert(p);
    }
    Entity::new(agent_uid(&a.name)?, attrs, parents).map_err(request_error)
}

fn context(c: &RequestContext) -> Result<Context, PolicyError> {
    let chain = c
        .chain
        .iter()
        .map(|name| agent_uid(name).map(RestrictedExpression::new_entity_uid))
        .collect::<Result<Vec<_>, _>>()?;
    let time = RestrictedExpression::new_record([
        (
            "hour".to_owned(),
            RestrictedExpression::new_long(c.time.hour),
        ),
        (
            "weekday".to_owned(),
            RestrictedExpression::new_long(c.time.weekday),
        ),
    ])
    .map_err(request_error)?;
    Context::from_pairs([
        (
            "purpose".to_owned(),
            RestrictedExpression::new_string(c.purpose.clone()),
        ),
        (
            "sensitivity".to_owned(),
            RestrictedExpression::new_string(c.sensitivity.clone()),
        ),
        (
            "delegation_depth".to_owned(),
            RestrictedExpression::new_long(c.delegation_depth),
        ),
        ("chain".to_owned(), RestrictedExpression::new_set(chain)),
        (
            "txn".to_owned(),
            RestrictedExpression::new_string(c.txn.clone()),
        ),
        (
            "environment".to_owned(),
            RestrictedExpression::new_string(c.environment.clone()),
        ),
        ("time".to_owned(), time),
        (
            "client_ip".to_owned(),
            // An IPv4 peer on a dual-stack listener shows as ::ffff:a.b.c.d,
            // which Cedar refuses: decide with the IPv4 address.
            RestrictedExpression::new_ip(c.client_ip.to_canonical().to_string()),
        ),
    ])
    .map_err(request_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::PolicyFile;
    use cedar_policy::Authorizer;

    fn set(text: &str) -> PolicySet {
        PolicySet::load(&[PolicyFile {
            name: "t.cedar".into(),
            text: text.into(),
        }])
        .expect("valid")
    }

    fn agent(name: &str) -> AgentFacts {
        AgentFacts {
            name: name.into(),
            ..AgentFacts::default()
        }
    }

    fn ctx() -> RequestContext {
        RequestContext {
            purpose: String::new(),
            sensitivity: unspecified(),
            delegation_depth: 0,
            chain: vec!["caller".into()],
            txn: String::new(),
            environment: "dev".into(),
            time: Clock::at_unix(0),
            client_ip: unknown_ip(),
        }
    }

    fn decide(
        set: &PolicySet,
        action: &str,
        target: Target<'_>,
        context: &RequestContext,
    ) -> Decision {
        set.decide(&Query {
            principal: &agent("caller"),
            action,
            target,
            context,
        })
        .expect("decision")
    }

    #[test]
    fn forbid_overrides_permit() {
        let s = set(
            "@id(\"p\") permit (principal, action, resource);\n@id(\"f\") forbid (principal, action == Action::\"x:y\", resource);",
        );
        let target = agent("t");
        assert_eq!(
            decide(&s, "x:z", Target::Agent(&target), &ctx()).outcome,
            Outcome::Permit
        );
        let d = decide(&s, "x:y", Target::Agent(&target), &ctx());
        assert_eq!(
            (d.outcome.clone(), d.policies.clone()),
            (Outcome::Deny, vec!["f".to_owned()])
        );
        assert_eq!(d.denial_reason(), "forbidden by policy f");
    }

    #[test]
    fn a_forbid_that_fails_to_evaluate_denies() {
        let s = set(
            "permit (principal, action, resource);\n@id(\"overflow\") forbid (principal, action, resource) when { context.delegation_depth * 9223372036854775807 > 0 };",
        );
        let target = agent("t");
        let mut c = ctx();
        c.delegation_depth = 2;
        let d = decide(&s, "read", Target::Agent(&target), &c);
        assert_eq!(d.outcome, Outcome::Deny);
        assert_eq!(d.policies, ["overflow"]);
        assert_eq!(d.errors.len(), 1);
    }

    #[test]
    fn a_typed_resource_is_in_the_agent_serving_it() {
        let s = set(
            "permit (principal, action, resource in Agent::\"billing\") when { resource is Resource && resource.kind == \"invoice\" };",
        );
        let billing = agent("billing");
        let other = agent("other");
        let invoice = |served_by| Target::Resource {
            id: "invoice/42",
            kind: "invoice",
            served_by,
        };
        assert_eq!(
            decide(&s, "read", invoice(&billing), &ctx()).outcome,
            Outcome::Permit
        );
        assert_eq!(
            decide(&s, "read", invoice(&other), &ctx()).outcome,
            Outcome::Deny
        );
        assert_eq!(
            decide(&s, "read", Target::Agent(&billing), &ctx()).outcome,
            Outcome::Deny
        );
    }

    #[test]
    fn the_chain_the_parent_and_the_client_ip_are_visible() {
        let s = set(concat!(
            "@id(\"chain\") permit (principal, action == Action::\"a\", resource) when { context.chain.contains(Agent::\"root\") };\n",
            "@id(\"parent\") permit (principal in Agent::\"planner\", action == Action::\"b\", resource);\n",
            "@id(\"ip\") permit (principal, action == Action::\"c\", resource) when { context.client_ip.isInRange(ip(\"10.0.0.0/8\")) };\n",
        ));
        let target = agent("t");
        let mut c = ctx();
        assert_eq!(
            decide(&s, "a", Target::Agent(&target), &c).outcome,
            Outcome::Deny
        );
        c.chain.push("root".into());
        assert_eq!(
            decide(&s, "a", Target::Agent(&target), &c).outcome,
            Outcome::Permit
        );

        let mut child = agent("caller");
        child.parent = Some("planner".into());
        let d = s
            .decide(&Query {
                principal: &child,
                action: "b",
                target: Target::Agent(&target),
                context: &c,
            })
            .expect("decision");
        assert_eq!(d.outcome, Outcome::Permit);
        assert_eq!(
            decide(&s, "b", Target::Agent(&target), &c).outcome,
            Outcome::Deny
        );

        assert_eq!(
            decide(&s, "c", Target::Agent(&target), &c).outcome,
            Outcome::Deny
        );
        c.client_ip = "10.1.2.3".parse().unwrap();
        assert_eq!(
            decide(&s, "c", Target::Agent(&target), &c).outcome,
            Outcome::Permit
        );
    }

    #[test]
    fn deciding_per_action_bucket_matches_deciding_with_the_whole_set() {
        let s = set(concat!(
            "@id(\"any\") permit (principal, action, resource) when { context.delegation_depth == 0 };\n",
            "@id(\"reads\") permit (principal, action in Action::\"read\", resource);\n",
            "@id(\"one\") permit (principal, action == Action::\"write:orders\", resource);\n",
            "@id(\"list\") permit (principal, action in [Action::\"payments\", Action::\"deploy:svc\"], resource) when { context.environment == \"prod\" };\n",
            "@id(\"group-eq\") forbid (principal, action == Action::\"write\", resource);\n",
            "@id(\"deep\") forbid (principal, action, resource) when { context.delegation_depth > 2 } unless { action in Action::\"read\" };\n",
            "@id(\"no-orders-in-dev\") forbid (principal, action in [Action::\"write:orders\", Action::\"read:orders\"], resource) when { context.environment == \"dev\" };\n",
        ));
        let mut whole = cedar_policy::PolicySet::new();
        for bucket in std::iter::once(&s.any_action).chain(s.by_action.values()) {
            for p in bucket.policies() {
                if whole.policy(p.id()).is_none() {
                    whole.add(p.clone()).unwrap();
                }
            }
        }
        assert_eq!(whole.policies().count(), 7);
        let target = agent("t");
        let actions = [
            "read",
            "read:orders",
            "write",
            "write:orders",
            "write:x",
            "payments:create",
            "payments",
            "deploy:svc",
            "deploy:other",
            "other",
        ];
        let mut compared = 0;
        for action in actions {
            for depth in 0..4 {
                for env in ["dev", "prod"] {
                    let mut c = ctx();
                    c.delegation_depth = depth;
                    c.environment = env.into();
                    let q = Query {
                        principal: &agent("caller"),
                        action,
                        target: Target::Agent(&target),
                        context: &c,
                    };
                    let ours = s.decide(&q).unwrap();
                    let (request, entities) = prepare(&q).unwrap();
                    let reference = Authorizer::new().is_authorized(&request, &whole, &entities);
                    let mut reasons: Vec<String> = reference
                        .diagnostics()
                        .reason()
                        .map(ToString::to_string)
                        .collect();
                    reasons.sort();
                    let allowed = reference.decision() == cedar_policy::Decision::Allow;
                    assert_eq!(
                        ours.outcome != Outcome::Deny,
                        allowed,
                        "{action} {depth} {env}"
                    );
                    assert_eq!(ours.policies, reasons, "{action} {depth} {env}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 80);
    }

    #[test]
    fn a_grandchild_is_in_every_ancestor() {
        let s = set(
            "@id(\"root\") forbid (principal in Agent::\"root\", action, resource);\npermit (principal, action, resource);",
        );
        let target = agent("t");
        let mut grandchild = agent("caller");
        grandchild.parent = Some("child".into());
        grandchild.ancestors = vec!["child".into(), "root".into()];
        let d = s
            .decide(&Query {
                principal: &grandchild,
                action: "read",
                target: Target::Agent(&target),
                context: &ctx(),
            })
            .expect("decision");
        assert_eq!(
            (d.outcome, d.policies),
            (Outcome::Deny, vec!["root".to_owned()])
        );
    }

    #[test]
    fn an_approval_permit_that_fails_still_asks_for_approval() {
        let s = set(
            "permit (principal, action, resource);\n@id(\"pay\") @approval(\"required\") @approvers(\"finance\") permit (principal, action, resource) when { context.delegation_depth * 9223372036854775807 > 0 };",
        );
        let target = agent("t");
        let mut c = ctx();
        c.delegation_depth = 2;
        let d = decide(&s, "payments:create", Target::Agent(&target), &c);
        assert_eq!(
            d.outcome,
            Outcome::NeedsApproval {
                approvers: Some("finance".into())
            }
        );
        assert!(d.policies.contains(&"pay".to_owned()), "{:?}", d.policies);
    }

    #[test]
    fn an_ipv4_mapped_peer_is_decided_as_ipv4() {
        let s = set(
            "@id(\"lan\") permit (principal, action, resource) when { context.client_ip.isInRange(ip(\"10.0.0.0/8\")) };",
        );
        let target = agent("t");
        let mut c = ctx();
        c.client_ip = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            decide(&s, "read", Target::Agent(&target), &c).outcome,
            Outcome::Permit
        );
    }

    #[test]
    fn local_agents_are_named_by_name_and_others_by_id() {
        let local = "spiffe://example.org/agent/billing";
        assert_eq!(entity_name(local, "example.org"), "billing");
        assert_eq!(entity_name(local, "other.org"), local);
        assert_eq!(entity_name("not an id", "example.org"), "not an id");
    }

    #[test]
    fn the_clock_counts_iso_weekdays_from_the_epoch() {
        assert_eq!(
            Clock::at_unix(0),
            Clock {
                hour: 0,
                weekday: 4
            }
        );
        assert_eq!(
            Clock::at_unix(4 * 86_400 + 3_600 * 23),
            Clock {
                hour: 23,
                weekday: 1
            }
        );
        assert_eq!(
            Clock::at_unix(-1),
            Clock {
                hour: 23,
                weekday: 3
            }
        );
    }
}
