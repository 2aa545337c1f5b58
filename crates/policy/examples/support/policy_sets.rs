//! Realistic policy sets of a given size and the queries decided against
//! them, shared by `benches/decision.rs` and `examples/decision_percentiles.rs`
//! (each includes this file with `#[path]`; it is not a target of its own).
//!
//! A set of `n` policies is the eight example policies of
//! `policies/examples/` plus `n - 8` generated ones over distinct agents and
//! permissions, in files of at most 100 policies. Of the generated ones,
//! numbered `k = 0, 1, …`:
//!
//! - `k % 5 == 0`: a forbid on any write for agents tagged `quarantine-k`;
//! - `k % 5 == 1`: a forbid on anything when `agent-k` is in the delegation
//!   chain and the chain is deeper than one hop;
//! - `k % 5 == 2`: a permit of `write:res-k` and `read:res-k` for the members
//!   of `team-k` on `svc-k`, Monday to Friday;
//! - otherwise: a permit of `read:res-k` for `agent-k` in production from 09:00.
//!
//! A decision evaluates, per request, only the policies whose scope matches
//! the query and whose conditions read the context, less the chain forbids
//! whose agent is not in the chain; the rest are decided once per query
//! shape (see `src/scope.rs`). Here the quarantine forbids are decided per
//! shape, the chain forbids (one hop, agents not in the chain) are skipped,
//! and the example policies that read the context are evaluated each time.
//! Every query below is decided as `agent-3` (a member of `team-2`, whose
//! permit is among the generated ones at every size ≥ 10) on `svc-2`, one hop
//! of delegation deep, so both generated forbid kinds evaluate their
//! conditions.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::str::FromStr;

use agentauth_policy::{
    AgentFacts, Clock, Decision, Outcome, PolicyFile, PolicySet, Query, RequestContext, Target,
};

/// The example policy files, as shipped.
const EXAMPLES: [(&str, &str); 4] = [
    (
        "approvals.cedar",
        include_str!("../../../../policies/examples/approvals.cedar"),
    ),
    (
        "delegation.cedar",
        include_str!("../../../../policies/examples/delegation.cedar"),
    ),
    (
        "reads.cedar",
        include_str!("../../../../policies/examples/reads.cedar"),
    ),
    (
        "writes.cedar",
        include_str!("../../../../policies/examples/writes.cedar"),
    ),
];

/// How many policies the example files hold.
pub(crate) const EXAMPLE_POLICIES: usize = 8;

/// The reference policy set: `reads-are-low-risk` alone.
pub(crate) const REFERENCE_SET: &str =
    "@id(\"reads-are-low-risk\")\npermit (principal, action in Action::\"read\", resource);\n";

/// The set sizes measured.
pub(crate) const SIZES: [usize; 3] = [10, 100, 1_000];

/// [`SIZES`], or the comma-separated sizes in `POLICY_BENCH_SIZES`
/// (`bench/policy.sh --smoke` leaves out 1,000, whose loads take seconds each
/// in a debug build).
pub(crate) fn sizes() -> Vec<usize> {
    let Ok(list) = std::env::var("POLICY_BENCH_SIZES") else {
        return SIZES.to_vec();
    };
    list.split(',')
        .map(|n| match n.trim().parse() {
            Ok(n) if n >= EXAMPLE_POLICIES => n,
            _ => panic!(
                "POLICY_BENCH_SIZES={list}: sizes of at least {EXAMPLE_POLICIES}, comma-separated"
            ),
        })
        .collect()
}

/// The policy files of a set of `n` policies (`n` ≥ 8).
pub(crate) fn files(n: usize) -> Vec<PolicyFile> {
    assert!(n >= EXAMPLE_POLICIES, "a set holds at least the examples");
    let mut files: Vec<PolicyFile> = EXAMPLES
        .iter()
        .map(|(name, text)| PolicyFile {
            name: (*name).into(),
            text: (*text).into(),
        })
        .collect();
    let generated = n - EXAMPLE_POLICIES;
    for start in (0..generated).step_by(100) {
        let mut text = String::new();
        for k in start..generated.min(start + 100) {
            generated_policy(&mut text, k);
        }
        files.push(PolicyFile {
            name: format!("generated-{:04}.cedar", start / 100),
            text,
        });
    }
    files
}

fn generated_policy(out: &mut String, k: usize) {
    let _ = match k % 5 {
        0 => writeln!(
            out,
            "@id(\"gen-{k}-quarantine\")\nforbid (principal, action in Action::\"write\", resource)\nwhen {{ principal.tags.contains(\"quarantine-{k}\") }};\n"
        ),
        1 => writeln!(
            out,
            "@id(\"gen-{k}-chain\")\nforbid (principal, action, resource)\nwhen {{ context.chain.contains(Agent::\"agent-{k}\") && context.delegation_depth > 1 }};\n"
        ),
        2 => writeln!(
            out,
            "@id(\"gen-{k}-team\")\npermit (principal in Agent::\"team-{k}\", action in [Action::\"write:res-{k}\", Action::\"read:res-{k}\"], resource == Agent::\"svc-{k}\")\nwhen {{ context.time.weekday <= 5 }};\n"
        ),
        _ => writeln!(
            out,
            "@id(\"gen-{k}-read\")\npermit (principal == Agent::\"agent-{k}\", action == Action::\"read:res-{k}\", resource)\nwhen {{ context.environment == \"production\" && context.time.hour >= 9 }};\n"
        ),
    };
}

