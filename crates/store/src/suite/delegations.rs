//! Suite cases: delegation grants.

use super::*;

pub(crate) async fn delegation_grants_are_stored_replaced_and_removed(s: &dyn Store) {
    let grant = DelegationRow {
        from: agent_id("planner"),
        to: agent_id("executor"),
        permissions: scope("read:db"),
        created_at: 1,
    };
    s.put_delegation(&grant, &event("delegation.granted", "admin", "planner"))
        .await
        .unwrap();
    let wider = DelegationRow {
        permissions: scope("read:db write:db"),
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
