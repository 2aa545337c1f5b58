//! The example policies in `policies/examples/`, decided against the cases
//! each one is written for.

use agentauth_policy::{
    AgentFacts, Clock, Decision, Outcome, PolicyFile, PolicySet, Query, RequestContext, Target,
};

fn examples() -> PolicySet {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/examples");
    let mut files: Vec<PolicyFile> = std::fs::read_dir(dir)
        .expect("examples dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .map(|p| PolicyFile {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            text: std::fs::read_to_string(&p).expect("read"),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    PolicySet::load(&files).expect("the examples validate")
}

fn agent(name: &str) -> AgentFacts {
    AgentFacts {
        name: name.into(),
        trust_domain: "example.org".into(),
        owner: "team-a".into(),
        ..AgentFacts::default()
    }
}

/// Wednesday 2026-11-18, 10:00 UTC.
const WEDNESDAY_10H: i64 = 1_794_996_000;

fn context(depth: i64, environment: &str, at: i64) -> RequestContext {
    RequestContext {
        purpose: "test".into(),
        sensitivity: "unspecified".into(),
        delegation_depth: depth,
        chain: vec!["caller".into()],
        txn: "txn-1".into(),
        environment: environment.into(),
        time: Clock::at_unix(at),
        client_ip: "127.0.0.1".parse().unwrap(),
        tls_peer: String::new(),
    }
}

fn decide(set: &PolicySet, principal: &AgentFacts, action: &str, ctx: &RequestContext) -> Decision {
    let target = agent("target");
    set.decide(&Query {
        principal,
        action,
        target: Target::Agent(&target),
        context: ctx,
    })
    .expect("decision")
}

#[test]
fn the_clock_of_the_fixture_is_a_wednesday_morning() {
    assert_eq!(
        Clock::at_unix(WEDNESDAY_10H),
        Clock {
            hour: 10,
            weekday: 3
        }
    );
}

#[test]
fn reads_are_permitted_without_approval() {
    let set = examples();
    let d = decide(
        &set,
        &agent("a"),
        "read:customer",
        &context(0, "production", WEDNESDAY_10H),
    );
    assert_eq!(d.outcome, Outcome::Permit);
    assert_eq!(d.policies, ["reads-are-low-risk"]);
}

#[test]
fn payments_deployments_and_secrets_need_approval_from_their_group() {
    let set = examples();
    let ctx = context(0, "production", WEDNESDAY_10H);
    for (action, policy, group) in [
        ("payments:create", "payments-need-approval", "finance"),
        (
            "deploy:service",
            "deployments-need-approval",
            "release-managers",
        ),
        ("secrets:read", "secrets-need-approval", "security"),
    ] {
        let d = decide(&set, &agent("a"), action, &ctx);
        assert_eq!(
            d.outcome,
            Outcome::NeedsApproval {
                approvers: Some(group.into())
            },
            "{action}"
        );
        assert_eq!(d.policies, [policy]);
    }
}

#[test]
fn a_permission_no_policy_names_is_denied_by_default() {
    let set = examples();
    let d = decide(
        &set,
        &agent("a"),
        "admin:everything",
        &context(0, "dev", WEDNESDAY_10H),
    );
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(d.policies.is_empty());
    assert_eq!(d.denial_reason(), "no policy permits it");
}

#[test]
fn ephemeral_agents_may_use_but_not_delegate() {
    let set = examples();
    let mut worker = agent("worker");
    worker.ephemeral = true;
    worker.parent = Some("planner".into());
    let first_hand = decide(
        &set,
        &worker,
        "read:customer",
        &context(0, "dev", WEDNESDAY_10H),
    );
    assert_eq!(first_hand.outcome, Outcome::Permit);
    let delegated = decide(
        &set,
        &worker,
        "read:customer",
        &context(1, "dev", WEDNESDAY_10H),
    );
    assert_eq!(delegated.outcome, Outcome::Deny);
    assert_eq!(delegated.policies, ["ephemeral-agents-may-not-delegate"]);
    // The same delegation by a registered agent is fine.
    let registered = decide(
        &set,
        &agent("b"),
        "read:customer",
        &context(1, "dev", WEDNESDAY_10H),
    );
    assert_eq!(registered.outcome, Outcome::Permit);
}

#[test]
fn deeper_than_two_hops_only_reads_pass() {
    let set = examples();
    let two = decide(
        &set,
        &agent("a"),
        "write:orders",
        &context(2, "dev", WEDNESDAY_10H),
    );
    assert_eq!(two.outcome, Outcome::Permit);
    let three = decide(
        &set,
        &agent("a"),
        "write:orders",
        &context(3, "dev", WEDNESDAY_10H),
    );
    assert_eq!(three.outcome, Outcome::Deny);
    assert_eq!(three.policies, ["deep-delegation-only-reads"]);
    let read = decide(
        &set,
        &agent("a"),
        "read:orders",
        &context(3, "dev", WEDNESDAY_10H),
    );
    assert_eq!(read.outcome, Outcome::Permit);
    let pay = decide(
        &set,
        &agent("a"),
        "payments:create",
        &context(3, "dev", WEDNESDAY_10H),
    );
    assert_eq!(pay.outcome, Outcome::Deny);
}

#[test]
fn production_writes_only_on_weekdays_in_working_hours() {
    let set = examples();
    let a = agent("a");
    let cases = [
        (WEDNESDAY_10H, "production", Outcome::Permit),
        (WEDNESDAY_10H - 2 * 3600, "production", Outcome::Deny), // 08:00
        (WEDNESDAY_10H + 7 * 3600, "production", Outcome::Deny), // 17:00
        (WEDNESDAY_10H + 3 * 86_400, "production", Outcome::Deny), // Saturday
        (WEDNESDAY_10H + 3 * 86_400, "staging", Outcome::Permit),
        (WEDNESDAY_10H + 7 * 3600, "staging", Outcome::Permit),
    ];
    for (at, env, expected) in cases {
        let d = decide(&set, &a, "write:orders", &context(0, env, at));
        assert_eq!(d.outcome, expected, "{env} at {:?}", Clock::at_unix(at));
        if expected == Outcome::Deny {
            assert_eq!(d.policies, ["production-writes-in-working-hours"]);
        }
    }
}
