//! The store test suite, run unchanged against SQLite and PostgreSQL: the
//! cases sit in one module per domain, the fixtures and the runner here.

use std::sync::Arc;

use agentauth_core::{
    AgentName, AuditEvent, AuditKind, Decision, Jkt, Scope, SpiffeId, TaskId, verify_chain,
};
use serde_json::json;

use crate::*;

mod agents;
mod approvals;
mod audit;
mod delegations;
mod policies;
mod revocations;
mod settings;
mod tasks;
mod tokens;

use agents::*;
use approvals::*;
use audit::*;
use delegations::*;
use policies::*;
use revocations::*;
use settings::*;
use tasks::*;
use tokens::*;

/// A store under test plus whatever must outlive it.
pub(crate) struct Fixture {
    pub(crate) store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    scratch: Option<ScratchDatabase>,
}

impl Fixture {
    pub(crate) async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().join("test.db").to_str().unwrap())
            .await
            .unwrap();
        store.set_audit_key(test_audit_key());
        Self {
            store,
            _dir: Some(dir),
            scratch: None,
        }
    }

    /// A store on a scratch PostgreSQL database, or `None` when the test
    /// named `test` is skipped because no PostgreSQL is reachable.
    pub(crate) async fn postgres(test: &str) -> Option<Self> {
        let scratch = ScratchDatabase::for_test(test).await?;
        let store = open(&scratch.url).await.unwrap();
        store.set_audit_key(test_audit_key());
        Some(Self {
            store,
            _dir: None,
            scratch: Some(scratch),
        })
    }

    pub(crate) async fn finish(self) {
        drop(self.store);
        if let Some(s) = self.scratch {
            s.drop_database().await.unwrap();
        }
    }
}

fn event(kind: &str, actor: &str, subject: &str) -> AuditEvent {
    AuditEvent {
        time_ms: 1_700_000_000_000,
        kind: AuditKind::parse(kind).expect("the suite uses known kinds"),
        actor: actor.into(),
        subject: subject.into(),
        audience: String::new(),
        scope: String::new(),
        decision: Decision::Allow,
        reason: String::new(),
        request_id: String::new(),
        txn: String::new(),
        chain: String::new(),
        purpose: String::new(),
        reported: false,
    }
}

/// An agent name the suite knows is valid.
fn name(name: &str) -> AgentName {
    AgentName::new(name).expect("the suite uses valid names")
}

/// The SPIFFE ID of the agent `name`.
fn agent_id(name: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://agentauth.local/agent/{name}")).expect("a valid name")
}

/// A scope the suite knows is valid.
fn scope(text: &str) -> Scope {
    Scope::parse(text).expect("the suite uses valid permissions")
}

fn agent(name: &str) -> AgentRow {
    AgentRow {
        name: self::name(name),
        id: agent_id(name),
        description: "test agent".into(),
        owner: "team-a".into(),
        permissions: scope("read:customer"),
        public_jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        status: AgentStatus::Active,
        bearer_allowed: false,
        expires_at: None,
        parent: None,
        tags: vec![],
        selectors: vec![],
        created_at: 100,
        updated_at: 100,
    }
}

/// The audit key every fixture store authenticates records with.
fn test_audit_key() -> agentauth_core::AuditKey {
    agentauth_core::AuditKey::derive(&[3u8; 32])
}

async fn audit_count(store: &dyn Store) -> i64 {
    store.audit_head().await.unwrap().0
}

