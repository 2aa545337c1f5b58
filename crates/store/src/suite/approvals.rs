//! Suite cases for approvals: creation, lookup, polling, decisions, and their single use.

use super::*;

const READER: &str = "spiffe://agentauth.local/agent/reader";
const CUSTOMER: &str = "spiffe://agentauth.local/agent/customer";

fn spiffe(uri: &str) -> SpiffeId {
    SpiffeId::parse(uri).unwrap()
}

fn task(txn: &str) -> TaskId {
    TaskId::new(txn).unwrap()
}

/// The request context every test approval binds.
const CONTEXT: &str = r#"{"amount":5,"currency":"EUR"}"#;

/// A pending approval of `write:customer` for the reader, created at
/// `created_at` and void 300 seconds later.
fn approval(id: &str, created_at: i64) -> ApprovalRow {
    ApprovalRow {
        id: id.into(),
        agent: spiffe(READER),
        subject: spiffe(READER),
        audience: spiffe(CUSTOMER),
        scope: scope("write:customer"),
        txn: Some(task("t1")),
        purpose: "refund order 7".into(),
        grant_type: "client_credentials".into(),
        request_context: CONTEXT.into(),
        lifetime: 60,
        lineage: spiffe(READER),
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
    s.create_approval(
        row,
        &event("approval.requested", row.agent.as_str(), &row.id),
    )
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
    s.decide_approval(id, decision, &event("approval.approved", &decision.by, id))
        .await
}

/// Keeps a test value for the rest of the run, so requests can borrow it.
fn kept<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// The reader's own client_credentials request.
fn request(
    audience: &str,
    scope: &str,
    purpose: &str,
    txn: Option<&str>,
) -> ApprovalRequest<'static> {
    let reader = kept(spiffe(READER));
    ApprovalRequest {
        agent: reader,
        subject: reader,
        audience: kept(spiffe(audience)),
        scope: kept(self::scope(scope)),
        purpose: kept(purpose.to_owned()),
        grant_type: "client_credentials",
        txn: txn.map(|t| kept(task(t))),
        request_context: CONTEXT,
        lifetime: 60,
    }
}

/// The pending approval for the reader's `write:customer` request, as its ID.
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

pub(crate) async fn pending_approvals_are_counted_per_lineage(s: &dyn Store) {
    assert_eq!(
        s.pending_approval_count(&spiffe(READER), 100)
            .await
            .unwrap(),
        0
    );
    create_approval(s, &approval("ap-1", 100)).await;
    create_approval(s, &approval("ap-2", 150)).await;
    let mut other = approval("ap-3", 100);
    other.agent = spiffe(CUSTOMER);
    other.lineage = spiffe(CUSTOMER);
    create_approval(s, &other).await;
    // A child the reader spawned counts against the reader's lineage.
    let mut child = approval("ap-4", 100);
    child.agent = spiffe("spiffe://agentauth.local/agent/reader-helper");
    create_approval(s, &child).await;
    assert_eq!(
        s.pending_approval_count(&spiffe(READER), 200)
            .await
            .unwrap(),
        3
    );
    decide(s, "ap-4", &decision(ApprovalStatus::Denied, "alice", 200))
        .await
        .unwrap();
    assert_eq!(
        s.pending_approval_count(&spiffe(READER), 200)
            .await
            .unwrap(),
        2
    );
    decide(s, "ap-1", &decision(ApprovalStatus::Approved, "alice", 210))
        .await
        .unwrap();
    assert_eq!(
        s.pending_approval_count(&spiffe(READER), 220)
            .await
            .unwrap(),
        1
    );
    // ap-2 expires at 450.
    assert_eq!(
        s.pending_approval_count(&spiffe(READER), 450)
            .await
            .unwrap(),
        0
    );
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
        agent: spiffe(CUSTOMER),
        lineage: spiffe(CUSTOMER),
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
        subject: kept(spiffe(CUSTOMER)),
        ..request(CUSTOMER, scope, purpose, None)
    };
    assert!(s.pending_approval(&on_behalf, 200).await.unwrap().is_none());
    let other_context = ApprovalRequest {
        request_context: r#"{"amount":5000,"currency":"EUR"}"#,
        ..request(CUSTOMER, scope, purpose, None)
    };
    assert!(
        s.pending_approval(&other_context, 200)
            .await
            .unwrap()
            .is_none()
    );
    let longer = ApprovalRequest {
        lifetime: 3600,
        ..request(CUSTOMER, scope, purpose, None)
    };
    assert!(s.pending_approval(&longer, 200).await.unwrap().is_none());

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
        scope: scope("write:customer"),
        issued_at,
        expires_at: issued_at + 300,
        txn: Some(task(txn)),
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
    assert!(s.task_exists(&TaskId::new("t1").unwrap()).await.unwrap());
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
    assert!(
        !s.task_exists(&TaskId::new("t2").unwrap()).await.unwrap(),
        "no second token"
    );
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
    assert!(!s.task_exists(&TaskId::new("t3").unwrap()).await.unwrap());
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
            kind: AuditKind::parse("approval.denied"),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(audit_count(s).await, 2);
}

pub(crate) async fn deleting_an_agent_removes_its_grants_and_expires_its_approvals(s: &dyn Store) {
    for n in ["reader", "customer", "other"] {
        s.create_agent(&agent(n), &event("agent.created", "admin", n))
            .await
            .unwrap();
    }
    for (from, to) in [
        ("reader", "customer"),
        ("other", "reader"),
        ("other", "customer"),
    ] {
        let grant = DelegationRow {
            from: agent_id(from),
            to: agent_id(to),
            permissions: scope("read:customer"),
            created_at: 1,
        };
        s.put_delegation(&grant, &event("delegation.granted", "admin", from))
            .await
            .unwrap();
    }
    create_approval(s, &approval("waiting", 100)).await;
    create_approval(s, &approval("approved", 100)).await;
    decide(
        s,
        "approved",
        &decision(ApprovalStatus::Approved, "alice", 110),
    )
    .await
    .unwrap();
    let someone_else = ApprovalRow {
        agent: agent_id("other"),
        subject: agent_id("other"),
        ..approval("unrelated", 100)
    };
    create_approval(s, &someone_else).await;

    let mut delete = event("agent.deleted", "admin", "reader");
    delete.time_ms = 150_000;
    s.delete_agent(&name("reader"), &delete).await.unwrap();

    assert!(s.delegations(&agent_id("reader")).await.unwrap().is_empty());
    let left = s.delegations(&agent_id("other")).await.unwrap();
    assert_eq!(
        left.iter().map(|g| g.to.clone()).collect::<Vec<_>>(),
        [agent_id("customer")],
        "the grant to the deleted agent is gone, others stay"
    );
    for id in ["waiting", "approved"] {
        let row = s.approval(id).await.unwrap().unwrap();
        assert_eq!(row.expires_at, 150, "{id} expired at the deletion");
    }
    assert_eq!(
        s.approval("unrelated").await.unwrap().unwrap().expires_at,
        400
    );
    // A new agent of the name cannot redeem the old approval.
    s.create_agent(&agent("reader"), &event("agent.created", "admin", "reader"))
        .await
        .unwrap();
    let err = s
        .issue_token(
            &assertion("late"),
            &approved_token("late", 160, "t1"),
            Some("approved"),
            &event("token.issued", READER, "late"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err:?}");
    assert_chain_intact(s).await;
}
