//! Audit records and their hash chain: each record carries the hash of the one
//! before, so an edited, removed or reordered record is found, and an
//! authentication code under a key kept outside the database (derived from
//! the master key), so that whoever can write the database cannot rewrite
//! the chain and recompute it unseen.

use std::fmt;

use aws_lc_rs::{digest, hkdf, hmac};
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
    /// Token requests refused before their client was authenticated, counted
    /// per client and address over one window instead of one record each.
    #[serde(rename = "token.refusals_counted")]
    TokenRefusalsCounted,
    /// The admin added an operator (a person who decides approvals).
    #[serde(rename = "operator.added")]
    OperatorAdded,
    /// The admin removed an operator; their credential stops working.
    #[serde(rename = "operator.removed")]
    OperatorRemoved,
    /// A signed checkpoint of the chain's head was handed out.
    #[serde(rename = "audit.checkpoint")]
    AuditCheckpoint,
    /// Records written before records were keyed were authenticated, once,
    /// when the authority first started with the audit key.
    #[serde(rename = "audit.sealed")]
    AuditSealed,
    /// An agent's public key was replaced; the old one authenticates for a
    /// grace period (`agentauth agent rotate-key`).
    #[serde(rename = "agent.key_rotated")]
    AgentKeyRotated,
    /// A signing key was added to the authority's key ring (first start,
    /// `agentauth keys rotate`, or the rotation schedule).
    #[serde(rename = "signing_key.added")]
    SigningKeyAdded,
    /// The master key was replaced: every signing key and the audit root
    /// re-sealed under the new one (`agentauth master-key rotate`).
    #[serde(rename = "master_key.rotated")]
    MasterKeyRotated,
    /// An X.509-SVID was issued to an agent from its CSR.
    #[serde(rename = "svid.issued")]
    SvidIssued,
    /// A certificate authority for X.509-SVIDs was added (published at
    /// once, signing after the publish lead).
    #[serde(rename = "x509_ca.added")]
    X509CaAdded,
    /// A federated trust domain was added or removed, or its bundle, as
    /// fetched from its bundle endpoint, changed.
    #[serde(rename = "federation.changed")]
    FederationChanged,
    /// A certificate authority was taken out of the trust bundle before its
    /// expiry (its key believed compromised).
    #[serde(rename = "x509_ca.removed")]
    X509CaRemoved,
    /// The admin made a join token for a node.
    #[serde(rename = "node.join_token_created")]
    JoinTokenCreated,
    /// A node attested with its join token and got its node SVID.
    #[serde(rename = "node.attested")]
    NodeAttested,
    /// A node was evicted: its SVID is refused from then on.
    #[serde(rename = "node.evicted")]
    NodeEvicted,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 38] = [
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
        Self::TokenRefusalsCounted,
        Self::OperatorAdded,
        Self::OperatorRemoved,
        Self::AuditCheckpoint,
        Self::AuditSealed,
        Self::AgentKeyRotated,
        Self::SigningKeyAdded,
        Self::MasterKeyRotated,
        Self::SvidIssued,
        Self::X509CaAdded,
        Self::FederationChanged,
        Self::X509CaRemoved,
        Self::JoinTokenCreated,
        Self::NodeAttested,
        Self::NodeEvicted,
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
            Self::TokenRefusalsCounted => "token.refusals_counted",
            Self::OperatorAdded => "operator.added",
            Self::OperatorRemoved => "operator.removed",
            Self::AuditCheckpoint => "audit.checkpoint",
            Self::AuditSealed => "audit.sealed",
            Self::AgentKeyRotated => "agent.key_rotated",
            Self::SigningKeyAdded => "signing_key.added",
            Self::MasterKeyRotated => "master_key.rotated",
            Self::SvidIssued => "svid.issued",
            Self::X509CaAdded => "x509_ca.added",
            Self::FederationChanged => "federation.changed",
            Self::X509CaRemoved => "x509_ca.removed",
            Self::JoinTokenCreated => "node.join_token_created",
            Self::NodeAttested => "node.attested",
            Self::NodeEvicted => "node.evicted",
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
    /// Reported by an agent's verifying layer rather than seen by the
    /// authority: the authority vouches for who reported it, not for what
    /// it says. Left out of the canonical bytes when false, so records
    /// from before the field keep their hashes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reported: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
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
    /// HMAC-SHA256 of `hash` under the [`AuditKey`] (hex): only a holder of
    /// the master key can write a record that verifies.
    #[serde(default)]
    pub mac: String,
}

/// The key that authenticates audit records: HMAC-SHA256, derived from the
/// master key with HKDF so it never sits in the database.
#[derive(Clone)]
pub struct AuditKey(hmac::Key);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// HKDF `info` of the audit key, so no other use of the master key collides with it.
const AUDIT_KEY_INFO: &[u8] = b"agentauth audit record mac v1";

