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