async fn assert_chain_intact(store: &dyn Store) {
    let records = store
        .audit_records(&AuditFilter {
            limit: 100_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let (seq, hash) = store.audit_head().await.unwrap();
    verify_chain(&records, seq, &hash, &test_audit_key()).unwrap();
}

fn issued(jti: &str) -> IssuedToken {
    IssuedToken {
        jti: jti.into(),
        client_id: agent_id("reader"),
        subject: agent_id("reader"),
        audience: agent_id("customer"),
        scope: scope("read:customer"),
        issued_at: 100,
        expires_at: 400,
        parent_jti: None,
        txn: None,
        auth_jkt: None,
        cnf_jkt: None,
    }
}

/// A client assertion of client `c`, used once.
fn used(jti: &str) -> UsedAssertion {
    UsedAssertion {
        client_id: "c".into(),
        jti: jti.into(),
        expires_at: 160,
    }
}

/// A test's name as the test harness prints it: its path without the crate.
fn test_name(path: &'static str) -> &'static str {
    path.split_once("::").map_or(path, |(_, name)| name)
}

/// Runs every case on both stores: each case of the first list gets the
/// store alone, each of `shared:` a handle it may hand to concurrent tasks.
macro_rules! run_suite {
    ($($case:ident),* $(,)?; shared: $($shared:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let f = super::Fixture::sqlite().await;
                    super::$case(&*f.store).await;
                    f.finish().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let f = super::Fixture::sqlite().await;
                    super::$shared(f.store.clone()).await;
                    f.finish().await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let name = super::test_name(concat!(module_path!(), "::", stringify!($case)));
                    let Some(f) = super::Fixture::postgres(name).await else {
                        return;
                    };
                    super::$case(&*f.store).await;
                    f.finish().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let name = super::test_name(concat!(module_path!(), "::", stringify!($shared)));
                    let Some(f) = super::Fixture::postgres(name).await else {
                        return;
                    };
                    super::$shared(f.store.clone()).await;
                    f.finish().await;
                }
            )*
        }
    };
}

run_suite!(
    agents_are_created_listed_and_fetched,
    a_duplicate_agent_is_a_conflict_and_leaves_nothing_behind,
    every_write_is_seen_by_the_next_read_of_what_it_changed,
    disabling_and_enabling_an_agent_is_published_on_the_feed,
    updating_or_deleting_a_missing_agent_changes_nothing,
    deleting_an_agent_revokes_it,
    a_rotated_key_keeps_the_previous_one_for_its_grace_and_no_longer,
    revoking_a_token_cascades_to_every_token_exchanged_from_it,
    tasks_are_revoked_and_their_records_read_in_order,
    a_task_belongs_to_the_agent_that_started_it,
    delegation_grants_are_stored_replaced_and_removed,
    revoked_keys_are_known_and_published,
    revoking_a_key_revokes_every_token_it_authenticated_or_binds,
    deleting_an_agent_revokes_every_token_whose_chain_names_it,
    deleting_an_agent_revokes_its_tokens_and_a_new_agent_of_that_name_is_restored,
    a_replayed_assertion_issues_nothing,
    expired_assertions_are_purged,
    revoked_tokens_are_known_and_published,
    audit_records_chain_and_filter,
    a_reachable_store_answers_a_ping,
    settings_keep_the_first_value,
    a_setting_is_replaced_only_from_the_value_expected,
    signing_keys_round_trip,
    a_reseal_replaces_every_key_or_writes_nothing,
    a_spawned_agent_keeps_its_parent_and_expiry,
    an_agent_cannot_be_spawned_by_an_unusable_parent,
    disabling_an_agent_disables_and_revokes_its_descendants,
    deleting_an_agent_disables_and_revokes_its_descendants,
    narrowing_an_agent_narrows_its_descendants,
    agent_tags_round_trip,
    workload_entries_are_the_agents_with_selectors,
    policy_sets_are_added_listed_and_activated,
    activating_a_missing_policy_set_writes_nothing,
    approvals_are_created_and_found_for_the_same_request,
    polls_are_spaced_by_the_interval,
    an_approved_approval_issues_exactly_one_token,
    deciding_a_decided_or_expired_approval_is_stale,
    a_denial_keeps_who_and_why,
    pending_approvals_are_counted_per_lineage,
    deleting_an_agent_removes_its_grants_and_expires_its_approvals,
    a_child_is_enabled_only_under_the_parent_that_spawned_it,
    live_children_are_limited_per_parent,
    expired_spawned_agents_are_purged_with_their_grants;
    shared:
    concurrent_audit_appends_keep_one_chain,
    concurrent_issuances_each_keep_their_own_outcome,
);
