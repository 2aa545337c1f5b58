//! Audit records and their hash chain: each record carries the hash of the one
//! before, so an edited, removed or reordered record is found.

use std::fmt;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// The `prev_hash` of the first record: 32 zero bytes, hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The outcome an audit record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The action was allowed or done.
    Allow,
    /// The action was refused.
    Deny,
}

impl Decision {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// What kind of thing an audit record reports; stored and hashed as its
/// dotted name (`token.issued`, `request.denied`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditKind {
    /// A token was issued by client_credentials.
    #[serde(rename = "token.issued")]
    TokenIssued,
    /// A token was issued by token exchange.
    #[serde(rename = "token.exchanged")]
    TokenExchanged,
    /// A token request was refused.
    #[serde(rename = "token.refused")]
    TokenRefused,
    /// A token (and what was exchanged from it) was revoked.
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// The admin registered an agent.
    #[serde(rename = "agent.created")]
    AgentCreated,
    /// An agent spawned an ephemeral child.
    #[serde(rename = "agent.spawned")]
    AgentSpawned,
    /// An agent's registry entry changed.
    #[serde(rename = "agent.updated")]
    AgentUpdated,
    /// An agent was disabled or revoked.
    #[serde(rename = "agent.revoked")]
    AgentRevoked,
    /// An agent was deleted.
    #[serde(rename = "agent.deleted")]
    AgentDeleted,
    /// A key was revoked by thumbprint.
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    /// A task was completed: its tokens stop working.
    #[serde(rename = "task.completed")]
    TaskCompleted,
    /// A task was revoked by the admin.
    #[serde(rename = "task.revoked")]
    TaskRevoked,
    /// A delegation grant was created or replaced.
    #[serde(rename = "delegation.granted")]
    DelegationGranted,
    /// A delegation grant was removed.
    #[serde(rename = "delegation.revoked")]
    DelegationRevoked,
    /// A policy set version was stored.
    #[serde(rename = "policy.loaded")]
    PolicyLoaded,
    /// A policy set version became the active one.
    #[serde(rename = "policy.activated")]
    PolicyActivated,
    /// A token request waits for a person's approval.
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    /// A person approved a request.
    #[serde(rename = "approval.approved")]
    ApprovalApproved,
    /// A person denied a request.
    #[serde(rename = "approval.denied")]
    ApprovalDenied,
    /// A verifying layer let a request through.
    #[serde(rename = "request.allowed")]
    RequestAllowed,
    /// A verifying layer refused a request.
    #[serde(rename = "request.denied")]
    RequestDenied,
    /// A verifying layer dropped audit events it could not send.
    #[serde(rename = "audit.dropped")]
    AuditDropped,
    /// The admin credential was replaced (`agentauth admin rotate-credential`).
    #[serde(rename = "admin.credential_rotated")]
    AdminCredentialRotated,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 23] = [
        Self::TokenIssued,
        Self::TokenExchanged,
        Self::TokenRefused,
        Self::TokenRevoked,
        Self::AgentCreated,
        Self::AgentSpawned,
        Self::AgentUpdated,
        Self::AgentRevoked,
        Self::AgentDeleted,
        Self::KeyRevoked,
        Self::TaskCompleted,
        Self::TaskRevoked,
        Self::DelegationGranted,
        Self::DelegationRevoked,
        Self::PolicyLoaded,
        Self::PolicyActivated,
        Self::ApprovalRequested,
        Self::ApprovalApproved,
        Self::ApprovalDenied,
        Self::RequestAllowed,
        Self::RequestDenied,
        Self::AuditDropped,
        Self::AdminCredentialRotated,
    ];

    /// The dotted name records carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenIssued => "token.issued",
            Self::TokenExchanged => "token.exchanged",
            Self::TokenRefused => "token.refused",
            Self::TokenRevoked => "token.revoked",
            Self::AgentCreated => "agent.created",
            Self::AgentSpawned => "agent.spawned",
            Self::AgentUpdated => "agent.updated",
            Self::AgentRevoked => "agent.revoked",
            Self::AgentDeleted => "agent.deleted",
            Self::KeyRevoked => "key.revoked",
            Self::TaskCompleted => "task.completed",
            Self::TaskRevoked => "task.revoked",
            Self::DelegationGranted => "delegation.granted",
            Self::DelegationRevoked => "delegation.revoked",
            Self::PolicyLoaded => "policy.loaded",
            Self::PolicyActivated => "policy.activated",
            Self::ApprovalRequested => "approval.requested",
            Self::ApprovalApproved => "approval.approved",
            Self::ApprovalDenied => "approval.denied",
            Self::RequestAllowed => "request.allowed",
            Self::RequestDenied => "request.denied",
            Self::AuditDropped => "audit.dropped",
            Self::AdminCredentialRotated => "admin.credential_rotated",
        }
    }

    /// Parses a dotted name; `None` for a kind agentauth never writes.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether a verifying layer may report this kind to the authority.
    pub fn reported_by_agents(self) -> bool {
        matches!(self, Self::RequestAllowed | Self::RequestDenied)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened: who did what to whom, and what was decided why.
/// Field order is the canonical order that the hash chain covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, in milliseconds since the epoch.
    pub time_ms: i64,
    /// What kind of event.
    pub kind: AuditKind,
    /// Who acted (an agent SPIFFE ID, `admin`, or `anonymous`).
    pub actor: String,
    /// What the action was about (an agent, a token ID, …).
    pub subject: String,
    /// The audience of the token or request, if any.
    pub audience: String,
    /// The permissions involved, space-separated.
    pub scope: String,
    /// Allowed or refused.
    pub decision: Decision,
    /// Why, in one sentence.
    pub reason: String,
    /// Correlates with logs of the request that caused it.
    pub request_id: String,
    /// The task (`txn`) the event belongs to, if any.
    #[serde(default)]
    pub txn: String,
    /// The delegation chain, current actor first, space-separated SPIFFE IDs.
    #[serde(default)]
    pub chain: String,
    /// The task's stated purpose.
    #[serde(default)]
    pub purpose: String,
}

