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
