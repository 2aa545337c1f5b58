//! The verifier's copy of the authority's revocation list, kept current by
//! the revocation stream (`feed.rs`) and, as the fallback, by polling.

use std::collections::{HashMap, HashSet};

use agentauth_api::{RevocationAction, RevocationEntry, RevocationKind};
use agentauth_core::{RevocationSubjects, Revoked};

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
    pub(crate) fn apply(&mut self, entries: &[RevocationEntry]) {
        use RevocationAction::{Restore, Revoke};
        use RevocationKind::{Agent, Key, Policy, Task, Token};
        for e in entries {
            if e.seq <= self.last_seq {
                continue;
            }
            match (e.kind, e.action) {
                (Token, Revoke) => {
                    self.tokens
                        .insert(e.subject.clone(), e.expires_at.unwrap_or(i64::MAX));
                }
                (Task, Revoke) => {
                    self.tasks
                        .insert(e.subject.clone(), e.expires_at.unwrap_or(i64::MAX));
                }
                (Task, Restore) => {
                    self.tasks.remove(&e.subject);
                }
                (Agent, Revoke) => {
                    self.agents.insert(e.subject.clone());
                }
                (Agent, Restore) => {
                    self.agents.remove(&e.subject);
                }
                (Key, Revoke) => {
                    self.keys.insert(e.subject.clone());
                }
                // A policy set version was activated: the verifier refetches it.
                (Policy, _) => {}
                _ => {
                    tracing::warn!(kind = ?e.kind, action = ?e.action, "unknown revocation entry ignored")
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
        if s.jkt.is_some_and(|jkt| self.key_revoked(&jkt.0)) {
            return Some(Revoked::Key);
        }
        if let Some(txn) = s.txn.filter(|txn| self.task_revoked(txn.as_str())) {
            return Some(Revoked::Task(txn.clone()));
        }
        s.agents
            .iter()
            .find(|id| self.agent_revoked(id.as_str()))
            .map(|id| Revoked::Agent((*id).clone()))
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
    use RevocationAction::{Restore, Revoke};
    use RevocationKind::{Agent, Key, Task, Token};

    use super::*;

    fn entry(
        seq: i64,
        kind: RevocationKind,
        subject: &str,
        action: RevocationAction,
        expires_at: Option<i64>,
    ) -> RevocationEntry {
        RevocationEntry {
            seq,
            kind,
            subject: subject.into(),
            action,
            created_at: 0,
            expires_at,
        }
    }

    #[test]
    fn revoked_keys_are_remembered() {
        let mut list = RevocationList::default();
        list.apply(&[entry(1, Key, "jkt-a", Revoke, None)]);
        assert!(list.key_revoked("jkt-a"));
        assert!(!list.key_revoked("jkt-b"));
    }

    #[test]
    fn agents_are_revoked_and_restored_in_order() {
        let mut list = RevocationList::default();
        list.apply(&[entry(1, Agent, "a", Revoke, None)]);
        assert!(list.agent_revoked("a"));
        list.apply(&[
            entry(2, Agent, "a", Restore, None),
            entry(3, Agent, "b", Revoke, None),
        ]);
        assert!(!list.agent_revoked("a"));
        assert!(list.agent_revoked("b"));
        assert_eq!(list.last_seq, 3);
    }

    #[test]
    fn token_revocations_are_pruned_after_expiry() {
        let mut list = RevocationList::default();
        list.apply(&[
            entry(1, Token, "j1", Revoke, Some(100)),
            entry(2, Token, "j2", Revoke, Some(300)),
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
            entry(1, Task, "txn-1", Revoke, Some(300)),
            entry(2, Task, "txn-2", Revoke, None),
        ]);
        assert!(list.task_revoked("txn-1"));
        assert!(list.task_revoked("txn-2"));
        assert!(!list.task_revoked("txn-3"));
        assert!(!list.token_revoked("txn-1"), "a task is not a token");
        list.prune(400);
        assert!(!list.task_revoked("txn-1"));
        assert!(list.task_revoked("txn-2"), "no expiry: kept");
        list.apply(&[entry(3, Task, "txn-2", Restore, None)]);
        assert!(!list.task_revoked("txn-2"));
    }

    #[test]
    fn entries_of_a_newer_authority_are_skipped_but_counted() {
        let mut list = RevocationList::default();
        list.apply(&[
            entry(1, RevocationKind::Other, "t", Revoke, None),
            entry(2, Agent, "a", RevocationAction::Other, None),
        ]);
        assert!(!list.agent_revoked("a"));
        assert_eq!(list.last_seq, 2, "the feed moves on past them");
    }

    #[test]
    fn entries_already_applied_are_skipped() {
        let mut list = RevocationList::default();
        list.apply(&[
            entry(1, Agent, "a", Revoke, None),
            entry(2, Agent, "a", Restore, None),
        ]);
        // The poller delivers entry 1 again after the stream applied 1 and 2.
        list.apply(&[entry(1, Agent, "a", Revoke, None)]);
        assert!(!list.agent_revoked("a"));
        assert_eq!(list.last_seq, 2);
        list.apply(&[
            entry(2, Agent, "a", Restore, None),
            entry(3, Token, "j", Revoke, None),
        ]);
        assert!(list.token_revoked("j"));
        assert_eq!(list.last_seq, 3);
    }
}
