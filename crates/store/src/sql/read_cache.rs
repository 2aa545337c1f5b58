//! The rows every token request reads, kept in memory by a store that is
//! the only writer of its database (the embedded SQLite file): the agent
//! that authenticates, its audience, and whether a key, token or task is
//! revoked.
//!
//! Every write that is not a token issuance empties the cache, so a change
//! to an agent or a key revocation is seen by the next request. A read that
//! raced a write never puts back what the write replaced: each entry is kept
//! only if no write finished between the database read and the keep (the
//! generation counter).
//!
//! A write whose caller went away mid-way (its future dropped, say when a
//! client disconnects) may still commit after that. Until that is settled
//! the cache serves and keeps nothing ([`WriteGuard`]): the next
//! transaction that takes SQLite's write lock ([`ReadCache::settle`]) knows
//! that any such commit has finished, since it held that lock.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::AgentRow;

/// At most this many entries of each kind; a full map starts again empty,
/// which bounds memory (a few MB) whatever names requests carry.
const MAX_ENTRIES: usize = 16_384;

/// What kind of thing a revocation names, as the cache keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revocable {
    /// A key, by thumbprint.
    Key,
    /// A token, by `jti`.
    Token,
    /// A task, by `txn`.
    Task,
}

/// Agents by name, and whether each key, token or task is revoked, as last read.
#[derive(Debug, Default)]
pub(crate) struct ReadCache(Mutex<Entries>);

#[derive(Debug, Default)]
struct Entries {
    /// Bumped by every write that empties the cache.
    generation: u64,
    /// A write was abandoned and may yet commit: hold and serve nothing.
    poisoned: bool,
    agents: HashMap<String, AgentRow>,
    /// Whether each subject is revoked, one map per [`Revocable`] kind.
    revoked: [HashMap<String, bool>; 3],
}

impl ReadCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The maps hold no invariant a panic elsewhere could break.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The generation to pass to `keep_*` for a read that starts now.
    pub(crate) fn generation(&self) -> u64 {
        self.entries().generation
    }

    /// The agent named `name`, if its row is held.
    pub(crate) fn agent(&self, name: &str) -> Option<AgentRow> {
        let entries = self.entries();
        if entries.poisoned {
            return None;
        }
        entries.agents.get(name).cloned()
    }

    /// Keeps `agent`, read from the database since `generation`.
    pub(crate) fn keep_agent(&self, generation: u64, agent: &AgentRow) {
        let mut entries = self.entries();
        if entries.generation != generation || entries.poisoned {
            return;
        }
        if entries.agents.len() >= MAX_ENTRIES {
            entries.agents.clear();
        }
        entries
            .agents
            .insert(agent.name.as_str().to_owned(), agent.clone());
    }

    /// Whether `subject` (a key, token or task) is revoked, if that is held.
    pub(crate) fn revoked(&self, kind: Revocable, subject: &str) -> Option<bool> {
        let entries = self.entries();
        if entries.poisoned {
            return None;
        }
        entries.revoked[kind as usize].get(subject).copied()
    }

    /// Keeps whether `subject` is revoked, read from the database since `generation`.
    pub(crate) fn keep_revoked(
        &self,
        generation: u64,
        kind: Revocable,
        subject: &str,
        revoked: bool,
    ) {
        let mut entries = self.entries();
        if entries.generation != generation || entries.poisoned {
            return;
        }
        let held = &mut entries.revoked[kind as usize];
        if held.len() >= MAX_ENTRIES {
            held.clear();
        }
        held.insert(subject.to_owned(), revoked);
    }

    /// Forgets everything: a write changed (or may have changed) what is held.
    pub(crate) fn invalidate(&self) {
        let mut entries = self.entries();
        entries.forget();
    }

    /// Forgets everything and holds nothing more until [`Self::settle`]: a
    /// write was abandoned and may still commit.
    fn poison(&self) {
        let mut entries = self.entries();
        entries.poisoned = true;
        entries.forget();
    }

    /// Called once a transaction holds the database's write lock: any write
    /// abandoned before has committed or rolled back by now, so what is read
    /// from here on may be held again.
    pub(crate) fn settle(&self) {
        let mut entries = self.entries();
        if entries.poisoned {
            entries.poisoned = false;
            entries.forget();
        }
    }
}

impl Entries {
    fn forget(&mut self) {
        self.generation += 1;
        self.agents.clear();
        self.revoked.iter_mut().for_each(HashMap::clear);
    }
}

/// Empties the cache when a write is over, and poisons it if the write
/// never finished (its future was dropped): see the module's note.
pub(crate) struct WriteGuard<'a> {
    cache: Option<&'a ReadCache>,
}

