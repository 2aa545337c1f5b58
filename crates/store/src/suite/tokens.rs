//! Suite cases: issued tokens, the single use of client assertions, and token revocation.

use super::*;

pub(crate) async fn revoking_a_token_cascades_to_every_token_exchanged_from_it(s: &dyn Store) {
    let used = |jti: &str| UsedAssertion {
        client_id: "c".into(),
        jti: jti.into(),
        expires_at: 160,
    };
    let child = |jti: &str, parent: &str| IssuedToken {
        parent_jti: Some(parent.into()),
        txn: Some(TaskId::new("t1").unwrap()),
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
    assert!(s.task_exists(&TaskId::new("t1").unwrap()).await.unwrap());
    assert!(!s.task_exists(&TaskId::new("t2").unwrap()).await.unwrap());
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
