//! Suite cases: bootstrap settings and signing keys.

use super::*;

pub(crate) async fn settings_keep_the_first_value(s: &dyn Store) {
    assert_eq!(s.setting("k").await.unwrap(), None);
    assert_eq!(s.init_setting("k", "first").await.unwrap(), "first");
    assert_eq!(s.init_setting("k", "second").await.unwrap(), "first");
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("first"));
}

pub(crate) async fn signing_keys_round_trip(s: &dyn Store) {
    let key = SigningKeyRow {
        kid: "k1".into(),
        alg: "EdDSA".into(),
        public_jwk: "{}".into(),
        sealed_private: "sealed".into(),
        created_at: 5,
    };
    s.add_signing_key(&key).await.unwrap();
    assert_eq!(s.signing_keys().await.unwrap(), [key]);
}
