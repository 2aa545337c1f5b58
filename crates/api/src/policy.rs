//! Policy as code: versioned Cedar policy sets (`/v1/policies`, admin),
//! their dry runs (`POST /v1/policies/test`), and what verifiers fetch:
//! the active set (`GET /v1/policy`) and an agent's facts
//! (`GET /v1/policy/agents/{name}`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One `.cedar` file of a policy set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// The file name, e.g. `payments.cedar`.
    pub name: String,
    /// The policy text.
    pub text: String,
}

/// One problem of a refused policy set, where a person can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProblem {
    /// The file the problem is in.
    pub file: String,
    /// 1-based line, 0 when the problem concerns the whole file or set.
    pub line: usize,
    /// 1-based column, 0 when the problem concerns the whole file or set.
    pub column: usize,
    /// What is wrong, in one sentence.
    pub message: String,
}

/// One policy of a set, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// `@id("…")` if given, otherwise `file:line`.
    pub id: String,
    /// The file the policy is in.
    pub file: String,
    /// The line the policy starts on.
    pub line: usize,
    /// `permit` or `forbid`.
    pub effect: String,
    /// Whether a permit needs a person's approval (`@approval("required")`).
    pub approval: bool,
    /// Who should approve (`@approvers("group")`), if said.
    pub approvers: Option<String>,
}

/// Body of `POST /v1/policies`: a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPolicySet {
    /// The set's files.
    pub files: Vec<PolicyFile>,
    /// Activate the new version at once.
    #[serde(default)]
    pub activate: bool,
}

/// The answer of `POST /v1/policies`: the stored version and its policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySetLoaded {
    /// The new version number.
    pub version: i64,
    /// SHA-256 (hex) of the files.
    pub digest: String,
    /// How many policies the set has.
    pub policy_count: i64,
    /// Whether it was activated.
    pub active: bool,
    /// Every policy of the set.
    pub policies: Vec<PolicySummary>,
}

/// One stored version, as `GET /v1/policies` lists it and
/// `POST /v1/policies/{version}/activate` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// Version number, from 1.
    pub version: i64,
    /// SHA-256 (hex) of the files.
    pub digest: String,
    /// How many policies the set has.
    pub policy_count: i64,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Whether this version decides now.
    pub active: bool,
}

/// The answer of `GET /v1/policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionList {
    /// Every version, newest first.
    pub versions: Vec<PolicyVersion>,
}

/// The answer of `GET /v1/policies/{version}`: a version with its files and policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionDetail {
    /// Version number, from 1.
    pub version: i64,
    /// SHA-256 (hex) of the files.
    pub digest: String,
    /// How many policies the set has.
    pub policy_count: i64,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Whether this version decides now.
    pub active: bool,
    /// The set's files.
    pub files: Vec<PolicyFile>,
    /// Every policy of the set; empty if it no longer loads.
    pub policies: Vec<PolicySummary>,
}

/// The answer of `GET /v1/policy`: the active set for verifiers, or
/// `{"version": null, "active": false}` while policy is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDistribution {
    /// The active version; `null` when policy is off.
    pub version: Option<i64>,
    /// Whether a set is active.
    pub active: bool,
    /// SHA-256 (hex) of the files, when active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The files, when active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<PolicyFile>>,
}

/// Body of `POST /v1/policies/test`: one decision to dry-run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// Decide with these files instead of a stored version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<PolicyFile>>,
    /// Decide with this stored version; the active one when neither is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The agent asking, by name.
    pub principal: String,
    /// The permission it asks for.
    pub action: String,
    /// The target agent, by name.
    pub resource: String,
    /// Fields of [`DecisionContext`] to set; the rest take their defaults
    /// (now, this authority's environment).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub context: Value,
}

/// The answer of `POST /v1/policies/test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunAnswer {
    /// The stored version that decided; `null` for given files.
    pub version: Option<i64>,
    /// What was decided, and by which policies.
    pub decision: PolicyDecision,
    /// The context the decision was made in.
    pub context: DecisionContext,
}

/// An outcome with the policies that determined it and any evaluation errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// What was decided, as the `decision` member.
    #[serde(flatten)]
    pub outcome: PolicyOutcome,
    /// The IDs of the policies that determined it; empty for a default deny.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate, with why.
    pub errors: Vec<String>,
}

