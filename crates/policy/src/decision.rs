//! One decision: may this agent use this permission on this target, in this
//! context, now; and must a person approve first.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::entities::request;
use crate::error::PolicyError;
use crate::scope::Evaluated;
use crate::set::PolicySet;

/// What the registry knows of an agent, as the `Agent` entity's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The SPIFFE ID the caller proved in a mutual-TLS handshake; empty
    /// when the request came without one.
    #[serde(default)]
    pub tls_peer: String,
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
        let request = request(q)?;
        let prepared = self
            .scopes
            .prepare(&self.policies, &self.authorizer, q, &request)?;
        let Evaluated {
            mut satisfied,
            mut failed,
            mut errors,
        } = prepared.fixed.clone();
        let policies = self
            .scopes
            .per_request(&self.policies, &prepared, &q.context.chain)?;
        if !policies.is_empty() {
            let response = self
                .authorizer
                .is_authorized(&request, &policies, &prepared.entities);
            let now = Evaluated::of(&response);
            satisfied.extend(now.satisfied);
            failed.extend(now.failed);
            errors.extend(now.errors);
        }
        satisfied.sort();
        satisfied.dedup();
        failed.sort();
        failed.dedup();
        errors.sort();
        errors.dedup();
        Ok(self.interpret(satisfied, failed, errors))
    }

    /// Combines what the evaluated sets said: a satisfied (or failed) forbid
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
            tls_peer: String::new(),
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
    fn the_mutual_tls_peer_is_visible() {
        let s = set(
            "@id(\"peer\") permit (principal, action == Action::\"a\", resource) when { context.tls_peer like \"spiffe://partner.example/*\" };\n",
        );
        let target = agent("t");
        let mut c = ctx();
        assert_eq!(
            decide(&s, "a", Target::Agent(&target), &c).outcome,
            Outcome::Deny,
            "no TLS peer"
        );
        c.tls_peer = "spiffe://partner.example/agent/billing".into();
        assert_eq!(
            decide(&s, "a", Target::Agent(&target), &c).outcome,
            Outcome::Permit
        );
        c.tls_peer = "spiffe://agentauth.local/agent/billing".into();
        assert_eq!(
            decide(&s, "a", Target::Agent(&target), &c).outcome,
            Outcome::Deny
        );
    }

    #[test]
    fn deciding_the_candidates_of_a_shape_matches_deciding_with_the_whole_set() {
        let s = set(concat!(
            "@id(\"any\") permit (principal, action, resource) when { context.delegation_depth == 0 };\n",
            "@id(\"reads\") permit (principal, action in Action::\"read\", resource);\n",
            "@id(\"one\") permit (principal, action == Action::\"write:orders\", resource);\n",
            "@id(\"list\") permit (principal, action in [Action::\"payments\", Action::\"deploy:svc\"], resource) when { context.environment == \"prod\" };\n",
            "@id(\"group-eq\") forbid (principal, action == Action::\"write\", resource);\n",
            "@id(\"deep\") forbid (principal, action, resource) when { context.delegation_depth > 2 } unless { action in Action::\"read\" };\n",
            "@id(\"no-orders-in-dev\") forbid (principal, action in [Action::\"write:orders\", Action::\"read:orders\"], resource) when { context.environment == \"dev\" };\n",
            "@id(\"caller-only\") permit (principal == Agent::\"caller\", action in Action::\"deploy\", resource);\n",
            "@id(\"team\") permit (principal in Agent::\"team\", action, resource in Agent::\"billing\") when { context.environment == \"prod\" };\n",
            "@id(\"invoices\") permit (principal is Agent in Agent::\"team\", action, resource is Resource in Agent::\"billing\");\n",
            "@id(\"tagged\") forbid (principal, action in Action::\"write\", resource) when { principal.tags.contains(\"frozen\") };\n",
            "@id(\"chain\") forbid (principal, action, resource) when { context.chain.contains(Agent::\"rogue\") };\n",
        ));
        // Every policy, evaluated by Cedar in one go.
        let whole = &s.policies;
        assert_eq!(whole.policies().count(), 12);
        let member = AgentFacts {
            name: "member".into(),
            ancestors: vec!["team".into()],
            parent: Some("team".into()),
            ..AgentFacts::default()
        };
        let frozen = AgentFacts {
            tags: vec!["frozen".into()],
            ..agent("caller")
        };
        let principals = [agent("caller"), member, frozen, agent("outsider")];
        let (t, billing) = (agent("t"), agent("billing"));
        let targets = [
            Target::Agent(&t),
            Target::Agent(&billing),
            Target::Resource {
                id: "invoice/1",
                kind: "invoice",
                served_by: &billing,
            },
        ];
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
        for principal in &principals {
            for target in targets {
                for action in actions {
                    for depth in [0, 3] {
                        for env in ["dev", "prod"] {
                            for chain in [vec![], vec!["rogue".to_owned()]] {
                                let mut c = ctx();
                                c.delegation_depth = depth;
                                c.environment = env.into();
                                c.chain = chain;
                                let q = Query {
                                    principal,
                                    action,
                                    target,
                                    context: &c,
                                };
                                let ours = s.decide(&q).unwrap();
                                let request = crate::entities::request(&q).unwrap();
                                let entities = crate::entities::entities(&q).unwrap();
                                let reference =
                                    Authorizer::new().is_authorized(&request, whole, &entities);
                                let mut reasons: Vec<String> = reference
                                    .diagnostics()
                                    .reason()
                                    .map(ToString::to_string)
                                    .collect();
                                reasons.sort();
                                let allowed = reference.decision() == cedar_policy::Decision::Allow;
                                let case = format!("{} {action} {target:?} {c:?}", principal.name);
                                assert_eq!(ours.outcome != Outcome::Deny, allowed, "{case}");
                                assert_eq!(ours.policies, reasons, "{case}");
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 4 * 3 * 10 * 8);
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
