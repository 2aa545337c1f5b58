//! Suite cases: key revocations on the feed.

use super::*;

pub(crate) async fn revoked_keys_are_known_and_published(s: &dyn Store) {
    assert!(!s.key_revoked(&Jkt("jkt-1".into())).await.unwrap());
    s.revoke_key(
        &Jkt("jkt-1".into()),
        &event("key.revoked", "admin", "jkt-1"),
    )
    .await
    .unwrap();
    assert!(s.key_revoked(&Jkt("jkt-1".into())).await.unwrap());
    assert!(!s.key_revoked(&Jkt("jkt-2".into())).await.unwrap());
    let feed = s.revocations_since(0, 10).await.unwrap();
    assert_eq!(
        (feed[0].kind, feed[0].subject.as_str()),
        (RevocationKind::Key, "jkt-1")
    );
}

/// A token of `client` for `audience` exchanged from `parent` (if any).
fn hop(jti: &str, client: &str, audience: &str, parent: Option<&str>) -> IssuedToken {
    IssuedToken {
        client_id: agent_id(client),
        audience: agent_id(audience),
        parent_jti: parent.map(Into::into),
        ..issued(jti)
    }
}

async fn store_token(s: &dyn Store, token: &IssuedToken) {
    s.issue_token(
        &used(&format!("assertion-{}", token.jti)),
        token,
        None,
        &event("token.issued", "c", &token.jti),
    )
    .await
    .unwrap();
}

pub(crate) async fn revoking_a_key_revokes_every_token_it_authenticated_or_binds(s: &dyn Store) {
    let key = |t: &str| Jkt(format!("{t:A<43}"));
    // Authenticated by the agent key, bound to a DPoP key.
    let dpop = IssuedToken {
        auth_jkt: Some(key("agent")),
        cnf_jkt: Some(key("dpop")),
        ..issued("dpop-bound")
    };
    // Exchanged from it by the next hop, with that hop's own key.
    let next = IssuedToken {
        parent_jti: Some("dpop-bound".into()),
        auth_jkt: Some(key("next")),
        cnf_jkt: Some(key("next")),
        ..issued("next-hop")
    };
    let bound_only = IssuedToken {
        auth_jkt: Some(key("other")),
        cnf_jkt: Some(key("agent")),
        ..issued("bound-only")
    };
    let unrelated = IssuedToken {
        auth_jkt: Some(key("other")),
        cnf_jkt: Some(key("other")),
        ..issued("unrelated")
    };
    let expired = IssuedToken {
        auth_jkt: Some(key("agent")),
        expires_at: 50,
        ..issued("expired")
    };
    for t in [&dpop, &next, &bound_only, &unrelated, &expired] {
        store_token(s, t).await;
    }
    let mut revoke = event("key.revoked", "admin", "agent");
    revoke.time_ms = 100_000;
    s.revoke_key(&key("agent"), &revoke).await.unwrap();
    for jti in ["dpop-bound", "next-hop", "bound-only"] {
        assert!(s.token_revoked(jti).await.unwrap(), "{jti}");
    }
    assert!(!s.token_revoked("unrelated").await.unwrap());
    assert!(
        !s.token_revoked("expired").await.unwrap(),
        "expired: no entry"
    );
    assert!(s.key_revoked(&key("agent")).await.unwrap());
    let feed = s.revocations_since(0, 100).await.unwrap();
    assert_eq!(feed.len(), 4, "the key and three tokens: {feed:?}");
    assert_chain_intact(s).await;
}

pub(crate) async fn deleting_an_agent_revokes_every_token_whose_chain_names_it(s: &dyn Store) {
    for n in ["a", "b", "c", "d"] {
        s.create_agent(&agent(n), &event("agent.created", "admin", n))
            .await
            .unwrap();
    }
    // a → b → c → d, each hop exchanged from the one before.
    store_token(s, &hop("ab", "a", "b", None)).await;
    store_token(s, &hop("bc", "b", "c", Some("ab"))).await;
    store_token(s, &hop("cd", "c", "d", Some("bc"))).await;
    store_token(s, &hop("ad", "a", "d", None)).await;
    let mut delete = event("agent.deleted", "admin", "b");
    delete.time_ms = 100_000;
    s.delete_agent(&name("b"), &delete).await.unwrap();
    for jti in ["ab", "bc", "cd"] {
        assert!(s.token_revoked(jti).await.unwrap(), "{jti}");
    }
    assert!(
        !s.token_revoked("ad").await.unwrap(),
        "its chain names no b"
    );

    // A new agent named b is a new identity: the old chain stays revoked.
    s.create_agent(&agent("b"), &event("agent.created", "admin", "b"))
        .await
        .unwrap();
    assert!(s.token_revoked("cd").await.unwrap());
}