/// A validated set of `n` policies.
pub(crate) fn set(n: usize) -> PolicySet {
    let set = PolicySet::load(&files(n)).expect("the generated set validates");
    assert_eq!(set.summaries().len(), n);
    set
}

/// The principal, the target and the contexts every query uses.
pub(crate) struct World {
    pub(crate) principal: AgentFacts,
    pub(crate) target: AgentFacts,
    /// Wednesday 10:00 UTC, production.
    pub(crate) working_hours: RequestContext,
    /// Wednesday 20:00 UTC, production.
    pub(crate) evening: RequestContext,
}

impl World {
    pub(crate) fn new() -> Self {
        let principal = AgentFacts {
            name: "agent-3".into(),
            trust_domain: "agentauth.local".into(),
            owner: "team-payments@example.com".into(),
            tags: vec!["payments".into(), "tier-1".into(), "eu".into()],
            ephemeral: false,
            parent: Some("team-2".into()),
            ancestors: vec!["team-2".into()],
        };
        let target = AgentFacts {
            name: "svc-2".into(),
            trust_domain: "agentauth.local".into(),
            owner: "team-core@example.com".into(),
            tags: vec!["database".into()],
            ephemeral: false,
            parent: None,
            ancestors: vec![],
        };
        let working_hours = RequestContext {
            purpose: "reconcile invoices for October".into(),
            sensitivity: "unspecified".into(),
            delegation_depth: 1,
            chain: vec!["planner".into(), "agent-3".into()],
            txn: "txn-7f3a9c".into(),
            environment: "production".into(),
            // 2026-11-18, a Wednesday, 10:00 UTC.
            time: Clock {
                hour: 10,
                weekday: 3,
            },
            client_ip: [10, 1, 2, 3].into(),
            tls_peer: String::new(),
        };
        let mut evening = working_hours.clone();
        evening.time.hour = 20;
        Self {
            principal,
            target,
            working_hours,
            evening,
        }
    }

    /// The measured queries, by name, with the outcome each must have at
    /// every size: a permit (`read:res-2`, by `reads-are-low-risk` and the
    /// generated team permit), a deny (`write:res-2` at 20:00 in production,
    /// forbidden by `production-writes-in-working-hours`) and a permit that
    /// needs approval (`payments:refund`).
    pub(crate) fn queries(&self) -> [(&'static str, Query<'_>, Outcome); 3] {
        let q = |action, context| Query {
            principal: &self.principal,
            action,
            target: Target::Agent(&self.target),
            context,
        };
        [
            (
                "permit",
                q("read:res-2", &self.working_hours),
                Outcome::Permit,
            ),
            ("deny", q("write:res-2", &self.evening), Outcome::Deny),
            (
                "approval",
                q("payments:refund", &self.working_hours),
                Outcome::NeedsApproval {
                    approvers: Some("finance".into()),
                },
            ),
        ]
    }
}

/// Decides `q` and checks the outcome, so that no error path is timed.
pub(crate) fn check(set: &PolicySet, q: &Query<'_>, expected: &Outcome) -> Decision {
    let d = set.decide(q).expect("the decision is made");
    assert_eq!(&d.outcome, expected, "{d:?}");
    assert!(d.errors.is_empty(), "{d:?}");
    d
}

/// The reference the decision figures are divided by: Cedar's own
/// `is_authorized` of the permit query against `reads-are-low-risk` alone,
/// with the request and entities built beforehand — one policy's worth of
/// Cedar work, with none of agentauth's.
pub(crate) struct CedarReference {
    request: cedar_policy::Request,
    entities: cedar_policy::Entities,
    policies: cedar_policy::PolicySet,
    authorizer: cedar_policy::Authorizer,
}

impl CedarReference {
    pub(crate) fn new() -> Self {
        let uid = |kind: &str, id: &str| {
            cedar_policy::EntityUid::from_type_name_and_id(
                cedar_policy::EntityTypeName::from_str(kind).expect("a type name"),
                cedar_policy::EntityId::new(id),
            )
        };
        let (principal, target) = (uid("Agent", "agent-3"), uid("Agent", "svc-2"));
        let (action, group) = (uid("Action", "read:res-2"), uid("Action", "read"));
        let entities = cedar_policy::Entities::from_entities(
            [
                cedar_policy::Entity::with_uid(principal.clone()),
                cedar_policy::Entity::with_uid(target.clone()),
                cedar_policy::Entity::with_uid(group.clone()),
                cedar_policy::Entity::new_no_attrs(action.clone(), HashSet::from([group])),
            ],
            None,
        )
        .expect("entities");
        let request = cedar_policy::Request::new(
            principal,
            action,
            target,
            cedar_policy::Context::empty(),
            None,
        )
        .expect("a request");
        let policies = cedar_policy::PolicySet::from_str(REFERENCE_SET).expect("parses");
        let reference = Self {
            request,
            entities,
            policies,
            authorizer: cedar_policy::Authorizer::new(),
        };
        assert!(reference.allows(), "the reference permits");
        reference
    }

    /// One evaluation; true when allowed.
    pub(crate) fn allows(&self) -> bool {
        self.authorizer
            .is_authorized(&self.request, &self.policies, &self.entities)
            .decision()
            == cedar_policy::Decision::Allow
    }
}