/// What a policy set decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum PolicyOutcome {
    /// A permit applies and no forbid does.
    Permit,
    /// Permitted once a person approves.
    NeedsApproval {
        /// The group named by `@approvers`, if any.
        approvers: Option<String>,
    },
    /// A forbid applies, or no permit does.
    Deny,
}

/// The `context` record of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionContext {
    /// The task's statement of intent.
    pub purpose: String,
    /// The route's sensitivity; `unspecified` where no route is known.
    pub sensitivity: String,
    /// How many actors delegated to reach this request.
    pub delegation_depth: i64,
    /// The names of every agent in the token: subject and actors.
    pub chain: Vec<String>,
    /// The task.
    pub txn: String,
    /// The deployment environment, e.g. `production`.
    pub environment: String,
    /// When the decision is made.
    pub time: DecisionClock,
    /// The peer address of the request.
    pub client_ip: IpAddr,
}

/// The UTC hour and ISO weekday of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionClock {
    /// 0–23.
    pub hour: i64,
    /// 1–7, Monday first.
    pub weekday: i64,
}

/// What policies see of an agent, as `GET /v1/policy/agents/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFacts {
    /// The agent's name.
    pub name: String,
    /// Its trust domain.
    pub trust_domain: String,
    /// Who is accountable for it.
    pub owner: String,
    /// Labels from the registry.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether it was spawned for one task.
    #[serde(default)]
    pub ephemeral: bool,
    /// The agent that spawned it, if ephemeral.
    #[serde(default)]
    pub parent: Option<String>,
    /// Every agent it descends from, nearest first.
    #[serde(default)]
    pub ancestors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::shape::pinned;

    fn file() -> PolicyFile {
        PolicyFile {
            name: "a.cedar".into(),
            text: "permit(principal, action, resource);".into(),
        }
    }

    fn summary() -> PolicySummary {
        PolicySummary {
            id: "pay".into(),
            file: "a.cedar".into(),
            line: 3,
            effect: "permit".into(),
            approval: true,
            approvers: None,
        }
    }

    #[test]
    fn a_load_sends_files_and_activate() {
        pinned(
            &NewPolicySet {
                files: vec![file()],
                activate: false,
            },
            r#"
{
  "files": [
    {
      "name": "a.cedar",
      "text": "permit(principal, action, resource);"
    }
  ],
  "activate": false
}"#,
        );
        let unknown = r#"{"files": [], "activate": true, "version": 3}"#;
        assert!(serde_json::from_str::<NewPolicySet>(unknown).is_err());
    }

    #[test]
    fn a_loaded_set_lists_its_policies() {
        pinned(
            &PolicySetLoaded {
                version: 2,
                digest: "abc".into(),
                policy_count: 1,
                active: true,
                policies: vec![summary()],
            },
            r#"
{
  "version": 2,
  "digest": "abc",
  "policy_count": 1,
  "active": true,
  "policies": [
    {
      "id": "pay",
      "file": "a.cedar",
      "line": 3,
      "effect": "permit",
      "approval": true,
      "approvers": null
    }
  ]
}"#,
        );
    }

    #[test]
    fn versions_are_listed_without_files() {
        pinned(
            &PolicyVersionList {
                versions: vec![PolicyVersion {
                    version: 1,
                    digest: "abc".into(),
                    policy_count: 4,
                    created_at: 9,
                    active: false,
                }],
            },
            r#"
{
  "versions": [
    {
      "version": 1,
      "digest": "abc",
      "policy_count": 4,
      "created_at": 9,
      "active": false
    }
  ]
}"#,
        );
    }

    #[test]
    fn a_version_in_full_has_its_files_then_its_policies() {
        pinned(
            &PolicyVersionDetail {
                version: 1,
                digest: "abc".into(),
                policy_count: 1,
                created_at: 9,
                active: true,
                files: vec![file()],
                policies: vec![PolicySummary {
                    approvers: Some("finance".into()),
                    ..summary()
                }],
            },
            r#"
{
  "version": 1,
  "digest": "abc",
  "policy_count": 1,
  "created_at": 9,
  "active": true,
  "files": [
    {
      "name": "a.cedar",
      "text": "permit(principal, action, resource);"
    }
  ],
  "policies": [
    {
      "id": "pay",
      "file": "a.cedar",
      "line": 3,
      "effect": "permit",
      "approval": true,
      "approvers": "finance"
    }
  ]
}"#,
        );
    }

    #[test]
    fn the_distribution_while_off_is_a_null_version() {
        pinned(
            &PolicyDistribution {
                version: None,
                active: false,
                digest: None,
                files: None,
            },
            r#"
{
  "version": null,
  "active": false
}"#,
        );
    }

    #[test]
    fn the_distribution_of_an_active_set_has_digest_and_files() {
        pinned(
            &PolicyDistribution {
                version: Some(3),
                active: true,
                digest: Some("abc".into()),
                files: Some(vec![file()]),
            },
            r#"
{
  "version": 3,
  "active": true,
  "digest": "abc",
  "files": [
    {
      "name": "a.cedar",
      "text": "permit(principal, action, resource);"
    }
  ]
}"#,
        );
    }

    #[test]
    fn a_dry_run_leaves_out_what_is_not_given() {
        pinned(
            &DryRunRequest {
                files: None,
                version: Some(2),
                principal: "billing".into(),
                action: "payments:refund".into(),
                resource: "payments".into(),
                context: json!({"purpose": "refund"}),
            },
            r#"
{
  "version": 2,
  "principal": "billing",
  "action": "payments:refund",
  "resource": "payments",
  "context": {
    "purpose": "refund"
  }
}"#,
        );
        let minimal: DryRunRequest =
            serde_json::from_str(r#"{"principal": "a", "action": "p", "resource": "b"}"#).unwrap();
        assert!(minimal.context.is_null() && minimal.files.is_none());
    }

    #[test]
    fn a_dry_run_answer_has_the_decision_flat_and_the_context() {
        pinned(
            &DryRunAnswer {
                version: None,
                decision: PolicyDecision {
                    outcome: PolicyOutcome::NeedsApproval {
                        approvers: Some("finance".into()),
                    },
                    policies: vec!["big-refund".into()],
                    errors: vec![],
                },
                context: DecisionContext {
                    purpose: "refund".into(),
                    sensitivity: "unspecified".into(),
                    delegation_depth: 0,
                    chain: vec!["billing".into()],
                    txn: String::new(),
                    environment: "development".into(),
                    time: DecisionClock {
                        hour: 13,
                        weekday: 2,
                    },
                    client_ip: IpAddr::from([127, 0, 0, 1]),
                },
            },
            r#"
{
  "version": null,
  "decision": {
    "decision": "needs_approval",
    "approvers": "finance",
    "policies": [
      "big-refund"
    ],
    "errors": []
  },
  "context": {
    "purpose": "refund",
    "sensitivity": "unspecified",
    "delegation_depth": 0,
    "chain": [
      "billing"
    ],
    "txn": "",
    "environment": "development",
    "time": {
      "hour": 13,
      "weekday": 2
    },
    "client_ip": "127.0.0.1"
  }
}"#,
        );
    }

    #[test]
    fn permit_and_deny_carry_no_approvers() {
        for (outcome, name) in [
            (PolicyOutcome::Permit, "permit"),
            (PolicyOutcome::Deny, "deny"),
        ] {
            let decision = PolicyDecision {
                outcome,
                policies: vec![],
                errors: vec!["f.cedar:3 failed".into()],
            };
            let expected = format!(
                "{{\n  \"decision\": \"{name}\",\n  \"policies\": [],\n  \"errors\": [\n    \"f.cedar:3 failed\"\n  ]\n}}"
            );
            pinned(&decision, &expected);
        }
    }

    #[test]
    fn agent_facts_show_a_null_parent() {
        pinned(
            &AgentFacts {
                name: "worker".into(),
                trust_domain: "td".into(),
                owner: "team-a".into(),
                tags: vec!["prod".into()],
                ephemeral: false,
                parent: None,
                ancestors: vec![],
            },
            r#"
{
  "name": "worker",
  "trust_domain": "td",
  "owner": "team-a",
  "tags": [
    "prod"
  ],
  "ephemeral": false,
  "parent": null,
  "ancestors": []
}"#,
        );
    }
}
