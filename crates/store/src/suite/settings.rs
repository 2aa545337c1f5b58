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
