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
    assert!(matches!(err, Err(StoreError::SubjectRevoked)));
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

/// What one concurrent issuance should come to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Issued,
    Replayed,
    TaskOfAnother,
    ParentRevoked,
}

fn outcome(result: &Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Issued,
        Err(StoreError::ReplayedAssertion) => Outcome::Replayed,
        Err(StoreError::TaskOfAnother(_)) => Outcome::TaskOfAnother,
        Err(StoreError::SubjectRevoked) => Outcome::ParentRevoked,
        Err(e) => panic!("unexpected store error: {e}"),
    }
}

/// Many issuances at once (so the writer records them in shared
/// transactions) keep each its own outcome: fresh ones are issued, a
/// replayed assertion, a task another agent started and a revoked subject
/// token refuse only their own issuance, and every issued token, and no
/// refused one, has its audit record on one intact chain.
pub(crate) async fn concurrent_issuances_each_keep_their_own_outcome(s: Arc<dyn Store>) {
    let other = agent_id("other");
    let task = |txn: &str| Some(TaskId::new(txn).unwrap());
    let exchanged = |jti: &str, parent: &str| IssuedToken {
        parent_jti: Some(parent.into()),
        ..issued(jti)
    };
    // Before: a used assertion, a task of another agent, a revoked token.
    s.issue_token(
        &used("before"),
        &issued("root"),
        None,
        &event("token.issued", "c", "root"),
    )
    .await
    .unwrap();
    let of_other = IssuedToken {
        client_id: other.clone(),
        subject: other.clone(),
        txn: task("taken"),
        ..issued("other-root")
    };
    s.issue_token(
        &used("o1"),
        &of_other,
        None,
        &event("token.issued", "c", "other-root"),
    )
    .await
    .unwrap();
    s.issue_token(
        &used("d1"),
        &issued("dead"),
        None,
        &event("token.issued", "c", "dead"),
    )
    .await
    .unwrap();
    s.revoke_token("dead", 400, &event("token.revoked", "admin", "dead"))
        .await
        .unwrap();
    let before = audit_count(&*s).await;

    let mut cases: Vec<(UsedAssertion, IssuedToken, Option<Outcome>)> = (0..48)
        .map(|i| {
            (
                used(&format!("fresh{i}")),
                issued(&format!("fresh{i}")),
                Some(Outcome::Issued),
            )
        })
        .collect();
    cases.push((
        used("before"),
        issued("replay-old"),
        Some(Outcome::Replayed),
    ));
    // Two uses of one assertion in flight together: exactly one is issued.
    cases.push((used("twice"), issued("twice-a"), None));
    cases.push((used("twice"), issued("twice-b"), None));
    let taken = IssuedToken {
        txn: task("taken"),
        ..issued("joins-taken")
    };
    cases.push((used("task"), taken, Some(Outcome::TaskOfAnother)));
    // Two agents starting one new task together: exactly one starts it.
    let ours = IssuedToken {
        txn: task("contested"),
        ..issued("contested-ours")
    };
    let theirs = IssuedToken {
        client_id: other.clone(),
        subject: other.clone(),
        txn: task("contested"),
        ..issued("contested-theirs")
    };
    cases.push((used("contest-a"), ours, None));
    cases.push((used("contest-b"), theirs, None));
    cases.push((
        used("late"),
        exchanged("late", "dead"),
        Some(Outcome::ParentRevoked),
    ));
    cases.push((
        used("child"),
        exchanged("child", "root"),
        Some(Outcome::Issued),
    ));

    let start = Arc::new(tokio::sync::Barrier::new(cases.len()));
    let running: Vec<_> = cases
        .iter()
        .cloned()
        .map(|(assertion, token, _)| {
            let (s, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let audit = event("token.issued", "c", &token.jti);
                s.issue_token(&assertion, &token, None, &audit).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(running.len());
    for r in running {
        results.push(outcome(&r.await.unwrap()));
    }

    let mut issued_jtis = std::collections::BTreeSet::new();
    for ((_, token, expected), got) in cases.iter().zip(&results) {
        if let Some(expected) = expected {
            assert_eq!(got, expected, "token {}", token.jti);
        }
        if *got == Outcome::Issued {
            issued_jtis.insert(token.jti.clone());
        }
    }
    let pair = |a: &str, b: &str| {
        let find = |jti: &str| results[cases.iter().position(|c| c.1.jti == jti).unwrap()];
        let mut two = [find(a), find(b)];
        two.sort_by_key(|o| *o as u8);
        two
    };
    assert_eq!(
        pair("twice-a", "twice-b"),
        [Outcome::Issued, Outcome::Replayed]
    );
    assert_eq!(
        pair("contested-ours", "contested-theirs"),
        [Outcome::Issued, Outcome::TaskOfAnother]
    );

    // Exactly the issued tokens were audited, on one intact chain.
    let records = s
        .audit_records(&AuditFilter {
            limit: 1_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let audited: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| r.seq > before)
        .map(|r| r.event.subject.clone())
        .collect();
    assert_eq!(audited, issued_jtis);
    assert_eq!(audit_count(&*s).await, before + issued_jtis.len() as i64);
    assert_chain_intact(&*s).await;
    // The winner of the contested task owns it; the child's record exists,
    // so revoking its parent reaches it.
    let owner = s
        .task_owner(&TaskId::new("contested").unwrap())
        .await
        .unwrap();
    let winner = if issued_jtis.contains("contested-ours") {
        agent_id("reader")
    } else {
        other
    };
    assert_eq!(owner, Some(winner));
    let mut revoke = event("token.revoked", "admin", "root");
    revoke.time_ms = 100_000;
    s.revoke_token("root", 400, &revoke).await.unwrap();
    assert!(s.token_revoked("child").await.unwrap());
    // A refused issuance leaves its assertion unused; an issued one used it.
    for jti in ["task", "late"] {
        s.consume_assertion(&used(jti)).await.unwrap();
    }
    for jti in ["fresh0", "twice", "child"] {
        assert!(matches!(
            s.consume_assertion(&used(jti)).await,
            Err(StoreError::ReplayedAssertion)
        ));
    }
}

/// Over its queue's bound, the issuance writer refuses at once rather than
/// queue without end: with the writer held up (here by a transaction that
/// keeps SQLite's write lock), the issuances beyond the bound are refused
/// `Overloaded` straight away, nothing of them is written and their
/// assertions stay unused; every issuance let in is recorded once the
/// writer moves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_issuance_queue_refuses_at_once_and_writes_nothing_of_the_refused() {
    use crate::sql::{Backend, QUEUE_BOUND};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("test.db"))
            .await
            .unwrap(),
    );
    store.set_audit_key(test_audit_key());
    let held = store.begin().await.unwrap();

    // Enough to fill one batch in the writer's hands, the queue, and more.
    let beyond = 64;
    let total = QUEUE_BOUND + 256 + beyond;
    let mut pending = Vec::with_capacity(total);
    for i in 0..total {
        let store = store.clone();
        pending.push(tokio::spawn(async move {
            let jti = format!("t{i}");
            let outcome = store
                .issue_token(
                    &used(&jti),
                    &issued(&jti),
                    None,
                    &event("token.issued", "c", &jti),
                )
                .await;
            (jti, outcome)
        }));
    }
    // The refusals come while the writer is still held up.
    let mut refused = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while refused.len() < beyond {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} refusals within 30 s",
            refused.len()
        );
        let finished: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].is_finished())
            .collect();
        for i in finished.into_iter().rev() {
            let (jti, outcome) = pending.swap_remove(i).await.unwrap();
            assert!(
                matches!(outcome, Err(StoreError::Overloaded)),
                "{jti} finished while the writer was held: {outcome:?}"
            );
            refused.push(jti);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(audit_count(&*store).await, 0, "nothing written yet");

    drop(held);
    let mut recorded = 0;
    for task in pending {
        let (jti, outcome) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("an issuance let into the queue is recorded once the writer moves")
            .unwrap();
        match outcome {
            Ok(()) => recorded += 1,
            Err(StoreError::Overloaded) => refused.push(jti),
            Err(e) => panic!("{jti}: {e:?}"),
        }
    }
    assert!(refused.len() >= beyond && recorded >= QUEUE_BOUND);
    assert_eq!(recorded + refused.len(), total);
    assert_eq!(audit_count(&*store).await, i64::try_from(recorded).unwrap());
    // A refused issuance used nothing up: the same assertion goes through now.
    let again = &refused[0];
    store
        .issue_token(
            &used(again),
            &issued(again),
            None,
            &event("token.issued", "c", again),
        )
        .await
        .unwrap();
}
