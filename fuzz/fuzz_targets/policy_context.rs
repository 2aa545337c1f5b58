//! The policy context conversion: a JSON request context (as the dry-run
//! API takes one) deserialized into `RequestContext` and turned into a Cedar
//! context and entities by `PolicySet::decide`, against a fixed set whose
//! answer a few lines of Rust can work out.
//!
//! The input is `{"principal", "target", "action", "context"}`; the names
//! are arbitrary strings. Asserts: every input that deserializes gets a
//! decision, without evaluation errors; the decision (outcome and
//! determining policies) equals the reference's, which also checks the
//! set's scope and chain-guard shortcuts; and asking again, with the
//! context now from the per-thread cache, answers the same.
#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use agentauth_policy::{
    AgentFacts, Decision, Outcome, PolicyFile, PolicySet, Query, RequestContext, Target,
};
use libfuzzer_sys::fuzz_target;

const POLICIES: &str = r#"
@id("prod") permit (principal, action, resource) when { context.environment == "prod" };
@id("open") permit (principal, action, resource == Agent::"open");
@id("pay") @approval("required") @approvers("finance")
permit (principal, action, resource) when { context.purpose == "pay" };
@id("deep") forbid (principal, action, resource) when { context.delegation_depth > 2 };
@id("rogue") forbid (principal, action, resource)
  when { context.chain.contains(Agent::"rogue") && context.txn == "" };
@id("lan") forbid (principal, action, resource)
  when { context.client_ip.isInRange(ip("10.0.0.0/8")) };
@id("night") forbid (principal, action, resource)
  when { context.time.hour >= 22 || context.time.weekday > 5 };
@id("mallory") forbid (principal == Agent::"mallory", action, resource);
@id("secret") forbid (principal, action, resource)
  when { context.sensitivity == "secret" && !(principal in Agent::"vault") };
"#;

static SET: LazyLock<PolicySet> = LazyLock::new(|| {
    PolicySet::load(&[PolicyFile {
        name: "fuzz.cedar".into(),
        text: POLICIES.into(),
    }])
    .expect("the fuzz policy set is valid")
});

#[derive(serde::Deserialize)]
struct Input {
    principal: String,
    target: String,
    action: String,
    context: RequestContext,
}

fn in_ten_slash_eight(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(_) => false,
    }
}

/// The set's decision, worked out by hand: any forbid wins, else any permit
/// (asking a person if `pay` is among them), else the default deny.
fn reference(input: &Input) -> (Outcome, Vec<String>) {
    let c = &input.context;
    let forbids = [
        ("deep", c.delegation_depth > 2),
        (
            "rogue",
            c.chain.iter().any(|a| a == "rogue") && c.txn.is_empty(),
        ),
        ("lan", in_ten_slash_eight(c.client_ip)),
        ("night", c.time.hour >= 22 || c.time.weekday > 5),
        ("mallory", input.principal == "mallory"),
        (
            "secret",
            c.sensitivity == "secret" && input.principal != "vault",
        ),
    ];
    let permits = [
        ("prod", c.environment == "prod"),
        ("open", input.target == "open"),
        ("pay", c.purpose == "pay"),
    ];
    let holding = |rules: &[(&str, bool)]| -> Vec<String> {
        let mut ids: Vec<String> = rules
            .iter()
            .filter(|(_, holds)| *holds)
            .map(|(id, _)| (*id).to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (forbidden, permitted) = (holding(&forbids), holding(&permits));
    if !forbidden.is_empty() {
        (Outcome::Deny, forbidden)
    } else if permitted.iter().any(|id| id == "pay") {
        let approvers = Some("finance".to_owned());
        (Outcome::NeedsApproval { approvers }, permitted)
    } else if !permitted.is_empty() {
        (Outcome::Permit, permitted)
    } else {
        (Outcome::Deny, Vec::new())
    }
}

fn agent(name: &str) -> AgentFacts {
    AgentFacts {
        name: name.to_owned(),
        trust_domain: "fuzz.local".into(),
        owner: "fuzz".into(),
        ..AgentFacts::default()
    }
}

fn decide(input: &Input) -> Decision {
    let (principal, target) = (agent(&input.principal), agent(&input.target));
    SET.decide(&Query {
        principal: &principal,
        action: &input.action,
        target: Target::Agent(&target),
        context: &input.context,
    })
    .expect("every deserialized context gets a decision")
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let first = decide(&input);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let mut policies = first.policies.clone();
    policies.sort();
    assert_eq!((first.outcome.clone(), policies), reference(&input));
    assert_eq!(decide(&input), first);
});