impl<'a> WriteGuard<'a> {
    /// Starts guarding a write on a store with `cache`, if it has one.
    pub(crate) fn new(cache: Option<&'a ReadCache>) -> Self {
        Self { cache }
    }

    /// The write returned (done or refused): forget what it may have changed.
    pub(crate) fn finish(mut self) {
        if let Some(cache) = self.cache.take() {
            cache.invalidate();
        }
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            cache.poison();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentStatus;
    use agentauth_core::{AgentName, Scope, SpiffeId};

    fn agent(name: &str, permissions: &str) -> AgentRow {
        AgentRow {
            name: AgentName::new(name).unwrap(),
            id: SpiffeId::parse(&format!("spiffe://test.local/agent/{name}")).unwrap(),
            description: String::new(),
            owner: String::new(),
            permissions: Scope::parse(permissions).unwrap(),
            public_jwk: serde_json::json!({}),
            status: AgentStatus::Active,
            bearer_allowed: false,
            expires_at: None,
            parent: None,
            tags: Vec::new(),
            selectors: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = ReadCache::default();
        let before = cache.generation();
        // A write finishes between this read's database query and its keep.
        cache.invalidate();
        cache.keep_agent(before, &agent("reader", "read:a"));
        cache.keep_revoked(before, Revocable::Key, "jkt", false);
        assert_eq!(cache.agent("reader"), None);
        assert_eq!(cache.revoked(Revocable::Key, "jkt"), None);

        let now = cache.generation();
        cache.keep_agent(now, &agent("reader", "read:b"));
        cache.keep_revoked(now, Revocable::Key, "jkt", true);
        cache.keep_revoked(now, Revocable::Token, "jkt", false);
        assert_eq!(cache.agent("reader"), Some(agent("reader", "read:b")));
        assert_eq!(cache.revoked(Revocable::Key, "jkt"), Some(true));
        assert_eq!(cache.revoked(Revocable::Token, "jkt"), Some(false));
        assert_eq!(cache.revoked(Revocable::Task, "jkt"), None);
        cache.invalidate();
        assert_eq!(cache.agent("reader"), None);
        assert_eq!(cache.revoked(Revocable::Key, "jkt"), None);
    }

    #[test]
    fn an_abandoned_write_turns_the_cache_off_until_a_transaction_settles_it() {
        let cache = ReadCache::default();
        let generation = cache.generation();
        cache.keep_agent(generation, &agent("reader", "read:a"));

        let guard = WriteGuard::new(Some(&cache));
        drop(guard); // the write's future was dropped mid-way
        assert_eq!(cache.agent("reader"), None);
        let generation = cache.generation();
        cache.keep_agent(generation, &agent("reader", "read:a"));
        cache.keep_revoked(generation, Revocable::Key, "jkt", false);
        assert_eq!(cache.agent("reader"), None, "nothing held while poisoned");
        assert_eq!(cache.revoked(Revocable::Key, "jkt"), None);
        // A finished write does not settle it: it may have run beside the
        // abandoned one.
        WriteGuard::new(Some(&cache)).finish();
        cache.keep_agent(cache.generation(), &agent("reader", "read:a"));
        assert_eq!(cache.agent("reader"), None);

        cache.settle();
        let generation = cache.generation();
        cache.keep_agent(generation, &agent("reader", "read:b"));
        assert_eq!(cache.agent("reader"), Some(agent("reader", "read:b")));
        // A write that finished leaves the cache working, only emptied.
        WriteGuard::new(Some(&cache)).finish();
        assert_eq!(cache.agent("reader"), None);
        cache.keep_agent(cache.generation(), &agent("reader", "read:c"));
        assert_eq!(cache.agent("reader"), Some(agent("reader", "read:c")));
    }

    #[test]
    fn a_full_cache_starts_again_rather_than_grow() {
        let cache = ReadCache::default();
        let generation = cache.generation();
        for i in 0..MAX_ENTRIES {
            cache.keep_revoked(generation, Revocable::Token, &format!("jti-{i}"), false);
        }
        assert_eq!(cache.revoked(Revocable::Token, "jti-0"), Some(false));
        cache.keep_revoked(generation, Revocable::Token, "one-more", true);
        assert_eq!(cache.revoked(Revocable::Token, "jti-0"), None);
        assert_eq!(cache.revoked(Revocable::Token, "one-more"), Some(true));
        assert!(cache.entries().revoked[Revocable::Token as usize].len() <= MAX_ENTRIES);
    }
}
