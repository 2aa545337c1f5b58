//! The audit log: `GET /v1/audit` (admin) and `POST /v1/audit/events`, where
//! agents' verifying layers report their decisions.

use agentauth_core::{AuditRecord, Decision};
use serde::{Deserialize, Serialize};

/// The answer of `POST /v1/audit/checkpoint`: the chain's head, signed by
/// the authority, to keep somewhere the database's writers cannot reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// A compact JWS (`typ` `agentauth-audit-checkpoint+jwt`) over `iss`,
    /// `seq`, `hash` and `iat`, signed with the authority's token key
    /// (published in its JWKS under the header's `kid`).
    pub checkpoint: String,
    /// The last record the checkpoint covers.
    pub seq: i64,
    /// That record's chain hash.
    pub hash: String,
    /// When it was taken, seconds since the epoch.
    pub issued_at: i64,
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Records naming this agent (name or SPIFFE ID) as actor, subject or audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Records of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Records after this sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// At most this many (100 unless given, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// The answer of `GET /v1/audit`: records in chain order, and the chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The records asked for.
    pub records: Vec<AuditRecord>,
    /// The newest record of the whole log.
    pub head: AuditHead,
}

/// The newest record of the log, so a reader can tell a cut-off tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// Its sequence number; 0 for an empty log.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// One decision a verifying layer reports. The authority records the
/// reporting agent as the actor, whatever the event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedEvent {
    /// `request.allowed`, `request.denied`, …: agents report only `request.*`.
    pub kind: String,
    /// What the request was about.
    #[serde(default)]
    pub subject: String,
    /// The token's audience.
    #[serde(default)]
    pub audience: String,
    /// The permissions involved, space-separated.
    #[serde(default)]
    pub scope: String,
    /// Allowed or refused.
    pub decision: Decision,
    /// Why, in one sentence.
    #[serde(default)]
    pub reason: String,
    /// Correlates with the agent's logs.
    #[serde(default)]
    pub request_id: String,
    /// The task.
    #[serde(default)]
    pub txn: String,
    /// The delegation chain, current actor first, space-separated.
    #[serde(default)]
    pub chain: String,
    /// The task's stated purpose.
    #[serde(default)]
    pub purpose: String,
    /// When the agent saw it, milliseconds since the epoch; believed within a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
}

/// Body of `POST /v1/audit/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// At most 1000 events.
    pub events: Vec<ReportedEvent>,
    /// Events the layer had to drop since its last batch.
    #[serde(default)]
    pub dropped: u64,
}

/// The answer of `POST /v1/audit/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAccepted {
    /// Records written, one more than the events when some were dropped.
    pub accepted: u64,
}

#[cfg(test)]
mod tests {
    use agentauth_core::AuditEvent;

    use super::*;
    use crate::shape::pinned;

    #[test]
    fn a_page_is_flat_records_and_the_head() {
        let record = AuditRecord {
            seq: 1,
            event: AuditEvent {
                time_ms: 5,
                kind: agentauth_core::AuditKind::TokenIssued,
                actor: "spiffe://td/agent/a".into(),
                subject: "j1".into(),
                audience: "spiffe://td/agent/b".into(),
                scope: "read:db".into(),
                decision: Decision::Allow,
                reason: "client_credentials".into(),
                request_id: "r1".into(),
                txn: "txn-1".into(),
                chain: String::new(),
                purpose: String::new(),
                reported: false,
            },
            prev_hash: "00".into(),
            hash: "ab".into(),
            mac: "cd".into(),
        };
        pinned(
            &AuditPage {
                records: vec![record],
                head: AuditHead {
                    seq: 1,
                    hash: "ab".into(),
                },
            },
            r#"
{
  "records": [
    {
      "seq": 1,
      "time_ms": 5,
      "kind": "token.issued",
      "actor": "spiffe://td/agent/a",
      "subject": "j1",
      "audience": "spiffe://td/agent/b",
      "scope": "read:db",
      "decision": "allow",
      "reason": "client_credentials",
      "request_id": "r1",
      "txn": "txn-1",
      "chain": "",
      "purpose": "",
      "prev_hash": "00",
      "hash": "ab",
      "mac": "cd"
    }
  ],
  "head": {
    "seq": 1,
    "hash": "ab"
  }
}"#,
        );
    }

    #[test]
    fn a_batch_carries_events_and_the_drop_count() {
        let event = ReportedEvent {
            kind: "request.denied".into(),
            subject: "/rows".into(),
            audience: "spiffe://td/agent/db".into(),
            scope: "read:db".into(),
            decision: Decision::Deny,
            reason: "revoked".into(),
            request_id: "r2".into(),
            txn: "txn-1".into(),
            chain: "spiffe://td/agent/a".into(),
            purpose: "report".into(),
            time_ms: Some(9),
        };
        pinned(
            &EventBatch {
                events: vec![event],
                dropped: 2,
            },
            r#"
{
  "events": [
    {
      "kind": "request.denied",
      "subject": "/rows",
      "audience": "spiffe://td/agent/db",
      "scope": "read:db",
      "decision": "deny",
      "reason": "revoked",
      "request_id": "r2",
      "txn": "txn-1",
      "chain": "spiffe://td/agent/a",
      "purpose": "report",
      "time_ms": 9
    }
  ],
  "dropped": 2
}"#,
        );
        pinned(
            &BatchAccepted { accepted: 3 },
            r#"
{
  "accepted": 3
}"#,
        );
    }

    #[test]
    fn a_reported_event_needs_only_kind_and_decision() {
        let batch: EventBatch = serde_json::from_str(
            r#"{"events": [{"kind": "request.allowed", "decision": "allow"}]}"#,
        )
        .unwrap();
        assert_eq!(batch.dropped, 0);
        assert_eq!(batch.events[0].time_ms, None);
        let actor =
            r#"{"events": [{"kind": "request.allowed", "decision": "allow", "actor": "x"}]}"#;
        assert!(
            serde_json::from_str::<EventBatch>(actor).is_err(),
            "the actor is not the agent's to say"
        );
    }
}
