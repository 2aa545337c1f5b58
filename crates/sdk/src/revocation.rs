//! The verifier's copy of the authority's revocation list, kept current by polling.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

/// One feed entry as `GET /v1/revocations` returns it.
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

/// Revoked token IDs (until they expire) and revoked agents.
#[derive(Debug, Default)]
pub(crate) struct RevocationList {
    pub(crate) last_seq: i64,
    tokens: HashMap<String, i64>,
    agents: HashSet<String>,
}

impl RevocationList {
    /// Applies entries in feed order.
    pub(crate) fn apply(&mut self, entries: &[Entry]) {
        for e in entries {
            match (e.kind.as_str(), e.action.as_str()) {
                ("token", "revoke") => {
                    self.tokens
                        .insert(e.subject.clone(), e.expires_at.unwrap_or(i64::MAX));
                }
                ("agent", "revoke") => {
                    self.agents.insert(e.subject.clone());
                }
                ("agent", "restore") => {
                    self.agents.remove(&e.subject);
                }
                _ => {
                    tracing::warn!(kind = %e.kind, action = %e.action, "unknown revocation entry ignored")
                }
            }
            self.last_seq = self.last_seq.max(e.seq);
        }
    }

    /// Forgets token revocations whose tokens have expired anyway.
    pub(crate) fn prune(&mut self, now: i64) {
        self.tokens.retain(|_, exp| *exp >= now);
    }

    pub(crate) fn token_revoked(&self, jti: &str) -> bool {
        self.tokens.contains_key(jti)
    }

    pub(crate) fn agent_revoked(&self, id: &str) -> bool {
        self.agents.contains(id)
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
}
