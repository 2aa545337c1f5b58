//! Suite cases: policy set versions and activation.

use super::*;

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