impl AuditKey {
    /// Derives the audit key from the master key's bytes (HKDF-SHA256).
    pub fn derive(master_secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"agentauth").extract(master_secret);
        let okm = prk
            .expand(&[AUDIT_KEY_INFO], hmac::HMAC_SHA256)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(hmac::Key::from(okm))
    }

    /// The authentication code of the record whose chain hash is `hash` (hex).
    pub fn mac(&self, hash: &str) -> String {
        hex::encode(hmac::sign(&self.0, hash.as_bytes()))
    }

    /// Whether `mac` is the code of `hash`, compared in constant time.
    pub fn verifies(&self, hash: &str, mac: &str) -> bool {
        hex::decode(mac).is_ok_and(|tag| hmac::verify(&self.0, hash.as_bytes(), &tag).is_ok())
    }
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

/// Walks records in order and checks numbering, links, hashes and each
/// record's authentication code under `key`, ending at the stored head
/// (`head_seq`, `head_hash`) so a cut-off tail is caught too.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    head_seq: i64,
    head_hash: &str,
    key: &AuditKey,
) -> Result<i64, ChainBreak> {
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_owned();
    let mut sealed = false;
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
        if !key.verifies(&record.hash, &record.mac) {
            return fail("its authentication code is wrong: it was written or rewritten without the audit key (or the master key is not the authority's)".into());
        }
        if record.event.kind == AuditKind::AuditSealed {
            if sealed {
                return fail("the log was sealed a second time: its records were stripped of their authentication codes and sealed again".into());
            }
            sealed = true;
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
            reported: false,
        }
    }

    fn key() -> AuditKey {
        AuditKey::derive(&[7u8; 32])
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
                    mac: key().mac(&hash),
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
        assert_eq!(verify_chain(&records, seq, &hash, &key()), Ok(5));
        assert_eq!(verify_chain(&[], 0, "", &key()), Ok(0));
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut records = chain(5);
        let (seq, hash) = head(&records);
        records[2].event.decision = Decision::Deny;
        assert_eq!(
            verify_chain(&records, seq, &hash, &key()).unwrap_err().seq,
            3
        );
    }

    #[test]
    fn a_removed_record_is_named() {
        let mut records = chain(5);
        let (seq, hash) = head(&records);
        records.remove(1);
        assert_eq!(
            verify_chain(&records, seq, &hash, &key()).unwrap_err().seq,
            3
        );
        let mut records = chain(5);
        records.pop();
        assert_eq!(
            verify_chain(&records, seq, &hash, &key()).unwrap_err().seq,
            5
        );
    }

    #[test]
    fn reordered_records_are_named_even_when_renumbered() {
        let mut records = chain(5);
        let (seq, hash) = head(&records);
        records.swap(1, 2);
        assert_eq!(
            verify_chain(&records, seq, &hash, &key()).unwrap_err().seq,
            3
        );
        records[1].seq = 2;
        records[2].seq = 3;
        assert_eq!(
            verify_chain(&records, seq, &hash, &key()).unwrap_err().seq,
            2
        );
    }

    #[test]
    fn a_chain_recomputed_without_the_audit_key_is_caught() {
        let mut records = chain(5);
        // A database writer edits record 3 and recomputes every hash after it.
        records[2].event.decision = Decision::Deny;
        let mut prev = records[1].hash.clone();
        for r in &mut records[2..] {
            r.prev_hash.clone_from(&prev);
            r.hash = chain_hash(&prev, r.seq, &r.event);
            prev.clone_from(&r.hash);
        }
        let (seq, hash) = head(&records);
        let broken = verify_chain(&records, seq, &hash, &key()).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("authentication code"), "{broken}");
        // Without a code at all it is caught the same way.
        let mut bare = chain(2);
        bare[0].mac.clear();
        let (seq, hash) = head(&bare);
        assert_eq!(verify_chain(&bare, seq, &hash, &key()).unwrap_err().seq, 1);
    }

    #[test]
    fn the_audit_key_depends_on_the_master_key() {
        let records = chain(3);
        let (seq, hash) = head(&records);
        let other = AuditKey::derive(&[8u8; 32]);
        assert_eq!(
            verify_chain(&records, seq, &hash, &other).unwrap_err().seq,
            1
        );
        assert!(!key().verifies(&records[0].hash, "zz"));
        assert!(key().verifies(&records[0].hash, &records[0].mac));
    }

    #[test]
    fn a_log_sealed_twice_is_caught() {
        let mut records = chain(3);
        for r in [1usize, 2] {
            records[r].event.kind = AuditKind::AuditSealed;
        }
        // Re-chain after the edit, as the authority would have written it.
        let mut prev = GENESIS_HASH.to_owned();
        for r in &mut records {
            r.prev_hash.clone_from(&prev);
            r.hash = chain_hash(&prev, r.seq, &r.event);
            r.mac = key().mac(&r.hash);
            prev.clone_from(&r.hash);
        }
        let (seq, hash) = head(&records);
        let broken = verify_chain(&records, seq, &hash, &key()).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("sealed a second time"), "{broken}");
        assert_eq!(
            verify_chain(&records[..2], 2, &records[1].hash, &key()),
            Ok(2)
        );
    }
}
