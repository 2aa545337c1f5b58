//! Suite cases: bootstrap settings and signing keys.

use super::*;

pub(crate) async fn a_reachable_store_answers_a_ping(s: &dyn Store) {
    s.ping().await.unwrap();
}

pub(crate) async fn settings_keep_the_first_value(s: &dyn Store) {
    assert_eq!(s.setting("k").await.unwrap(), None);
    assert_eq!(s.init_setting("k", "first").await.unwrap(), "first");
    assert_eq!(s.init_setting("k", "second").await.unwrap(), "first");
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("first"));
}

pub(crate) async fn a_setting_is_replaced_only_from_the_value_expected(s: &dyn Store) {
    s.init_setting("k", "first").await.unwrap();
    let rotated = event("admin.credential_rotated", "admin", "k");
    assert!(
        !s.replace_setting("k", "stale", "third", &rotated)
            .await
            .unwrap()
    );
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("first"));
    assert_eq!(audit_count(s).await, 0, "a refused swap writes nothing");
    assert!(
        s.replace_setting("k", "first", "second", &rotated)
            .await
            .unwrap()
    );
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("second"));
    assert_eq!(audit_count(s).await, 1);
    assert!(
        !s.replace_setting("k", "first", "again", &rotated)
            .await
            .unwrap()
    );
}

pub(crate) async fn signing_keys_round_trip(s: &dyn Store) {
    let key = |kid: &str, created_at| SigningKeyRow {
        kid: kid.into(),
        alg: "EdDSA".into(),
        public_jwk: "{}".into(),
        sealed_private: "sealed".into(),
        created_at,
        signs_from: created_at + 600,
    };
    let added = event("signing_key.added", "admin", "k");
    s.add_signing_key(&key("k2", 7), None).await.unwrap();
    assert_eq!(audit_count(s).await, 0);
    s.add_signing_key(&key("k1", 5), Some(&added))
        .await
        .unwrap();
    assert_eq!(
        s.signing_keys().await.unwrap(),
        [key("k1", 5), key("k2", 7)]
    );
    assert_eq!(audit_count(s).await, 1, "the key is audited with it");

    // A key ID taken already is refused, and neither the key nor its audit
    // record is written.
    let again = s.add_signing_key(&key("k1", 9), Some(&added)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        s.signing_keys().await.unwrap(),
        [key("k1", 5), key("k2", 7)]
    );
    assert_eq!(audit_count(s).await, 1);
}

pub(crate) async fn a_reseal_replaces_every_key_or_writes_nothing(s: &dyn Store) {
    let key = |kid: &str, sealed: &str| SigningKeyRow {
        kid: kid.into(),
        alg: "EdDSA".into(),
        public_jwk: "{}".into(),
        sealed_private: sealed.into(),
        created_at: 5,
        signs_from: 5,
    };
    s.add_signing_key(&key("k1", "old-1"), None).await.unwrap();
    s.add_signing_key(&key("k2", "old-2"), None).await.unwrap();
    let rotated = event("master_key.rotated", "cli:ops", "master key");
    let root = [("audit_root_sealed".to_owned(), "sealed-root".to_owned())];

    // Missing a key (one added since the rotation read them) or naming an
    // unknown one refuses the whole rotation.
    for keys in [
        vec![("k1".to_owned(), "new-1".to_owned())],
        vec![
            ("k1".to_owned(), "new-1".to_owned()),
            ("k3".to_owned(), "new-3".to_owned()),
        ],
    ] {
        let refused = s.reseal(&keys, &root, &rotated).await;
        assert!(matches!(refused, Err(StoreError::Stale(_))), "{refused:?}");
        assert_eq!(
            s.signing_keys().await.unwrap(),
            [key("k1", "old-1"), key("k2", "old-2")]
        );
        assert_eq!(s.setting("audit_root_sealed").await.unwrap(), None);
        assert_eq!(audit_count(s).await, 0);
    }

    let keys = [
        ("k1".to_owned(), "new-1".to_owned()),
        ("k2".to_owned(), "new-2".to_owned()),
    ];
    s.reseal(&keys, &root, &rotated).await.unwrap();
    assert_eq!(
        s.signing_keys().await.unwrap(),
        [key("k1", "new-1"), key("k2", "new-2")]
    );
    assert_eq!(
        s.setting("audit_root_sealed").await.unwrap().as_deref(),
        Some("sealed-root")
    );
    assert_eq!(audit_count(s).await, 1);
    // A second rotation replaces the sealed root.
    let again = [("audit_root_sealed".to_owned(), "sealed-again".to_owned())];
    s.reseal(&keys, &again, &rotated).await.unwrap();
    assert_eq!(
        s.setting("audit_root_sealed").await.unwrap().as_deref(),
        Some("sealed-again")
    );
}
