//! The verifier's copy of the authority's revocation list, kept current by
//! the revocation stream (`feed.rs`) and, as the fallback, by polling.

use std::collections::{HashMap, HashSet};

use agentauth_core::{RevocationSubjects, Revoked};
use serde::Deserialize;

/// One feed entry as `GET /v1/revocations` returns it (and the stream sends it).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Entry {
    pub(crate) seq: i64,
    pub(crate) kind: String,
    pub(crate) subject: String,
    pub(crate) action: String,
    pub(crate) expires_at: Option<i64>,
}

/// A page of the feed.
#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    pub(crate) revocations: Vec<Entry>,
    pub(crate) last_seq: i64,
    pub(crate) more: bool,
}

/// Revoked token IDs and task IDs (until they expire) and revoked agents.
#[derive(Debug, Default)]
pub(crate) struct RevocationList {
    pub(crate) last_seq: i64,
    tokens: HashMap<String, i64>,
    tasks: HashMap<String, i64>,
    agents: HashSet<String>,
    keys: HashSet<String>,
}

impl RevocationList {
    /// Applies entries in feed order, skipping those already applied (the
    /// stream and the poller may both deliver an entry).
    pub(crate) fn apply(&mut self, entries: &[Entry]) {
        for e in entries {
            if e.seq <= self.last_seq {
                continue;
            }
            match (e.kind.as_str(), e.action.as_str()) {
                ("token", "revoke") => {
                    self.tokens
                        .insert(e.subject.clone(), e.expires_at.unwrap_or(i64::MAX));
                }
                ("task", "revoke") => {
                    self.tasks
                        .insert(e.subject.clone(), e.expires_at.unwrap_or(i64::MAX));
                }
                ("task", "restore") => {
                    self.tasks.remove(&e.subject);
                }
                ("agent", "revoke") => {
                    self.agents.insert(e.subject.clone());
                }
                ("agent", "restore") => {
                    self.agents.remove(&e.subject);
                }
                ("key", "revoke") => {
                    self.keys.insert(e.subject.clone());
                }
                // A policy set version was activated: the verifier refetches it.
                ("policy", _) => {}
                _ => {
                    tracing::warn!(kind = %e.kind, action = %e.action, "unknown revocation entry ignored")
                }
            }
            self.last_seq = self.last_seq.max(e.seq);
        }
    }

    /// Forgets token and task revocations whose tokens have expired anyway.
    pub(crate) fn prune(&mut self, now: i64) {
        self.tokens.retain(|_, exp| *exp >= now);
        self.tasks.retain(|_, exp| *exp >= now);
    }

    /// How many token revocations are held.
    pub(crate) fn revoked_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// The first revoked subject of a token, in the core check's order.
    pub(crate) fn revoked(&self, s: &RevocationSubjects<'_>) -> Option<Revoked> {
        if self.token_revoked(s.jti) {
            return Some(Revoked::Token);
        }
        if s.jkt.is_some_and(|jkt| self.key_revoked(jkt)) {
            return Some(Revoked::Key);
        }
        if let Some(txn) = s.txn.filter(|txn| self.task_revoked(txn)) {
            return Some(Revoked::Task(txn.to_owned()));
        }
        s.agents
            .iter()
            .find(|id| self.agent_revoked(id))
            .map(|id| Revoked::Agent((*id).to_owned()))
    }

    pub(crate) fn token_revoked(&self, jti: &str) -> bool {
        self.tokens.contains_key(jti)
    }

    pub(crate) fn agent_revoked(&self, id: &str) -> bool {
        self.agents.contains(id)
    }

    /// Whether the key with this thumbprint has been revoked.
    pub(crate) fn key_revoked(&self, jkt: &str) -> bool {
        self.keys.contains(jkt)
    }

    /// Whether the task (`txn`) has been revoked: every token of it is refused.
    pub(crate) fn task_revoked(&self, txn: &str) -> bool {
        self.tasks.contains_key(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, kind: &str, subject: &str, action: &str, expires_at: Option<i64>) -> Entry {
        Entry {
            seq,
            kind: kind.into(),
            subject: subject.into(),
            action: action.into(),
            expires_at,
        }
    }

    #[test]
    fn revoked_keys_are_remembered() {
        let mut list = RevocationList::default();
        list.apply(&[entry(1, "key", "jkt-a", "revoke", None)]);
        assert!(list.key_revoked("jkt-a"));
        assert!(!list.key_revoked("jkt-b"));
    }

    #[test]
    fn agents_are_revoked_and_restored_in_order() {
        let mut list = RevocationList::default();
        list.apply(&[entry(1, "agent", "a", "revoke", None)]);
        assert!(list.agent_revoked("a"));
        list.apply(&[
            entry(2, "agent", "a", "restore", None),
            entry(3, "agent", "b", "revoke", None),
        ]);
        assert!(!list.agent_revoked("a"));
        assert!(list.agent_revoked("b"));
        assert_eq!(list.last_seq, 3);
    }

    #[test]
    fn token_revocations_are_pruned_after_expiry() {
        let mut list = RevocationList::default();
        list.apply(&[
            entry(1, "token", "j1", "revoke", Some(100)),
            entry(2, "token", "j2", "revoke", Some(300)),
        ]);
        assert!(list.token_revoked("j1"));
        list.prune(200);
        assert!(!list.token_revoked("j1"));
        assert!(list.token_revoked("j2"));
    }

    #[test]
    fn tasks_are_revoked_until_their_tokens_expire() {
        let mut list = RevocationList::default();
        list.apply(&[
            entry(1, "task", "txn-1", "revoke", Some(300)),
            entry(2, "task", "txn-2", "revoke", None),
        ]);
        assert!(list.task_revoked("txn-1"));
        assert!(list.task_revoked("txn-2"));
        assert!(!list.task_revoked("txn-3"));
        assert!(!list.token_revoked("txn-1"), "a task is not a token");
        list.prune(400);
        assert!(!list.task_revoked("txn-1"));
        assert!(list.task_revoked("txn-2"), "no expiry: kept");
        list.apply(&[entry(3, "task", "txn-2", "restore", None)]);
        assert!(!list.task_revoked("txn-2"));
    }

    #[test]
    fn entries_already_applied_are_skipped() {
        let mut list = RevocationList::default();
        list.apply(&[
            entry(1, "agent", "a", "revoke", None),
            entry(2, "agent", "a", "restore", None),
        ]);
        // The poller delivers entry 1 again after the stream applied 1 and 2.
        list.apply(&[entry(1, "agent", "a", "revoke", None)]);
        assert!(!list.agent_revoked("a"));
        assert_eq!(list.last_seq, 2);
        list.apply(&[
            entry(2, "agent", "a", "restore", None),
            entry(3, "token", "j", "revoke", None),
        ]);
        assert!(list.token_revoked("j"));
        assert_eq!(list.last_seq, 3);
    }
}
