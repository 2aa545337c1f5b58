//! Suite cases for agents: registration, changes, removal, tags, and spawned descendants.

use super::*;

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
    assert_eq!(
        s.agent(&name("reader")).await.unwrap().unwrap(),
        agent("reader")
    );
    let names: Vec<_> = s
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["customer", "reader"]);
    assert!(s.agent(&name("nobody")).await.unwrap().is_none());
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
        s.agent(&name("reader")).await.unwrap().unwrap().description,
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
            &name("reader"),
            &disable,
            &event("agent.updated", "admin", "reader"),
        )
        .await
        .unwrap();
    assert_eq!(updated.status, AgentStatus::Disabled);
    assert_eq!(updated.updated_at, 200);
    let perms = AgentUpdate {
        permissions: Some(scope("read:orders")),
        now: 201,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("reader"),
        &perms,
        &event("agent.updated", "admin", "reader"),
    )
    .await
    .unwrap();
    let enable = AgentUpdate {
        status: Some(AgentStatus::Active),
        now: 202,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("reader"),
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
        s.agent(&name("reader")).await.unwrap().unwrap().permissions,
        scope("read:orders")
    );
}

pub(crate) async fn updating_or_deleting_a_missing_agent_changes_nothing(s: &dyn Store) {
    let update = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 1,
        ..AgentUpdate::default()
    };
    let err = s
        .update_agent(
            &name("ghost"),
            &update,
            &event("agent.updated", "admin", "ghost"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    let err = s
        .delete_agent(&name("ghost"), &event("agent.deleted", "admin", "ghost"))
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
    s.delete_agent(&name("reader"), &event("agent.deleted", "admin", "reader"))
        .await
        .unwrap();
    assert!(s.agent(&name("reader")).await.unwrap().is_none());
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
    s.delete_agent(&name("reader"), &delete).await.unwrap();
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

/// An agent spawned by `parent` (a registry name), expiring at `expires_at`.
fn child(name: &str, parent: &str, permissions: &[&str], expires_at: i64) -> AgentRow {
    AgentRow {
        permissions: Scope::from_strs(permissions.iter().copied()).unwrap(),
        expires_at: Some(expires_at),
        parent: Some(agent_id(parent)),
        ..agent(name)
    }
}

/// Creates `row` with an `agent.spawned` record.
async fn spawn(s: &dyn Store, row: &AgentRow) {
    s.create_agent(row, &event("agent.spawned", "parent", row.id.as_str()))
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
    s.agent(&self::name(name)).await.unwrap().unwrap().status
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
    let stored = s.agent(&name("worker")).await.unwrap().unwrap();
    assert_eq!(stored, worker);
    assert_eq!(stored.expires_at, Some(160));
    assert_eq!(
        stored.parent.as_ref().map(SpiffeId::as_str),
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
        &name("planner"),
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
            .create_agent(&row, &event("agent.spawned", "p", row.id.as_str()))
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
    assert!(s.agent(&name("late")).await.unwrap().is_none());
    assert!(s.agent(&name("grandchild")).await.unwrap().is_none());
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
        &name("planner"),
        &disable,
        &event("agent.revoked", "admin", "planner"),
    )
    .await
    .unwrap();
    for name in ["planner", "worker", "helper"] {
        assert_eq!(status(s, name).await, AgentStatus::Disabled, "{name}");
    }
    assert_eq!(
        s.agent(&name("worker")).await.unwrap().unwrap().updated_at,
        200
    );
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
        &name("planner"),
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
        &name("worker"),
        &enable,
        &event("agent.updated", "admin", "worker"),
    )
    .await
    .unwrap();
    s.update_agent(
        &name("planner"),
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
    s.delete_agent(&name("planner"), &delete).await.unwrap();
    assert!(s.agent(&name("planner")).await.unwrap().is_none());
    assert_eq!(status(s, "worker").await, AgentStatus::Disabled);
    assert_eq!(status(s, "helper").await, AgentStatus::Disabled);
    assert_eq!(
        s.agent(&name("helper")).await.unwrap().unwrap().updated_at,
        200
    );
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
            kind: AuditKind::parse("agent.revoked"),
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
    planner.permissions = scope("agents:spawn read:db write:db");
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
        permissions: Some(scope("agents:spawn read:db")),
        now: 200,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("planner"),
        &narrow,
        &event("agent.updated", "admin", "planner"),
    )
    .await
    .unwrap();
    let perms = |row: Option<AgentRow>| row.unwrap().permissions;
    assert_eq!(
        perms(s.agent(&name("worker")).await.unwrap()),
        scope("agents:spawn read:db")
    );
    assert!(perms(s.agent(&name("helper")).await.unwrap()).is_empty());
    assert_eq!(
        perms(s.agent(&name("reader")).await.unwrap()),
        scope("read:db")
    );
    assert_eq!(
        s.agent(&name("reader")).await.unwrap().unwrap().updated_at,
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

pub(crate) async fn agent_tags_round_trip(s: &dyn Store) {
    let tagged = AgentRow {
        tags: vec!["finance".into(), "pii".into()],
        ..agent("reader")
    };
    s.create_agent(&tagged, &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    assert_eq!(s.agent(&name("reader")).await.unwrap().unwrap(), tagged);
    assert_eq!(s.agents().await.unwrap()[0].tags, ["finance", "pii"]);
    let retag = AgentUpdate {
        tags: Some(vec!["ops".into()]),
        now: 200,
        ..AgentUpdate::default()
    };
    let updated = s
        .update_agent(
            &name("reader"),
            &retag,
            &event("agent.updated", "admin", "reader"),
        )
        .await
        .unwrap();
    assert_eq!(updated.tags, ["ops"]);
    assert_eq!(s.agent(&name("reader")).await.unwrap().unwrap(), updated);
    let describe = AgentUpdate {
        description: Some("still tagged".into()),
        now: 201,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("reader"),
        &describe,
        &event("agent.updated", "admin", "reader"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.agent(&name("reader")).await.unwrap().unwrap().tags,
        ["ops"]
    );
    let untag = AgentUpdate {
        tags: Some(vec![]),
        now: 202,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("reader"),
        &untag,
        &event("agent.updated", "admin", "reader"),
    )
    .await
    .unwrap();
    assert!(
        s.agent(&name("reader"))
            .await
            .unwrap()
            .unwrap()
            .tags
            .is_empty()
    );
}

pub(crate) async fn workload_entries_are_the_agents_with_selectors(s: &dyn Store) {
    let entry = AgentRow {
        selectors: vec!["unix:path:/usr/bin/x".into(), "unix:uid:1000".into()],
        ..agent("worker")
    };
    s.create_agent(&entry, &event("agent.created", "admin", "worker"))
        .await
        .unwrap();
    s.create_agent(&agent("plain"), &event("agent.created", "admin", "plain"))
        .await
        .unwrap();
    assert_eq!(s.agent(&name("worker")).await.unwrap().unwrap(), entry);
    let entries = s.agents_with_selectors().await.unwrap();
    assert_eq!(entries, [entry]);
    let withdraw = AgentUpdate {
        selectors: Some(vec![]),
        now: 200,
        ..AgentUpdate::default()
    };
    let updated = s
        .update_agent(
            &name("worker"),
            &withdraw,
            &event("agent.updated", "admin", "worker"),
        )
        .await
        .unwrap();
    assert!(updated.selectors.is_empty());
    assert!(s.agents_with_selectors().await.unwrap().is_empty());
    let grant = AgentUpdate {
        selectors: Some(vec!["unix:gid:5".into()]),
        now: 201,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("plain"),
        &grant,
        &event("agent.updated", "admin", "plain"),
    )
    .await
    .unwrap();
    let entries = s.agents_with_selectors().await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name.as_str(), "plain");
    assert_eq!(entries[0].selectors, ["unix:gid:5"]);
}

pub(crate) async fn a_child_is_enabled_only_under_the_parent_that_spawned_it(s: &dyn Store) {
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    spawn(
        s,
        &child("planner-worker", "planner", &["read:customer"], 5000),
    )
    .await;
    let mut delete = event("agent.deleted", "admin", "planner");
    delete.time_ms = 200_000;
    s.delete_agent(&name("planner"), &delete).await.unwrap();
    let enable = AgentUpdate {
        status: Some(AgentStatus::Active),
        now: 300,
        ..AgentUpdate::default()
    };
    let update = |what: &str| event("agent.updated", "admin", what);

    // No parent at all.
    let head = audit_count(s).await;
    let err = s
        .update_agent(&name("planner-worker"), &enable, &update("w"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err:?}");

    // A new agent of the parent's name is not the parent.
    let newer = AgentRow {
        created_at: 250,
        updated_at: 250,
        ..agent("planner")
    };
    s.create_agent(&newer, &event("agent.created", "admin", "planner"))
        .await
        .unwrap();
    let head_after_create = audit_count(s).await;
    assert_eq!(head_after_create, head + 1);
    let err = s
        .update_agent(&name("planner-worker"), &enable, &update("w"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err:?}");
    assert_eq!(audit_count(s).await, head_after_create);
    assert_eq!(status(s, "planner-worker").await, AgentStatus::Disabled);

    // Under its own, re-enabled parent it comes back.
    spawn(
        s,
        &AgentRow {
            created_at: 260,
            ..child("planner-helper", "planner", &[], 5000)
        },
    )
    .await;
    let disable = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 270,
        ..AgentUpdate::default()
    };
    s.update_agent(&name("planner-helper"), &disable, &update("h"))
        .await
        .unwrap();
    s.update_agent(&name("planner-helper"), &enable, &update("h"))
        .await
        .unwrap();
    assert_eq!(status(s, "planner-helper").await, AgentStatus::Active);
}

pub(crate) async fn live_children_are_limited_per_parent(s: &dyn Store) {
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    let spawned = |name: &str| event("agent.spawned", "planner", name);
    let at = |row: AgentRow, t: i64| AgentRow {
        created_at: t,
        updated_at: t,
        ..row
    };
    let a = at(child("planner-a", "planner", &[], 5000), 200);
    s.spawn_agent(&a, 2, &spawned("a")).await.unwrap();
    // An expired child is not live.
    let old = at(child("planner-old", "planner", &[], 250), 200);
    s.spawn_agent(&old, 2, &spawned("old")).await.unwrap();
    let b = at(child("planner-b", "planner", &[], 5000), 300);
    s.spawn_agent(&b, 2, &spawned("b")).await.unwrap();

    let head = audit_count(s).await;
    let c = at(child("planner-c", "planner", &[], 5000), 300);
    let err = s.spawn_agent(&c, 2, &spawned("c")).await.unwrap_err();
    assert!(matches!(err, StoreError::TooManyChildren(2)), "{err:?}");
    assert_eq!(audit_count(s).await, head);
    assert!(s.agent(&name("planner-c")).await.unwrap().is_none());

    // A disabled child is not live either.
    let disable = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 300,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("planner-a"),
        &disable,
        &event("agent.revoked", "admin", "a"),
    )
    .await
    .unwrap();
    s.spawn_agent(&c, 2, &spawned("c")).await.unwrap();
}

pub(crate) async fn expired_spawned_agents_are_purged_with_their_grants(s: &dyn Store) {
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    let temp = AgentRow {
        expires_at: Some(500),
        ..agent("temp")
    };
    s.create_agent(&temp, &event("agent.created", "admin", "temp"))
        .await
        .unwrap();
    spawn(s, &child("planner-gone", "planner", &[], 500)).await;
    spawn(s, &child("planner-live", "planner", &[], 5000)).await;
    let grant = DelegationRow {
        from: agent_id("planner-gone"),
        to: agent_id("planner"),
        permissions: scope("read:customer"),
        created_at: 1,
    };
    s.put_delegation(&grant, &event("delegation.granted", "admin", "g"))
        .await
        .unwrap();

    assert_eq!(
        s.purge_expired(400).await.unwrap(),
        0,
        "nothing expired yet"
    );
    let head = audit_count(s).await;
    assert_eq!(s.purge_expired(600).await.unwrap(), 1);
    assert!(s.agent(&name("planner-gone")).await.unwrap().is_none());
    assert!(s.agent(&name("planner-live")).await.unwrap().is_some());
    assert!(
        s.agent(&name("temp")).await.unwrap().is_some(),
        "only spawned agents are purged"
    );
    assert!(
        s.delegations(&agent_id("planner-gone"))
            .await
            .unwrap()
            .is_empty()
    );
    let records = s
        .audit_records(&AuditFilter {
            since: head,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event.kind, AuditKind::AgentDeleted);
    assert_eq!(records[0].event.subject, agent_id("planner-gone").as_str());
    assert_chain_intact(s).await;
}

/// Reads every agent named, so that a store that keeps rows in memory holds
/// them all before the next write.
async fn read_all(s: &dyn Store, names: &[&str]) {
    for n in names {
        s.agent(&name(n)).await.unwrap();
    }
}

pub(crate) async fn every_write_is_seen_by_the_next_read_of_what_it_changed(s: &dyn Store) {
    let all = ["planner", "worker", "helper"];
    s.create_agent(
        &agent("planner"),
        &event("agent.created", "admin", "planner"),
    )
    .await
    .unwrap();
    spawn(s, &child("worker", "planner", &["read:customer"], 500)).await;
    spawn(s, &child("helper", "worker", &["read:customer"], 500)).await;
    read_all(s, &all).await;

    // Narrowing the parent narrows the grandchild held from before.
    let narrow = AgentUpdate {
        permissions: Some(scope("read:orders")),
        now: 100,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("planner"),
        &narrow,
        &event("agent.updated", "admin", "p"),
    )
    .await
    .unwrap();
    let helper = s.agent(&name("helper")).await.unwrap().unwrap();
    assert!(helper.permissions.is_empty(), "{:?}", helper.permissions);
    read_all(s, &all).await;

    // Disabling the parent disables its descendants as they are read next.
    let disable = AgentUpdate {
        status: Some(AgentStatus::Disabled),
        now: 200,
        ..AgentUpdate::default()
    };
    s.update_agent(
        &name("planner"),
        &disable,
        &event("agent.updated", "admin", "p"),
    )
    .await
    .unwrap();
    for n in all {
        assert_eq!(status(s, n).await, AgentStatus::Disabled, "{n}");
    }
    read_all(s, &all).await;

    // A deleted agent is gone, and a new one of that name is the new one.
    s.delete_agent(&name("helper"), &event("agent.deleted", "admin", "h"))
        .await
        .unwrap();
    assert!(s.agent(&name("helper")).await.unwrap().is_none());
    let renewed = AgentRow {
        description: "the second of that name".into(),
        ..agent("helper")
    };
    s.create_agent(&renewed, &event("agent.created", "admin", "h"))
        .await
        .unwrap();
    assert_eq!(s.agent(&name("helper")).await.unwrap(), Some(renewed));
    read_all(s, &all).await;

    // An expired spawned agent, once purged, is no longer found.
    s.purge_expired(600).await.unwrap();
    assert!(s.agent(&name("worker")).await.unwrap().is_none());

    // A key read as unrevoked is revoked on the next read after its revocation.
    let jkt = Jkt("jkt-held".into());
    assert!(!s.key_revoked(&jkt).await.unwrap());
    s.revoke_key(&jkt, &event("key.revoked", "admin", "jkt-held"))
        .await
        .unwrap();
    assert!(s.key_revoked(&jkt).await.unwrap());

    // So are a token and a task.
    assert!(!s.token_revoked("jti-held").await.unwrap());
    s.revoke_token(
        "jti-held",
        900,
        &event("token.revoked", "admin", "jti-held"),
    )
    .await
    .unwrap();
    assert!(s.token_revoked("jti-held").await.unwrap());
    let txn = TaskId::new("task-held").unwrap();
    assert!(!s.task_revoked(&txn).await.unwrap());
    s.revoke_task(&txn, 900, &event("task.revoked", "admin", "task-held"))
        .await
        .unwrap();
    assert!(s.task_revoked(&txn).await.unwrap());
}

pub(crate) async fn a_rotated_key_keeps_the_previous_one_for_its_grace_and_no_longer(
    s: &dyn Store,
) {
    let created = event("agent.created", "admin", "rotating");
    s.create_agent(&agent("rotating"), &created).await.unwrap();
    let old = agent("rotating").public_jwk;
    let new = json!({"kty": "OKP", "crv": "Ed25519", "x": "new-key-1"});
    let id = agent_id("rotating");
    let rotated = event("agent.key_rotated", "admin", "rotating");
    let before = audit_count(s).await;

    // The new key is the agent's, unless it is the one it has already.
    let same = s
        .rotate_agent_key(&name("rotating"), &old, 700, &rotated)
        .await;
    assert!(matches!(same, Err(StoreError::Conflict(_))), "{same:?}");
    let missing = s
        .rotate_agent_key(&name("nobody"), &new, 700, &rotated)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(
        audit_count(s).await,
        before,
        "a refused rotation writes nothing"
    );

    let now = s
        .rotate_agent_key(&name("rotating"), &new, 700, &rotated)
        .await
        .unwrap();
    assert_eq!(now.public_jwk, new);
    let read = s.agent(&name("rotating")).await.unwrap().unwrap();
    assert_eq!(read.public_jwk, new, "read after the rotation");
    assert_eq!(audit_count(s).await, before + 1);
    assert_eq!(
        s.previous_agent_key(&id, 699).await.unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        s.previous_agent_key(&id, 700).await.unwrap(),
        None,
        "grace over"
    );

    // A second rotation keeps only the key it replaces.
    let newer = json!({"kty": "OKP", "crv": "Ed25519", "x": "new-key-2"});
    s.rotate_agent_key(&name("rotating"), &newer, 900, &rotated)
        .await
        .unwrap();
    assert_eq!(s.previous_agent_key(&id, 800).await.unwrap(), Some(new));

    // Deleted with the agent: a new agent of the name inherits no old key.
    let deleted = event("agent.deleted", "admin", "rotating");
    s.delete_agent(&name("rotating"), &deleted).await.unwrap();
    assert_eq!(s.previous_agent_key(&id, 800).await.unwrap(), None);
    s.create_agent(&agent("rotating"), &created).await.unwrap();
    assert_eq!(s.previous_agent_key(&id, 800).await.unwrap(), None);
}