/// An event as stored: its place in the chain and the hashes linking it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1 with no gaps.
    pub seq: i64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the previous record (hex), [`GENESIS_HASH`] for the first.
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this record's canonical bytes (hex).
    pub hash: String,
}

#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    event: &'a AuditEvent,
}

/// The hash of the record at `seq` holding `event` after `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash.as_bytes());
    let canonical = serde_json::to_vec(&Canonical { seq, event })
        .expect("an audit event is strings, numbers and a unit enum: it always serializes");
    ctx.update(&canonical);
    hex::encode(ctx.finish())
}

/// The first record where the chain is broken, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The sequence number of the first bad record (or the expected one if missing).
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit record {}: {}", self.seq, self.reason)
    }
}

/// Walks records in order and checks numbering, links and hashes, ending at
/// the stored head (`head_seq`, `head_hash`) so a cut-off tail is caught too.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    head_seq: i64,
    head_hash: &str,
) -> Result<i64, ChainBreak> {
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_owned();
    for record in records {
        let fail = |reason: String| {
            Err(ChainBreak {
                seq: record.seq,
                reason,
            })
        };
        if record.seq != expected_seq {
            return fail(format!(
                "expected record {expected_seq} here; records were removed or reordered"
            ));
        }
        if record.prev_hash != prev {
            return fail("its link to the previous record is broken (a record before it was removed or reordered)".into());
        }
        if chain_hash(&prev, record.seq, &record.event) != record.hash {
            return fail("its content does not match its hash (the record was edited)".into());
        }
        prev.clone_from(&record.hash);
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    if last != head_seq || (head_seq > 0 && prev != head_hash) {
        return Err(ChainBreak {
            seq: last + 1,
            reason: format!(
                "the log ends at record {last} but its head says {head_seq}; records were removed"
            ),
        });
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_serializes_and_parses_as_its_dotted_name() {
        for kind in AuditKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<AuditKind>(&json).unwrap(), kind);
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AuditKind::parse("token.minted"), None);
    }

    fn event(n: i64) -> AuditEvent {
        AuditEvent {
            time_ms: n,
            kind: AuditKind::TokenIssued,
            actor: "spiffe://agentauth.local/agent/reader".into(),
            subject: format!("jti-{n}"),
            audience: "spiffe://agentauth.local/agent/customer".into(),
            scope: "read:customer".into(),
            decision: Decision::Allow,
            reason: String::new(),
            request_id: String::new(),
            txn: String::new(),
            chain: String::new(),
            purpose: String::new(),
        }
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let event = event(seq);
                let hash = chain_hash(&prev, seq, &event);
                let record = AuditRecord {
                    seq,
                    event,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                record
            })
            .collect()
    }

    fn head(records: &[AuditRecord]) -> (i64, String) {
        records
            .last()
            .map_or((0, String::new()), |r| (r.seq, r.hash.clone()))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(5);
        let (seq, hash) = head(&records);
        assert_eq!(verify_chain(&records, seq, &hash), Ok(5));
        assert_eq!(verify_chain(&[], 0, ""), Ok(0));
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut records = chain(5);
        let (seq, hash) = head(&records);
        records[2].event.decision = Decision::Deny;
        assert_eq!(verify_chain(&records, seq, &hash).unwrap_err().seq, 3);
    }

    #[test]
    fn a_removed_record_is_named() {
        let mut records = chain(5);
        let (seq, hash) = head(&records);
        records.remove(1);
        assert_eq!(verify_chain(&records, seq, &hash).unwrap_err().seq, 3);
        let mut records = chain(5);
        records.pop();
        assert_eq!(verify_chain(&records, seq, &hash).unwrap_err().seq, 5);
    }

    #[test]
    fn reordered_records_are_named_even_when_renumbered() {
        let mut records = chain(5);
        let (seq, hash) = head(&records);
        records.swap(1, 2);
        assert_eq!(verify_chain(&records, seq, &hash).unwrap_err().seq, 3);
        records[1].seq = 2;
        records[2].seq = 3;
        assert_eq!(verify_chain(&records, seq, &hash).unwrap_err().seq, 2);
    }
}
