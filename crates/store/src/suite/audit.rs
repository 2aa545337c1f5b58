//! Suite cases: the hash-chained audit log.

use super::*;

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
        kind: AuditKind::parse("request.denied"),
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
