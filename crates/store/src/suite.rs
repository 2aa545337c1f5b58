//! The store test suite, run unchanged against SQLite and PostgreSQL.

use std::sync::Arc;

use agentauth_core::{AuditEvent, Decision, verify_chain};
use serde_json::json;

use crate::*;

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
        kind: kind.into(),
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
    }
}

fn agent(name: &str) -> AgentRow {
    AgentRow {
        name: name.into(),
        id: format!("spiffe://agentauth.local/agent/{name}"),
        description: "test agent".into(),
        owner: "team-a".into(),
        permissions: vec!["read:customer".into()],
        public_jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        status: AgentStatus::Active,
        bearer_allowed: false,
        expires_at: None,
        parent: None,
        tags: vec![],
        created_at: 100,
        updated_at: 100,
    }
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
    verify_chain(&records, seq, &hash).unwrap();
}

pub(crate) async fn agents_are_created_listed_and_fetched(s: &dyn Store) {
    s.create_agent(&agent("reader"), &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    s.create_agent(
        &agent("customer"),
        &event("agent.created", "admin", "customer"),
    )
    .await
    .unwrap();
    assert_eq!(s.agent("reader").await.unwrap().unwrap(), agent("reader"));
    let names: Vec<_> = s
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["customer", "reader"]);
    assert!(s.agent("nobody").await.unwrap().is_none());
    assert_eq!(audit_count(s).await, 2);
}

