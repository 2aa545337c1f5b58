//! Suite cases for tasks: revocation and the audit trail of one task.

use super::*;

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
    let records = s.task_records(&TaskId::new("t1").unwrap()).await.unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(records[0].event, hop);
    assert_chain_intact(s).await;
    assert!(!s.task_revoked(&TaskId::new("t1").unwrap()).await.unwrap());
    s.revoke_task(
        &TaskId::new("t1").unwrap(),
        500,
        &event("task.revoked", "admin", "t1"),
    )
    .await
    .unwrap();
    assert!(s.task_revoked(&TaskId::new("t1").unwrap()).await.unwrap());
    let feed = s.revocations_since(0, 10).await.unwrap();
    assert_eq!(
        (feed[0].kind, feed[0].subject.as_str()),
        (RevocationKind::Task, "t1")
    );
}

pub(crate) async fn a_task_belongs_to_the_agent_that_started_it(s: &dyn Store) {
    let t1 = TaskId::new("t1").unwrap();
    let started = IssuedToken {
        txn: Some(t1.clone()),
        ..issued("root")
    };
    assert_eq!(s.task_owner(&t1).await.unwrap(), None);
    s.issue_token(
        &used("a1"),
        &started,
        None,
        &event("token.issued", "c", "root"),
    )
    .await
    .unwrap();
    assert_eq!(s.task_owner(&t1).await.unwrap(), Some(agent_id("reader")));
    assert!(s.task_exists(&t1).await.unwrap());

    // The owner's next token joins its own task.
    let again = IssuedToken {
        txn: Some(t1.clone()),
        ..issued("again")
    };
    s.issue_token(
        &used("a2"),
        &again,
        None,
        &event("token.issued", "c", "again"),
    )
    .await
    .unwrap();

    // Another agent's client_credentials token in the task changes nothing.
    let head = audit_count(s).await;
    let intruder = IssuedToken {
        client_id: agent_id("mallory"),
        subject: agent_id("mallory"),
        txn: Some(t1.clone()),
        ..issued("intruder")
    };
    let err = s
        .issue_token(
            &used("a3"),
            &intruder,
            None,
            &event("token.issued", "m", "x"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TaskOfAnother(ref t) if t == "t1"),
        "{err:?}"
    );
    assert_eq!(audit_count(s).await, head);
    assert_eq!(s.task_owner(&t1).await.unwrap(), Some(agent_id("reader")));
    s.consume_assertion(&used("a3"))
        .await
        .expect("the refused request did not use its assertion");

    // An exchanged token joins the task whoever presents it.
    let exchanged = IssuedToken {
        client_id: agent_id("mallory"),
        parent_jti: Some("root".into()),
        txn: Some(t1.clone()),
        ..issued("hop")
    };
    s.issue_token(
        &used("a4"),
        &exchanged,
        None,
        &event("token.exchanged", "m", "hop"),
    )
    .await
    .unwrap();
    assert_eq!(s.task_owner(&t1).await.unwrap(), Some(agent_id("reader")));
}
