//! The revocation feed (`GET /v1/revocations`, and the same entries as
//! Server-Sent Events on `GET /v1/revocations/stream`) and the admin's
//! `POST /v1/revocations`.

use serde::{Deserialize, Serialize};

/// What a feed entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// An agent (by SPIFFE ID): its tokens as presenter or subject.
    Agent,
    /// One token (by `jti`), and every token exchanged from it.
    Token,
    /// A task (by `txn`): every token that carries it.
    Task,
    /// A key (by RFC 7638 thumbprint): every token bound to it.
    Key,
    /// Not a revocation: a policy set version (the subject) was activated.
    Policy,
    /// A kind this version does not know, from a newer authority; readers skip it.
    #[serde(other)]
    Other,
}

/// Whether an entry revokes or lifts a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationAction {
    /// Stop accepting.
    Revoke,
    /// Accept again (an agent re-enabled).
    Restore,
    /// An action this version does not know, from a newer authority; readers skip it.
    #[serde(other)]
    Other,
}

/// One entry of the feed, in sequence order; also the `data` of a stream event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// Increasing sequence number; the stream's event ID.
    pub seq: i64,
    /// What is revoked.
    pub kind: RevocationKind,
    /// SPIFFE ID, `jti`, `txn`, thumbprint or policy version.
    pub subject: String,
    /// Revoke or restore.
    pub action: RevocationAction,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// After this time the entry no longer matters (a token's `exp`).
    pub expires_at: Option<i64>,
}

/// The answer of `GET /v1/revocations?since=SEQ`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    /// Entries after `since`, oldest first.
    pub revocations: Vec<RevocationEntry>,
    /// Where the next page starts.
    pub last_seq: i64,
    /// Another page is waiting.
    pub more: bool,
}

/// Query of `GET /v1/revocations` and `GET /v1/revocations/stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Entries after this sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

/// What `POST /v1/revocations` can revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationTarget {
    /// An agent, by name or SPIFFE ID: it is disabled.
    Agent,
    /// A token by `jti`, and every token exchanged from it.
    Token,
    /// A task by `txn`.
    Task,
    /// A key by its RFC 7638 thumbprint.
    Key,
}

/// Body of `POST /v1/revocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRequest {
    /// What to revoke.
    pub kind: RevocationTarget,
    /// Which one.
    pub value: String,
}

/// The answer of `POST /v1/revocations`: what was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationReceipt {
    /// The kind revoked.
    pub revoked: RevocationTarget,
    /// The value as given.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::pinned;

    #[test]
    fn a_page_lists_entries_with_null_expiry() {
        pinned(
            &RevocationPage {
                revocations: vec![
                    RevocationEntry {
                        seq: 4,
                        kind: RevocationKind::Token,
                        subject: "j1".into(),
                        action: RevocationAction::Revoke,
                        created_at: 10,
                        expires_at: Some(20),
                    },
                    RevocationEntry {
                        seq: 5,
                        kind: RevocationKind::Agent,
                        subject: "spiffe://td/agent/a".into(),
                        action: RevocationAction::Restore,
                        created_at: 11,
                        expires_at: None,
                    },
                ],
                last_seq: 5,
                more: false,
            },
            r#"
{
  "revocations": [
    {
      "seq": 4,
      "kind": "token",
      "subject": "j1",
      "action": "revoke",
      "created_at": 10,
      "expires_at": 20
    },
    {
      "seq": 5,
      "kind": "agent",
      "subject": "spiffe://td/agent/a",
      "action": "restore",
      "created_at": 11,
      "expires_at": null
    }
  ],
  "last_seq": 5,
  "more": false
}"#,
        );
    }

    #[test]
    fn every_kind_has_its_lowercase_name() {
        let names: Vec<String> = [
            RevocationKind::Agent,
            RevocationKind::Token,
            RevocationKind::Task,
            RevocationKind::Key,
            RevocationKind::Policy,
        ]
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
        assert_eq!(names, ["agent", "token", "task", "key", "policy"]);
    }

    #[test]
    fn an_unknown_kind_or_action_reads_as_other() {
        let entry: RevocationEntry = serde_json::from_str(
            r#"{"seq": 1, "kind": "tenant", "subject": "t", "action": "suspend",
                "created_at": 0, "expires_at": null}"#,
        )
        .unwrap();
        assert_eq!(entry.kind, RevocationKind::Other);
        assert_eq!(entry.action, RevocationAction::Other);
    }

    #[test]
    fn an_admin_revocation_names_kind_and_value() {
        pinned(
            &RevocationRequest {
                kind: RevocationTarget::Task,
                value: "txn-1".into(),
            },
            r#"
{
  "kind": "task",
  "value": "txn-1"
}"#,
        );
        pinned(
            &RevocationReceipt {
                revoked: RevocationTarget::Key,
                value: "jkt".into(),
            },
            r#"
{
  "revoked": "key",
  "value": "jkt"
}"#,
        );
        let unknown = r#"{"kind": "policy", "value": "1"}"#;
        assert!(serde_json::from_str::<RevocationRequest>(unknown).is_err());
    }
}