pub(crate) async fn a_duplicate_agent_is_a_conflict_and_leaves_nothing_behind(s: &dyn Store) {
    s.create_agent(&agent("reader"), &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    let mut other = agent("reader");
    other.description = "impostor".into();
    let err = s
        .create_agent(&other, &event("agent.created", "admin", "reader"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        s.agent("reader").await.unwrap().unwrap().description,
        "test agent"
    );
    assert_eq!(audit_count(s).await, 1);
}

pub(crate) async fn disabling_and_enabling_an_agent_is_published_on_the_feed(s: &dyn Store) {
    s.create_agent(&agent("reader"), &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    let disable = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 200,
        ..AgentUpdate::default()
    };
    let updated = s
        .update_agent(
            "reader",
            &disable,
            &event("agent.updated", "admin", "reader"),
        )
        .await
        .unwrap();
    assert_eq!(updated.status, AgentStatus::Disabled);
    assert_eq!(updated.updated_at, 200);
    let perms = AgentUpdate {
        permissions: Some(vec!["read:orders".into()]),
        now: 201,
        ..AgentUpdate::default()
    };
    s.update_agent("reader", &perms, &event("agent.updated", "admin", "reader"))
        .await
        .unwrap();
    let enable = AgentUpdate {
        status: Some(AgentStatus::Active),
        now: 202,
        ..AgentUpdate::default()
    };
    s.update_agent(
        "reader",
        &enable,
        &event("agent.updated", "admin", "reader"),
    )
    .await
    .unwrap();

    let feed = s.revocations_since(0, 100).await.unwrap();
    let actions: Vec<_> = feed
        .iter()
        .map(|r| (r.kind, r.subject.as_str(), r.action))
        .collect();
    let id = "spiffe://agentauth.local/agent/reader";
    assert_eq!(
        actions,
        [
            (RevocationKind::Agent, id, RevocationAction::Revoke),
            (RevocationKind::Agent, id, RevocationAction::Restore)
        ]
    );
    assert!(feed[0].seq < feed[1].seq);
    assert_eq!(
        s.revocations_since(feed[0].seq, 100).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.agent("reader").await.unwrap().unwrap().permissions,
        ["read:orders"]
    );
}

pub(crate) async fn updating_or_deleting_a_missing_agent_changes_nothing(s: &dyn Store) {
    let update = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 1,
        ..AgentUpdate::default()
    };
    let err = s
        .update_agent("ghost", &update, &event("agent.updated", "admin", "ghost"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    let err = s
        .delete_agent("ghost", &event("agent.deleted", "admin", "ghost"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    assert_eq!(audit_count(s).await, 0);
    assert!(s.revocations_since(0, 10).await.unwrap().is_empty());
}

pub(crate) async fn deleting_an_agent_revokes_it(s: &dyn Store) {
    s.create_agent(&agent("reader"), &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    s.delete_agent("reader", &event("agent.deleted", "admin", "reader"))
        .await
        .unwrap();
    assert!(s.agent("reader").await.unwrap().is_none());
    let feed = s.revocations_since(0, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].action, RevocationAction::Revoke);
    assert_chain_intact(s).await;
}

pub(crate) async fn deleting_an_agent_revokes_its_tokens_and_a_new_agent_of_that_name_is_restored(
    s: &dyn Store,
) {
    s.create_agent(&agent("reader"), &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    let used = |jti: &str| UsedAssertion {
        client_id: "c".into(),
        jti: jti.into(),
        expires_at: 160,
    };
    s.issue_token(
        &used("a1"),
        &issued("live"),
        None,
        &event("token.issued", "c", "live"),
    )
    .await
    .unwrap();
    let expired = IssuedToken {
        expires_at: 50,
        ..issued("expired")
    };
    s.issue_token(
        &used("a2"),
        &expired,
        None,
        &event("token.issued", "c", "expired"),
    )
    .await
    .unwrap();
    let mut delete = event("agent.deleted", "admin", "reader");
    delete.time_ms = 100_000;
    s.delete_agent("reader", &delete).await.unwrap();
    assert!(s.token_revoked("live").await.unwrap());
    assert!(
        !s.token_revoked("expired").await.unwrap(),
        "expired tokens need no entry"
    );

    s.create_agent(&agent("reader"), &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    let feed = s.revocations_since(0, 100).await.unwrap();
    let last = feed.last().unwrap();
    assert_eq!(
        (last.kind, last.action),
        (RevocationKind::Agent, RevocationAction::Restore)
    );
    assert!(
        s.token_revoked("live").await.unwrap(),
        "the old agent's token stays revoked"
    );

    s.create_agent(&agent("writer"), &event("agent.created", "admin", "writer"))
        .await
        .unwrap();
    assert_eq!(
        s.revocations_since(last.seq, 100).await.unwrap().len(),
        0,
        "a new name needs no restore"
    );
}

pub(crate) async fn revoking_a_token_cascades_to_every_token_exchanged_from_it(s: &dyn Store) {
    let used = |jti: &str| UsedAssertion {
        client_id: "c".into(),
        jti: jti.into(),
        expires_at: 160,
    };
    let child = |jti: &str, parent: &str| IssuedToken {
        parent_jti: Some(parent.into()),
        txn: Some("t1".into()),
        ..issued(jti)
    };
    s.issue_token(
        &used("a1"),
        &issued("root"),
        None,
        &event("token.issued", "c", "root"),
    )
    .await
    .unwrap();
    s.issue_token(
        &used("a2"),
        &child("child", "root"),
        None,
        &event("token.exchanged", "c", "child"),
    )
    .await
    .unwrap();
    s.issue_token(
        &used("a3"),
        &child("grandchild", "child"),
        None,
        &event("token.exchanged", "c", "gc"),
    )
    .await
    .unwrap();
    s.issue_token(
        &used("a4"),
        &issued("unrelated"),
        None,
        &event("token.issued", "c", "u"),
    )
    .await
    .unwrap();
    let mut revoke = event("token.revoked", "admin", "child");
    revoke.time_ms = 100_000;
    s.revoke_token("child", 400, &revoke).await.unwrap();
    assert!(!s.token_revoked("root").await.unwrap());
    assert!(s.token_revoked("child").await.unwrap());
    assert!(s.token_revoked("grandchild").await.unwrap());
    assert!(!s.token_revoked("unrelated").await.unwrap());
    // An exchange from a revoked token cannot slip in afterwards.
    let err = s
        .issue_token(
            &used("a5"),
            &child("late", "child"),
            None,
            &event("token.exchanged", "c", "late"),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Conflict(_))));
    assert!(s.task_exists("t1").await.unwrap());
    assert!(!s.task_exists("t2").await.unwrap());
}

pub(crate) async fn tasks_are_revoked_and_their_records_read_in_order(s: &dyn Store) {
    let mut hop = event("token.exchanged", "executor", "j1");
    hop.txn = "t1".into();
    hop.chain = "executor planner".into();
    hop.purpose = "monthly report".into();
    let mut other = event("token.issued", "x", "j2");
    other.txn = "t2".into();
    s.append_audit(&[hop.clone(), other, hop.clone()])
        .await
        .unwrap();
    let records = s.task_records("t1").await.unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(records[0].event, hop);
    assert_chain_intact(s).await;
    assert!(!s.task_revoked("t1").await.unwrap());
    s.revoke_task("t1", 500, &event("task.revoked", "admin", "t1"))
        .await
        .unwrap();
    assert!(s.task_revoked("t1").await.unwrap());
    let feed = s.revocations_since(0, 10).await.unwrap();
    assert_eq!(
        (feed[0].kind, feed[0].subject.as_str()),
        (RevocationKind::Task, "t1")
    );
}

pub(crate) async fn revoked_keys_are_known_and_published(s: &dyn Store) {
    assert!(!s.key_revoked("jkt-1").await.unwrap());
    s.revoke_key("jkt-1", &event("key.revoked", "admin", "jkt-1"))
        .await
        .unwrap();
    assert!(s.key_revoked("jkt-1").await.unwrap());
    assert!(!s.key_revoked("jkt-2").await.unwrap());
    let feed = s.revocations_since(0, 10).await.unwrap();
    assert_eq!(
        (feed[0].kind, feed[0].subject.as_str()),
        (RevocationKind::Key, "jkt-1")
    );
}

pub(crate) async fn delegation_grants_are_stored_replaced_and_removed(s: &dyn Store) {
    let grant = DelegationRow {
        from: "spiffe://agentauth.local/agent/planner".into(),
        to: "spiffe://agentauth.local/agent/executor".into(),
        permissions: vec!["read:db".into()],
        created_at: 1,
    };
    s.put_delegation(&grant, &event("delegation.granted", "admin", "planner"))
        .await
        .unwrap();
    let wider = DelegationRow {
        permissions: vec!["read:db".into(), "write:db".into()],
        created_at: 2,
        ..grant.clone()
    };
    s.put_delegation(&wider, &event("delegation.granted", "admin", "planner"))
        .await
        .unwrap();
    assert_eq!(
        s.delegation(&grant.from, &grant.to).await.unwrap(),
        Some(wider.clone())
    );
    assert_eq!(s.delegations(&grant.from).await.unwrap(), [wider]);
    assert!(
        s.delegation(&grant.to, &grant.from)
            .await
            .unwrap()
            .is_none()
    );
    s.delete_delegation(
        &grant.from,
        &grant.to,
        &event("delegation.revoked", "admin", "planner"),
    )
    .await
    .unwrap();
    let again = s
        .delete_delegation(
            &grant.from,
            &grant.to,
            &event("delegation.revoked", "admin", "planner"),
        )
        .await;
    assert!(matches!(again, Err(StoreError::NotFound(_))));
    assert_eq!(audit_count(s).await, 3);
}

/// An agent spawned by `parent` (a registry name), expiring at `expires_at`.
fn child(name: &str, parent: &str, permissions: &[&str], expires_at: i64) -> AgentRow {
    AgentRow {
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        expires_at: Some(expires_at),
        parent: Some(format!("spiffe://agentauth.local/agent/{parent}")),
        ..agent(name)
    }
}

/// Creates `row` with an `agent.spawned` record.
async fn spawn(s: &dyn Store, row: &AgentRow) {
    s.create_agent(row, &event("agent.spawned", "parent", &row.id))
        .await
        .unwrap();
}

/// The agent revocations on the feed, as (subject name, action).
async fn agent_feed(s: &dyn Store) -> Vec<(String, RevocationAction)> {
    s.revocations_since(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == RevocationKind::Agent)
        .map(|r| {
            let name = r.subject.rsplit('/').next().unwrap().to_owned();
            (name, r.action)
        })
        .collect()
}

async fn status(s: &dyn Store, name: &str) -> AgentStatus {
    s.agent(name).await.unwrap().unwrap().status
}

pub(crate) async fn a_spawned_agent_keeps_its_parent_and_expiry(s: &dyn Store) {
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    let worker = child("worker", "planner", &["read:customer"], 160);
    spawn(s, &worker).await;
    let stored = s.agent("worker").await.unwrap().unwrap();
    assert_eq!(stored, worker);
    assert_eq!(stored.expires_at, Some(160));
    assert_eq!(
        stored.parent.as_deref(),
        Some("spiffe://agentauth.local/agent/planner")
    );
}

pub(crate) async fn an_agent_cannot_be_spawned_by_an_unusable_parent(s: &dyn Store) {
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    let disable = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 150,
        ..AgentUpdate::default()
    };
    s.update_agent(
        "planner",
        &disable,
        &event("agent.updated", "admin", "planner"),
    )
    .await
    .unwrap();
    let before = audit_count(s).await;
    for row in [
        child("orphan", "nobody", &[], 500),
        child("late", "planner", &[], 500),
    ] {
        let err = s
            .create_agent(&row, &event("agent.spawned", "p", &row.id))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }
    // A parent that expired before the child's creation time.
    let mut ephemeral = child("ephemeral", "root", &[], 120);
    ephemeral.parent = None;
    s.create_agent(&ephemeral, &event("agent.created", "admin", "ephemeral"))
        .await
        .unwrap();
    let grandchild = AgentRow {
        created_at: 120,
        updated_at: 120,
        ..child("grandchild", "ephemeral", &[], 500)
    };
    let err = s
        .create_agent(&grandchild, &event("agent.spawned", "p", "g"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(s.agent("late").await.unwrap().is_none());
    assert!(s.agent("grandchild").await.unwrap().is_none());
    assert_eq!(audit_count(s).await, before + 1);
}

pub(crate) async fn disabling_an_agent_disables_and_revokes_its_descendants(s: &dyn Store) {
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    s.create_agent(&agent("bystander"), &event("agent.created", "admin", "b"))
        .await
        .unwrap();
    spawn(s, &child("worker", "planner", &["read:customer"], 500)).await;
    spawn(s, &child("helper", "worker", &["read:customer"], 500)).await;
    spawn(s, &child("other", "bystander", &[], 500)).await;
    let before = audit_count(s).await;

    let disable = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 200,
        ..AgentUpdate::default()
    };
    s.update_agent(
        "planner",
        &disable,
        &event("agent.revoked", "admin", "planner"),
    )
    .await
    .unwrap();
    for name in ["planner", "worker", "helper"] {
        assert_eq!(status(s, name).await, AgentStatus::Disabled, "{name}");
    }
    assert_eq!(s.agent("worker").await.unwrap().unwrap().updated_at, 200);
    assert_eq!(status(s, "bystander").await, AgentStatus::Active);
    assert_eq!(status(s, "other").await, AgentStatus::Active);
    assert_eq!(
        agent_feed(s).await,
        [
            ("planner".to_owned(), RevocationAction::Revoke),
            ("helper".to_owned(), RevocationAction::Revoke),
            ("worker".to_owned(), RevocationAction::Revoke),
        ]
    );
    let records = s
        .audit_records(&AuditFilter {
            since: before,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let reported: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.event.kind.as_str(),
                r.event.subject.rsplit('/').next().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        [
            ("agent.revoked", "planner"),
            ("agent.revoked", "helper"),
            ("agent.revoked", "worker"),
        ]
    );
    assert!(records[1].event.reason.contains("was disabled"));
    assert_chain_intact(s).await;

    // Re-enabling the parent leaves its descendants disabled.
    let enable = AgentUpdate {
        status: Some(AgentStatus::Active),
        now: 300,
        ..AgentUpdate::default()
    };
    s.update_agent(
        "planner",
        &enable,
        &event("agent.updated", "admin", "planner"),
    )
    .await
    .unwrap();
    assert_eq!(status(s, "planner").await, AgentStatus::Active);
    assert_eq!(status(s, "worker").await, AgentStatus::Disabled);
    assert_eq!(status(s, "helper").await, AgentStatus::Disabled);

    // Disabling again publishes nothing for descendants already disabled.
    s.update_agent(
        "worker",
        &enable,
        &event("agent.updated", "admin", "worker"),
    )
    .await
    .unwrap();
    s.update_agent(
        "planner",
        &disable,
        &event("agent.revoked", "admin", "planner"),
    )
    .await
    .unwrap();
    let feed = agent_feed(s).await;
    assert_eq!(
        feed[3..],
        [
            ("planner".to_owned(), RevocationAction::Restore),
            ("worker".to_owned(), RevocationAction::Restore),
            ("planner".to_owned(), RevocationAction::Revoke),
            ("worker".to_owned(), RevocationAction::Revoke),
        ]
    );
}

pub(crate) async fn deleting_an_agent_disables_and_revokes_its_descendants(s: &dyn Store) {
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    spawn(s, &child("worker", "planner", &["read:customer"], 500)).await;
    spawn(s, &child("helper", "worker", &[], 500)).await;
    let mut delete = event("agent.deleted", "admin", "planner");
    delete.time_ms = 200_000;
    s.delete_agent("planner", &delete).await.unwrap();
    assert!(s.agent("planner").await.unwrap().is_none());
    assert_eq!(status(s, "worker").await, AgentStatus::Disabled);
    assert_eq!(status(s, "helper").await, AgentStatus::Disabled);
    assert_eq!(s.agent("helper").await.unwrap().unwrap().updated_at, 200);
    assert_eq!(
        agent_feed(s).await,
        [
            ("planner".to_owned(), RevocationAction::Revoke),
            ("helper".to_owned(), RevocationAction::Revoke),
            ("worker".to_owned(), RevocationAction::Revoke),
        ]
    );
    let cascaded = s
        .audit_records(&AuditFilter {
            kind: Some("agent.revoked".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(cascaded.len(), 2);
    assert!(cascaded[0].event.reason.contains("was deleted"));
    assert_chain_intact(s).await;

    // A new agent of the parent's name is restored, its old descendants are not.
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    assert_eq!(status(s, "worker").await, AgentStatus::Disabled);
    assert_eq!(
        agent_feed(s).await.last().unwrap(),
        &("planner".to_owned(), RevocationAction::Restore)
    );
}

pub(crate) async fn narrowing_an_agent_narrows_its_descendants(s: &dyn Store) {
    let mut planner = agent("planner");
    planner.permissions = vec!["agents:spawn".into(), "read:db".into(), "write:db".into()];
    s.create_agent(&planner, &event("agent.created", "admin", "planner"))
        .await
        .unwrap();
    spawn(
        s,
        &child(
            "worker",
            "planner",
            &["agents:spawn", "read:db", "write:db"],
            500,
        ),
    )
    .await;
    spawn(s, &child("helper", "worker", &["write:db"], 500)).await;
    spawn(s, &child("reader", "worker", &["read:db"], 500)).await;
    let before = audit_count(s).await;
    let narrow = AgentUpdate {
        permissions: Some(vec!["agents:spawn".into(), "read:db".into()]),
        now: 200,
        ..AgentUpdate::default()
    };
    s.update_agent(
        "planner",
        &narrow,
        &event("agent.updated", "admin", "planner"),
    )
    .await
    .unwrap();
    let perms = |row: Option<AgentRow>| row.unwrap().permissions;
    assert_eq!(
        perms(s.agent("worker").await.unwrap()),
        ["agents:spawn", "read:db"]
    );
    assert!(perms(s.agent("helper").await.unwrap()).is_empty());
    assert_eq!(perms(s.agent("reader").await.unwrap()), ["read:db"]);
    assert_eq!(
        s.agent("reader").await.unwrap().unwrap().updated_at,
        100,
        "untouched"
    );
    assert_eq!(
        audit_count(s).await,
        before + 3,
        "the change and two narrowed descendants"
    );
    assert!(agent_feed(s).await.is_empty(), "narrowing revokes nothing");
    assert_chain_intact(s).await;
}

fn issued(jti: &str) -> IssuedToken {
    IssuedToken {
        jti: jti.into(),
        client_id: "spiffe://agentauth.local/agent/reader".into(),
        subject: "spiffe://agentauth.local/agent/reader".into(),
        audience: "spiffe://agentauth.local/agent/customer".into(),
        scope: "read:customer".into(),
        issued_at: 100,
        expires_at: 400,
        parent_jti: None,
        txn: None,
    }
}

pub(crate) async fn a_replayed_assertion_issues_nothing(s: &dyn Store) {
    let used = UsedAssertion {
        client_id: "c".into(),
        jti: "a1".into(),
        expires_at: 160,
    };
    s.issue_token(
        &used,
        &issued("t1"),
        None,
        &event("token.issued", "c", "t1"),
    )
    .await
    .unwrap();
    let err = s
        .issue_token(
            &used,
            &issued("t2"),
            None,
            &event("token.issued", "c", "t2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ReplayedAssertion), "{err}");
    assert!(matches!(
        s.consume_assertion(&used).await.unwrap_err(),
        StoreError::ReplayedAssertion
    ));
    assert_eq!(audit_count(s).await, 1);
    let other_client = UsedAssertion {
        client_id: "d".into(),
        ..used
    };
    s.consume_assertion(&other_client).await.unwrap();
}

pub(crate) async fn expired_assertions_are_purged(s: &dyn Store) {
    let old = UsedAssertion {
        client_id: "c".into(),
        jti: "old".into(),
        expires_at: 100,
    };
    let fresh = UsedAssertion {
        client_id: "c".into(),
        jti: "fresh".into(),
        expires_at: 300,
    };
    s.consume_assertion(&old).await.unwrap();
    s.consume_assertion(&fresh).await.unwrap();
    assert_eq!(s.purge_expired(200).await.unwrap(), 1);
    assert!(matches!(
        s.consume_assertion(&fresh).await.unwrap_err(),
        StoreError::ReplayedAssertion
    ));
}

pub(crate) async fn revoked_tokens_are_known_and_published(s: &dyn Store) {
    assert!(!s.token_revoked("t1").await.unwrap());
    s.revoke_token("t1", 400, &event("token.revoked", "admin", "t1"))
        .await
        .unwrap();
    assert!(s.token_revoked("t1").await.unwrap());
    let feed = s.revocations_since(0, 10).await.unwrap();
    assert_eq!(feed[0].kind, RevocationKind::Token);
    assert_eq!(feed[0].expires_at, Some(400));
}

pub(crate) async fn audit_records_chain_and_filter(s: &dyn Store) {
    let batch: Vec<_> = (0..10)
        .map(|i| {
            event(
                if i % 2 == 0 {
                    "request.allowed"
                } else {
                    "request.denied"
                },
                &format!("a{}", i % 3),
                "x",
            )
        })
        .collect();
    s.append_audit(&batch).await.unwrap();
    s.append_audit(&[]).await.unwrap();
    assert_chain_intact(s).await;
    let by_kind = AuditFilter {
        kind: Some("request.denied".into()),
        ..Default::default()
    };
    assert_eq!(s.audit_records(&by_kind).await.unwrap().len(), 5);
    let by_agent = AuditFilter {
        agent: Some("a0".into()),
        ..Default::default()
    };
    assert_eq!(s.audit_records(&by_agent).await.unwrap().len(), 4);
    let page = s
        .audit_records(&AuditFilter {
            since: 3,
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
}

pub(crate) async fn concurrent_audit_appends_keep_one_chain(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                for j in 0..5 {
                    s.append_audit(&[event("request.allowed", &format!("w{i}"), &format!("{j}"))])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(audit_count(&*s).await, 80);
    assert_chain_intact(&*s).await;
}

pub(crate) async fn settings_keep_the_first_value(s: &dyn Store) {
    assert_eq!(s.setting("k").await.unwrap(), None);
    assert_eq!(s.init_setting("k", "first").await.unwrap(), "first");
    assert_eq!(s.init_setting("k", "second").await.unwrap(), "first");
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("first"));
}

pub(crate) async fn signing_keys_round_trip(s: &dyn Store) {
    let key = SigningKeyRow {
        kid: "k1".into(),
        alg: "EdDSA".into(),
        public_jwk: "{}".into(),
        sealed_private: "sealed".into(),
        created_at: 5,
    };
    s.add_signing_key(&key).await.unwrap();
    assert_eq!(s.signing_keys().await.unwrap(), [key]);
}

pub(crate) async fn agent_tags_round_trip(s: &dyn Store) {
    let tagged = AgentRow {
        tags: vec!["finance".into(), "pii".into()],
        ..agent("reader")
    };
    s.create_agent(&tagged, &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    assert_eq!(s.agent("reader").await.unwrap().unwrap(), tagged);
    assert_eq!(s.agents().await.unwrap()[0].tags, ["finance", "pii"]);
    let retag = AgentUpdate {
        tags: Some(vec!["ops".into()]),
        now: 200,
        ..AgentUpdate::default()
    };
    let updated = s
        .update_agent("reader", &retag, &event("agent.updated", "admin", "reader"))
        .await
        .unwrap();
    assert_eq!(updated.tags, ["ops"]);
    assert_eq!(s.agent("reader").await.unwrap().unwrap(), updated);
    let describe = AgentUpdate {
        description: Some("still tagged".into()),
        now: 201,
        ..AgentUpdate::default()
    };
    s.update_agent(
        "reader",
        &describe,
        &event("agent.updated", "admin", "reader"),
    )
    .await
    .unwrap();
    assert_eq!(s.agent("reader").await.unwrap().unwrap().tags, ["ops"]);
    let untag = AgentUpdate {
        tags: Some(vec![]),
        now: 202,
        ..AgentUpdate::default()
    };
    s.update_agent("reader", &untag, &event("agent.updated", "admin", "reader"))
        .await
        .unwrap();
    assert!(s.agent("reader").await.unwrap().unwrap().tags.is_empty());
}

const POLICY_FILES: &str =
    r#"[{"name":"base.cedar","text":"permit(principal, action, resource);"}]"#;

/// The policy entries on the feed, as (subject, action, created_at).
async fn policy_feed(s: &dyn Store) -> Vec<(String, RevocationAction, i64)> {
    s.revocations_since(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == RevocationKind::Policy)
        .map(|r| (r.subject, r.action, r.created_at))
        .collect()
}

pub(crate) async fn policy_sets_are_added_listed_and_activated(s: &dyn Store) {
    assert!(s.policy_sets().await.unwrap().is_empty());
    assert!(s.active_policy_set().await.unwrap().is_none());
    let v1 = s
        .add_policy_set(
            POLICY_FILES,
            "d1",
            1,
            100,
            &event("policy.loaded", "admin", "1"),
        )
        .await
        .unwrap();
    let v2 = s
        .add_policy_set("[]", "d2", 0, 110, &event("policy.loaded", "admin", "2"))
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    let first = PolicySetRow {
        version: 1,
        files: POLICY_FILES.into(),
        digest: "d1".into(),
        policy_count: 1,
        created_at: 100,
        active: false,
    };
    let second = PolicySetRow {
        version: 2,
        files: "[]".into(),
        digest: "d2".into(),
        policy_count: 0,
        created_at: 110,
        active: false,
    };
    assert_eq!(
        s.policy_sets().await.unwrap(),
        [second.clone(), first.clone()]
    );
    assert_eq!(s.policy_set(1).await.unwrap(), Some(first.clone()));
    assert!(s.policy_set(3).await.unwrap().is_none());
    assert!(s.active_policy_set().await.unwrap().is_none());
    assert!(policy_feed(s).await.is_empty(), "adding publishes nothing");

    s.activate_policy_set(1, 150, &event("policy.activated", "admin", "1"))
        .await
        .unwrap();
    let first_active = PolicySetRow {
        active: true,
        ..first.clone()
    };
    assert_eq!(
        s.active_policy_set().await.unwrap(),
        Some(first_active.clone())
    );
    assert_eq!(s.policy_set(1).await.unwrap(), Some(first_active.clone()));
    assert_eq!(
        s.policy_sets().await.unwrap(),
        [second.clone(), first_active]
    );

    s.activate_policy_set(2, 160, &event("policy.activated", "admin", "2"))
        .await
        .unwrap();
    let second_active = PolicySetRow {
        active: true,
        ..second
    };
    assert_eq!(
        s.active_policy_set().await.unwrap(),
        Some(second_active.clone())
    );
    assert_eq!(s.policy_sets().await.unwrap(), [second_active, first]);

    // Going back to an older version is an activation like any other.
    s.activate_policy_set(1, 170, &event("policy.activated", "admin", "1"))
        .await
        .unwrap();
    assert_eq!(s.active_policy_set().await.unwrap().unwrap().version, 1);
    assert_eq!(
        policy_feed(s).await,
        [
            ("1".to_owned(), RevocationAction::Revoke, 150),
            ("2".to_owned(), RevocationAction::Revoke, 160),
            ("1".to_owned(), RevocationAction::Revoke, 170),
        ]
    );
    let feed = s.revocations_since(0, 10).await.unwrap();
    assert!(feed.iter().all(|r| r.expires_at.is_none()));
    assert_eq!(audit_count(s).await, 5);
    assert_chain_intact(s).await;
}

pub(crate) async fn activating_a_missing_policy_set_writes_nothing(s: &dyn Store) {
    let err = s
        .activate_policy_set(1, 100, &event("policy.activated", "admin", "1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(s.active_policy_set().await.unwrap().is_none());
    assert_eq!(audit_count(s).await, 0);

    let v1 = s
        .add_policy_set(
            POLICY_FILES,
            "d1",
            1,
            100,
            &event("policy.loaded", "admin", "1"),
        )
        .await
        .unwrap();
    s.activate_policy_set(v1, 110, &event("policy.activated", "admin", "1"))
        .await
        .unwrap();
    let head = s.audit_head().await.unwrap();
    let feed = s.revocations_since(0, 100).await.unwrap();
    let err = s
        .activate_policy_set(v1 + 1, 120, &event("policy.activated", "admin", "2"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), "policy set version 2 was not found");
    assert_eq!(s.audit_head().await.unwrap(), head);
    assert_eq!(s.revocations_since(0, 100).await.unwrap(), feed);
    assert_eq!(s.active_policy_set().await.unwrap().unwrap().version, v1);
}

const READER: &str = "spiffe://agentauth.local/agent/reader";
const CUSTOMER: &str = "spiffe://agentauth.local/agent/customer";

/// A pending approval of `write:customer` for the reader, created at
/// `created_at` and void 300 seconds later.
fn approval(id: &str, created_at: i64) -> ApprovalRow {
    ApprovalRow {
        id: id.into(),
        agent: READER.into(),
        subject: READER.into(),
        audience: CUSTOMER.into(),
        scope: "write:customer".into(),
        txn: "t1".into(),
        purpose: "refund order 7".into(),
        grant_type: "client_credentials".into(),
        policies: "refunds-need-approval".into(),
        approvers: Some("finance".into()),
        status: ApprovalStatus::Pending,
        created_at,
        expires_at: created_at + 300,
        last_poll_at: created_at,
        decided_by: None,
        decided_at: None,
        reason: None,
    }
}

async fn create_approval(s: &dyn Store, row: &ApprovalRow) {
    s.create_approval(row, &event("approval.requested", &row.agent, &row.id))
        .await
        .unwrap();
}

fn decision(status: ApprovalStatus, by: &str, now: i64) -> ApprovalDecision {
    ApprovalDecision {
        status,
        by: by.into(),
        reason: None,
        now,
    }
}

async fn decide(s: &dyn Store, id: &str, decision: &ApprovalDecision) -> Result<ApprovalRow> {
    s.decide_approval(id, decision, &event("approval.decided", &decision.by, id))
        .await
}

/// The pending approval for the reader's `write:customer` request, as its ID.
/// The reader's own client_credentials request.
fn request<'a>(
    audience: &'a str,
    scope: &'a str,
    purpose: &'a str,
    txn: Option<&'a str>,
) -> ApprovalRequest<'a> {
    ApprovalRequest {
        agent: READER,
        subject: READER,
        audience,
        scope,
        purpose,
        grant_type: "client_credentials",
        txn,
    }
}

async fn pending(
    s: &dyn Store,
    audience: &str,
    scope: &str,
    purpose: &str,
    txn: Option<&str>,
    now: i64,
) -> Option<String> {
    s.pending_approval(&request(audience, scope, purpose, txn), now)
        .await
        .unwrap()
        .map(|a| a.id)
}

pub(crate) async fn pending_approvals_are_counted_per_agent(s: &dyn Store) {
    assert_eq!(s.pending_approval_count(READER, 100).await.unwrap(), 0);
    create_approval(s, &approval("ap-1", 100)).await;
    create_approval(s, &approval("ap-2", 150)).await;
    let mut other = approval("ap-3", 100);
    other.agent = CUSTOMER.into();
    create_approval(s, &other).await;
    assert_eq!(s.pending_approval_count(READER, 200).await.unwrap(), 2);
    decide(s, "ap-1", &decision(ApprovalStatus::Approved, "alice", 210))
        .await
        .unwrap();
    assert_eq!(s.pending_approval_count(READER, 220).await.unwrap(), 1);
    // ap-2 expires at 450.
    assert_eq!(s.pending_approval_count(READER, 450).await.unwrap(), 0);
}

pub(crate) async fn approvals_are_created_and_found_for_the_same_request(s: &dyn Store) {
    let a1 = approval("ap-1", 100);
    create_approval(s, &a1).await;
    assert_eq!(s.approval("ap-1").await.unwrap(), Some(a1.clone()));
    assert!(s.approval("ap-0").await.unwrap().is_none());
    let err = s
        .create_approval(&a1, &event("approval.requested", READER, "ap-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(audit_count(s).await, 1);

    let (scope, purpose) = ("write:customer", "refund order 7");
    let found = |audience, scope, purpose, txn, now| pending(s, audience, scope, purpose, txn, now);
    assert_eq!(
        found(CUSTOMER, scope, purpose, Some("t1"), 200)
            .await
            .as_deref(),
        Some("ap-1")
    );
    assert_eq!(
        found(CUSTOMER, scope, purpose, None, 200).await.as_deref(),
        Some("ap-1")
    );
    assert_eq!(found(CUSTOMER, scope, purpose, Some("t2"), 200).await, None);
    assert_eq!(
        found(CUSTOMER, "read:customer", purpose, None, 200).await,
        None
    );
    assert_eq!(found(READER, scope, purpose, None, 200).await, None);
    assert_eq!(
        found(CUSTOMER, scope, "another purpose", None, 200).await,
        None
    );
    assert_eq!(
        found(CUSTOMER, scope, purpose, None, 399).await.as_deref(),
        Some("ap-1")
    );
    assert_eq!(
        found(CUSTOMER, scope, purpose, None, 400).await,
        None,
        "expired"
    );
    let other_agent = ApprovalRow {
        agent: CUSTOMER.into(),
        ..approval("ap-x", 100)
    };
    create_approval(s, &other_agent).await;
    assert_eq!(
        s.pending_approval(&request(CUSTOMER, scope, purpose, None), 200)
            .await
            .unwrap()
            .unwrap()
            .id,
        "ap-1",
        "another agent's approval is not the reader's"
    );
    let exchange = ApprovalRequest {
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        ..request(CUSTOMER, scope, purpose, None)
    };
    assert!(s.pending_approval(&exchange, 200).await.unwrap().is_none());
    let on_behalf = ApprovalRequest {
        subject: CUSTOMER,
        ..request(CUSTOMER, scope, purpose, None)
    };
    assert!(s.pending_approval(&on_behalf, 200).await.unwrap().is_none());

    // The newest one wins; a decided one is no longer pending.
    create_approval(s, &approval("ap-2", 150)).await;
    assert_eq!(
        found(CUSTOMER, scope, purpose, Some("t1"), 200)
            .await
            .as_deref(),
        Some("ap-2")
    );
    decide(s, "ap-2", &decision(ApprovalStatus::Approved, "alice", 160))
        .await
        .unwrap();
    assert_eq!(
        found(CUSTOMER, scope, purpose, Some("t1"), 200)
            .await
            .as_deref(),
        Some("ap-1")
    );

    let ids = |rows: Vec<ApprovalRow>| rows.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.approvals(None, 10).await.unwrap()),
        ["ap-2", "ap-1", "ap-x"]
    );
    assert_eq!(ids(s.approvals(None, 2).await.unwrap()), ["ap-2", "ap-1"]);
    assert_eq!(
        ids(s
            .approvals(Some(ApprovalStatus::Pending), 10)
            .await
            .unwrap()),
        ["ap-1", "ap-x"]
    );
    assert_eq!(
        ids(s
            .approvals(Some(ApprovalStatus::Approved), 10)
            .await
            .unwrap()),
        ["ap-2"]
    );
    assert!(
        s.approvals(Some(ApprovalStatus::Used), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_chain_intact(s).await;
}

pub(crate) async fn polls_are_spaced_by_the_interval(s: &dyn Store) {
    create_approval(s, &approval("ap-1", 100)).await;
    let last_poll = async || s.approval("ap-1").await.unwrap().unwrap().last_poll_at;
    assert!(
        !s.poll_approval("ap-1", 104, 5).await.unwrap(),
        "too soon after creation"
    );
    assert_eq!(last_poll().await, 100, "a refused poll is not recorded");
    assert!(s.poll_approval("ap-1", 105, 5).await.unwrap());
    assert_eq!(last_poll().await, 105);
    assert!(
        !s.poll_approval("ap-1", 105, 5).await.unwrap(),
        "immediately again"
    );
    assert!(!s.poll_approval("ap-1", 109, 5).await.unwrap());
    assert_eq!(last_poll().await, 105);
    assert!(s.poll_approval("ap-1", 110, 5).await.unwrap());
    assert_eq!(last_poll().await, 110);

    // Of two polls at the same moment only one passes.
    let (a, b) = tokio::join!(
        s.poll_approval("ap-1", 120, 5),
        s.poll_approval("ap-1", 120, 5)
    );
    assert!(
        a.unwrap() ^ b.unwrap(),
        "exactly one of two racing polls passes"
    );

    let err = s.poll_approval("ap-0", 200, 5).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(audit_count(s).await, 1, "polls are not audited");
}

/// A token of the reader for the customer, issued at `issued_at` in task `txn`.
fn approved_token(jti: &str, issued_at: i64, txn: &str) -> IssuedToken {
    IssuedToken {
        scope: "write:customer".into(),
        issued_at,
        expires_at: issued_at + 300,
        txn: Some(txn.into()),
        ..issued(jti)
    }
}

fn assertion(jti: &str) -> UsedAssertion {
    UsedAssertion {
        client_id: READER.into(),
        jti: jti.into(),
        expires_at: 1000,
    }
}

pub(crate) async fn an_approved_approval_issues_exactly_one_token(s: &dyn Store) {
    create_approval(s, &approval("ap-1", 100)).await;
    let approved = decide(s, "ap-1", &decision(ApprovalStatus::Approved, "alice", 150))
        .await
        .unwrap();
    assert_eq!(
        (
            approved.status,
            approved.decided_by.as_deref(),
            approved.decided_at,
            approved.reason.as_deref()
        ),
        (ApprovalStatus::Approved, Some("alice"), Some(150), None)
    );
    assert_eq!(s.approval("ap-1").await.unwrap(), Some(approved.clone()));

    s.issue_token(
        &assertion("x1"),
        &approved_token("j1", 160, "t1"),
        Some("ap-1"),
        &event("token.issued", READER, "j1"),
    )
    .await
    .unwrap();
    let used = s.approval("ap-1").await.unwrap().unwrap();
    assert_eq!(
        used,
        ApprovalRow {
            status: ApprovalStatus::Used,
            ..approved
        }
    );
    assert!(s.task_exists("t1").await.unwrap());
    let before = audit_count(s).await;

    let err = s
        .issue_token(
            &assertion("x2"),
            &approved_token("j2", 170, "t2"),
            Some("ap-1"),
            &event("token.issued", READER, "j2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    assert!(!s.task_exists("t2").await.unwrap(), "no second token");
    s.consume_assertion(&assertion("x2"))
        .await
        .expect("the refused request's assertion was not used up");
    assert_eq!(audit_count(s).await, before);
    assert_eq!(
        s.approval("ap-1").await.unwrap().unwrap().status,
        ApprovalStatus::Used
    );

    // Neither an unknown, a pending nor an expired approval issues a token.
    create_approval(s, &approval("ap-2", 100)).await;
    create_approval(s, &approval("ap-3", 100)).await;
    decide(s, "ap-3", &decision(ApprovalStatus::Approved, "alice", 150))
        .await
        .unwrap();
    let before = audit_count(s).await;
    for (i, (id, issued_at)) in [("ap-0", 200), ("ap-2", 200), ("ap-3", 400)]
        .into_iter()
        .enumerate()
    {
        let err = s
            .issue_token(
                &assertion(&format!("y{i}")),
                &approved_token(&format!("k{i}"), issued_at, "t3"),
                Some(id),
                &event("token.issued", READER, "k"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale(_)), "{id}: {err}");
    }
    assert!(!s.task_exists("t3").await.unwrap());
    assert_eq!(audit_count(s).await, before);
    assert_eq!(
        s.approval("ap-2").await.unwrap().unwrap().status,
        ApprovalStatus::Pending
    );
    assert_eq!(
        s.approval("ap-3").await.unwrap().unwrap().status,
        ApprovalStatus::Approved
    );
    assert!(s.approval("ap-0").await.unwrap().is_none());
    // Just before its expiry the approved one still works.
    s.issue_token(
        &assertion("z1"),
        &approved_token("k9", 399, "t4"),
        Some("ap-3"),
        &event("token.issued", READER, "k9"),
    )
    .await
    .unwrap();
    assert_chain_intact(s).await;
}

pub(crate) async fn deciding_a_decided_or_expired_approval_is_stale(s: &dyn Store) {
    create_approval(s, &approval("ap-1", 100)).await;
    let approved = decide(s, "ap-1", &decision(ApprovalStatus::Approved, "alice", 150))
        .await
        .unwrap();
    create_approval(s, &approval("ap-2", 100)).await;
    let before = audit_count(s).await;

    let err = decide(s, "ap-1", &decision(ApprovalStatus::Denied, "bob", 160))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    assert!(err.to_string().contains("no longer pending"), "{err}");
    assert_eq!(
        s.approval("ap-1").await.unwrap(),
        Some(approved),
        "unchanged"
    );

    let err = decide(s, "ap-2", &decision(ApprovalStatus::Approved, "alice", 400))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    let expired = s.approval("ap-2").await.unwrap().unwrap();
    assert_eq!(
        (expired.status, expired.decided_by),
        (ApprovalStatus::Pending, None)
    );

    s.issue_token(
        &assertion("x1"),
        &approved_token("j1", 160, "t1"),
        Some("ap-1"),
        &event("token.issued", READER, "j1"),
    )
    .await
    .unwrap();
    let before_used = audit_count(s).await;
    let err = decide(s, "ap-1", &decision(ApprovalStatus::Approved, "alice", 170))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    assert_eq!(
        s.approval("ap-1").await.unwrap().unwrap().status,
        ApprovalStatus::Used
    );

    let err = decide(s, "ap-0", &decision(ApprovalStatus::Approved, "alice", 150))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), "approval ap-0 was not found");
    assert_eq!(audit_count(s).await, before_used);
    assert_eq!(before_used, before + 1, "only the token was recorded");
}

pub(crate) async fn a_denial_keeps_who_and_why(s: &dyn Store) {
    create_approval(s, &approval("ap-1", 100)).await;
    let deny = ApprovalDecision {
        reason: Some("refunds wait for month end".into()),
        ..decision(ApprovalStatus::Denied, "bob", 170)
    };
    let denied = s
        .decide_approval("ap-1", &deny, &event("approval.denied", "bob", "ap-1"))
        .await
        .unwrap();
    assert_eq!(
        denied,
        ApprovalRow {
            status: ApprovalStatus::Denied,
            decided_by: Some("bob".into()),
            decided_at: Some(170),
            reason: Some("refunds wait for month end".into()),
            ..approval("ap-1", 100)
        }
    );
    assert_eq!(s.approval("ap-1").await.unwrap(), Some(denied));
    assert!(
        s.pending_approval(
            &request(CUSTOMER, "write:customer", "refund order 7", None),
            200
        )
        .await
        .unwrap()
        .is_none()
    );
    let err = s
        .issue_token(
            &assertion("x1"),
            &approved_token("j1", 180, "t1"),
            Some("ap-1"),
            &event("token.issued", READER, "j1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    let records = s
        .audit_records(&AuditFilter {
            kind: Some("approval.denied".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(audit_count(s).await, 2);
}

/// A test's name as the test harness prints it: its path without the crate.
fn test_name(path: &'static str) -> &'static str {
    path.split_once("::").map_or(path, |(_, name)| name)
}

macro_rules! run_suite {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let f = super::Fixture::sqlite().await;
                    super::$case(&*f.store).await;
                    f.finish().await;
                }
            )*
            #[tokio::test]
            async fn concurrent_audit_appends_keep_one_chain() {
                let f = super::Fixture::sqlite().await;
                super::concurrent_audit_appends_keep_one_chain(f.store.clone()).await;
                f.finish().await;
            }
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
            #[tokio::test]
            async fn concurrent_audit_appends_keep_one_chain() {
                let name = super::test_name(concat!(module_path!(), "::concurrent_audit_appends_keep_one_chain"));
                let Some(f) = super::Fixture::postgres(name).await else {
                    return;
                };
                super::concurrent_audit_appends_keep_one_chain(f.store.clone()).await;
                f.finish().await;
            }
        }
    };
}

run_suite!(
    agents_are_created_listed_and_fetched,
    a_duplicate_agent_is_a_conflict_and_leaves_nothing_behind,
    disabling_and_enabling_an_agent_is_published_on_the_feed,
    updating_or_deleting_a_missing_agent_changes_nothing,
    deleting_an_agent_revokes_it,
    revoking_a_token_cascades_to_every_token_exchanged_from_it,
    tasks_are_revoked_and_their_records_read_in_order,
    delegation_grants_are_stored_replaced_and_removed,
    revoked_keys_are_known_and_published,
    deleting_an_agent_revokes_its_tokens_and_a_new_agent_of_that_name_is_restored,
    a_replayed_assertion_issues_nothing,
    expired_assertions_are_purged,
    revoked_tokens_are_known_and_published,
    audit_records_chain_and_filter,
    settings_keep_the_first_value,
    signing_keys_round_trip,
    a_spawned_agent_keeps_its_parent_and_expiry,
    an_agent_cannot_be_spawned_by_an_unusable_parent,
    disabling_an_agent_disables_and_revokes_its_descendants,
    deleting_an_agent_disables_and_revokes_its_descendants,
    narrowing_an_agent_narrows_its_descendants,
    agent_tags_round_trip,
    policy_sets_are_added_listed_and_activated,
    activating_a_missing_policy_set_writes_nothing,
    approvals_are_created_and_found_for_the_same_request,
    polls_are_spaced_by_the_interval,
    an_approved_approval_issues_exactly_one_token,
    deciding_a_decided_or_expired_approval_is_stale,
    a_denial_keeps_who_and_why,
    pending_approvals_are_counted_per_agent,
);
