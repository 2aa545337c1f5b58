//! The authority's token-signing keys and the key-encryption key that seals
//! them at rest.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use agentauth_api::{Jwk, Jwks, KeyRotation, SigningKeyList, SigningKeyView};
use agentauth_core::{
    AuditKey, PublicJwk, SigningKey, b64url_decode, b64url_encode, random_bytes, unix_now,
};
use agentauth_store::{SigningKeyRow, Store};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde_json::Value;

use crate::audit::request_id;
use crate::body::JsonBody;
use crate::server::{AppState, State as Authority};
use crate::{AuthorityError, Principal};

/// Environment variable that supplies the key-encryption key instead of the file.
pub const MASTER_KEY_ENV: &str = "AGENTAUTH_MASTER_KEY";
/// File name of the key-encryption key inside the data dir.
/// File in the data dir that holds the master key (unless given in the environment).
pub(crate) const MASTER_KEY_FILE: &str = "master.key";
/// Version prefix of sealed blobs, so the format can change later.
const SEALED_PREFIX: &str = "v1.";

/// The key-encryption key (AES-256-GCM) that seals private keys in the
/// store, and the audit key derived from it.
pub struct MasterKey {
    aead: LessSafeKey,
    /// The key itself: the audit root until the first master-key rotation.
    bytes: [u8; 32],
}

/// Setting that holds the audit root sealed under the master key, once the
/// master key has been rotated: audit keys derive from the first master
/// key for good, so records written before a rotation still verify.
pub(crate) const AUDIT_ROOT_SETTING: &str = "audit_root_sealed";
/// What the sealed audit root is bound to.
pub(crate) const AUDIT_ROOT_CONTEXT: &str = "audit-root";

impl MasterKey {
    /// Reads an existing key from `from_env` or `<data_dir>/master.key`
    /// without ever creating one: for tools that check what the authority wrote.
    pub fn load(data_dir: &Path, from_env: Option<&str>) -> Result<Self, AuthorityError> {
        let path = data_dir.join(MASTER_KEY_FILE);
        if from_env.is_none() && !path.exists() {
            return Err(AuthorityError::Internal(format!(
                "no master key: {} does not exist and {MASTER_KEY_ENV} is not set",
                path.display()
            )));
        }
        Self::load_or_create(data_dir, from_env)
    }

    /// The key that authenticates audit records: HKDF of the audit root,
    /// which is this key until the first rotation, and after that the
    /// first master key, kept sealed in the store under the current one.
    pub async fn audit_key(&self, store: &dyn Store) -> Result<AuditKey, AuthorityError> {
        Ok(AuditKey::derive(&self.audit_root(store).await?))
    }

    /// The secret audit keys derive from (see [`MasterKey::audit_key`]).
    pub(crate) async fn audit_root(&self, store: &dyn Store) -> Result<Vec<u8>, AuthorityError> {
        match store.setting(AUDIT_ROOT_SETTING).await? {
            Some(sealed) => self.open(AUDIT_ROOT_CONTEXT, &sealed),
            None => Ok(self.bytes.to_vec()),
        }
    }

    /// A fresh random key and its base64url text, as `master.key` holds it.
    pub(crate) fn generate() -> (Self, String) {
        let encoded = b64url_encode(random_bytes(32));
        let key = Self::decode(&encoded).expect("32 random bytes make a key");
        (key, encoded)
    }

    /// The key from its base64url text (32 bytes).
    pub(crate) fn decode(encoded: &str) -> Result<Self, AuthorityError> {
        let bytes: [u8; 32] = b64url_decode(encoded.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                AuthorityError::Internal("the master key must be 32 bytes, base64url".into())
            })?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| AuthorityError::Internal("the master key is unusable".into()))?;
        Ok(Self {
            aead: LessSafeKey::new(key),
            bytes,
        })
    }

    /// Reads the key from `AGENTAUTH_MASTER_KEY` (base64url, 32 bytes) or
    /// `<data_dir>/master.key`, creating the file (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path, from_env: Option<&str>) -> Result<Self, AuthorityError> {
        let encoded = match from_env {
            Some(v) => v.trim().to_owned(),
            None => {
                let path = data_dir.join(MASTER_KEY_FILE);
                if path.exists() {
                    std::fs::read_to_string(&path)
                        .map_err(|e| {
                            AuthorityError::Internal(format!("reading {}: {e}", path.display()))
                        })?
                        .trim()
                        .to_owned()
                } else {
                    let fresh = b64url_encode(random_bytes(32));
                    crate::files::write_private(&path, fresh.as_bytes())?;
                    fresh
                }
            }
        };
        Self::decode(&encoded)
    }

    /// Encrypts `plaintext`, binding it to `context` (the key ID).
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] =
            random_bytes(NONCE_LEN).try_into().expect("NONCE_LEN bytes");
        let mut buffer = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context),
                &mut buffer,
            )
            .expect("AES-GCM sealing of a small buffer succeeds");
        let mut out = nonce_bytes.to_vec();
        out.extend(buffer);
        format!("{SEALED_PREFIX}{}", b64url_encode(out))
    }

    /// Decrypts what [`MasterKey::seal`] produced for `context`.
    pub(crate) fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, AuthorityError> {
        let wrong = || {
            AuthorityError::Internal(
                "a sealed key cannot be opened: wrong master key or corrupt data".into(),
            )
        };
        let raw = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(b64url_decode)
            .ok_or_else(wrong)?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// Who added a signing key and why, for its audit record.
#[derive(Debug, Clone, Copy)]
pub struct KeyRecord<'a> {
    /// The admin, an operator, or `authority` for the schedule.
    pub actor: &'a str,
    /// Why, in a few words.
    pub why: &'a str,
    /// The request that asked for it, if one did.
    pub request_id: &'a str,
}

/// One signing key of the ring, opened.
#[derive(Clone)]
struct RingKey {
    kid: String,
    key: SigningKey,
    public: PublicJwk,
    created_at: i64,
    signs_from: i64,
}

/// Where a signing key is in its life, at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPhase {
    /// Published, not signing yet: verifiers learn it first.
    Published,
    /// The key that signs new tokens.
    Signing,
    /// Replaced, still published while tokens it signed may be alive.
    Retired,
    /// Replaced long enough ago that nothing it signed is alive; no longer
    /// published (kept to verify old audit checkpoints).
    Expired,
}

impl KeyPhase {
    /// The name the API and CLI show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Signing => "signing",
            Self::Retired => "retired",
            Self::Expired => "expired",
        }
    }
}

/// What the ring says of one key at some moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// Key ID (the JWK thumbprint).
    pub kid: String,
    /// JWS algorithm.
    pub alg: &'static str,
    /// Where it is in its life.
    pub phase: KeyPhase,
    /// When it was made.
    pub created_at: i64,
    /// When it starts (or started) signing.
    pub signs_from: i64,
    /// When a newer key took over, if one has.
    pub retired_at: Option<i64>,
    /// When it leaves the JWKS, once retired.
    pub published_until: Option<i64>,
}

/// The authority's signing keys: one signs, the others are published ahead
/// of signing or kept published after retirement until every token they
/// signed has expired. Which key signs is a matter of time, so every replica
/// reading the same keys agrees.
#[derive(Clone)]
pub struct KeyRing {
    /// Ordered by when each starts signing (then creation, then key ID).
    keys: Vec<RingKey>,
    /// Seconds a retired key stays published: the longest token lifetime
    /// plus the clock leeway verifiers allow.
    retired_for: i64,
}

impl KeyRing {
    /// Loads the signing keys from the store, creating the first Ed25519 key
    /// (signing at once) if there is none.
    pub async fn load_or_create(
        store: &dyn Store,
        master: &MasterKey,
        retired_for: i64,
    ) -> Result<Self, AuthorityError> {
        if store.signing_keys().await?.is_empty() {
            let now = unix_now();
            // Part of setting up, like the admin credential: not audited.
            let kid = Self::add(store, master, now, now, None).await?;
            tracing::info!(%kid, "created the authority's first signing key");
        }
        Self::load(store, master, retired_for).await
    }

    /// Loads the signing keys without ever creating one: for tools that
    /// check what the authority signed, and to pick up keys other replicas
    /// added. Every key must open with `master`.
    pub async fn load(
        store: &dyn Store,
        master: &MasterKey,
        retired_for: i64,
    ) -> Result<Self, AuthorityError> {
        let rows = store.signing_keys().await?;
        Self::from_rows(&rows, master, retired_for)
    }

    /// Makes a new Ed25519 key that starts signing at `signs_from`, stores it
    /// sealed (with a `signing_key.added` record for `record`), and returns
    /// its key ID.
    pub async fn add(
        store: &dyn Store,
        master: &MasterKey,
        now: i64,
        signs_from: i64,
        record: Option<KeyRecord<'_>>,
    ) -> Result<String, AuthorityError> {
        let key = SigningKey::generate_ed25519();
        let kid = key.public_jwk().thumbprint().0;
        let private = serde_json::to_vec(&key.to_private_jwk()).unwrap_or_default();
        let row = SigningKeyRow {
            kid: kid.clone(),
            alg: key.alg().as_str().into(),
            public_jwk: key.public_jwk().to_json().to_string(),
            sealed_private: master.seal(&kid, &private),
            created_at: now,
            signs_from,
        };
        let audit = record.map(|r| {
            let mut audit = crate::audit::event(
                agentauth_core::AuditKind::SigningKeyAdded,
                r.actor,
                &kid,
                agentauth_core::Decision::Allow,
            );
            audit.reason = format!("{}: signs from {signs_from}", r.why);
            audit.request_id = r.request_id.to_owned();
            audit
        });
        store.add_signing_key(&row, audit.as_ref()).await?;
        Ok(kid)
    }

    fn from_rows(
        rows: &[SigningKeyRow],
        master: &MasterKey,
        retired_for: i64,
    ) -> Result<Self, AuthorityError> {
        // Each published key is taken from its sealed private key, which only
        // the master key opens: a database writer cannot slip in a key of
        // their own, nor swap a public key.
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            let private: Value =
                serde_json::from_slice(&master.open(&r.kid, &r.sealed_private)?)
                    .map_err(|_| AuthorityError::Internal("a sealed key is not JSON".into()))?;
            let key = SigningKey::from_private_jwk(&private)
                .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            let public = key.public_jwk();
            if public.thumbprint().0 != r.kid {
                return Err(AuthorityError::Internal(format!(
                    "signing key {} does not match its sealed private key",
                    r.kid
                )));
            }
            keys.push(RingKey {
                kid: r.kid.clone(),
                key,
                public,
                created_at: r.created_at,
                signs_from: r.signs_from,
            });
        }
        if keys.is_empty() {
            return Err(AuthorityError::Internal("no signing key".into()));
        }
        keys.sort_by(|a, b| {
            (a.signs_from, a.created_at, &a.kid).cmp(&(b.signs_from, b.created_at, &b.kid))
        });
        Ok(Self { keys, retired_for })
    }

    /// Index of the key that signs at `now`: the last one whose time has
    /// come, or the first if none has.
    fn signing_index(&self, now: i64) -> usize {
        self.keys
            .iter()
            .rposition(|k| k.signs_from <= now)
            .unwrap_or(0)
    }

    /// The key ID and key that sign at `now`.
    pub fn signer(&self, now: i64) -> (&str, &SigningKey) {
        let k = &self.keys[self.signing_index(now)];
        (&k.kid, &k.key)
    }

    /// Key `i`'s phase, retirement and end of publication, given the index
    /// of the key signing now.
    fn phase(&self, i: usize, current: usize, now: i64) -> (KeyPhase, Option<i64>, Option<i64>) {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let retired_at = (i < current).then(|| self.keys[i + 1].signs_from);
        let until = retired_at.map(|at| at.saturating_add(self.retired_for));
        let phase = match (i.cmp(&current), until) {
            (Equal, _) => KeyPhase::Signing,
            (Greater, _) => KeyPhase::Published,
            (Less, Some(until)) if until > now => KeyPhase::Retired,
            (Less, _) => KeyPhase::Expired,
        };
        (phase, retired_at, until)
    }

    /// Each key's phase and times at `now`, oldest first.
    pub fn statuses(&self, now: i64) -> Vec<KeyStatus> {
        let current = self.signing_index(now);
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let (phase, retired_at, published_until) = self.phase(i, current, now);
                KeyStatus {
                    kid: k.kid.clone(),
                    alg: k.key.alg().as_str(),
                    phase,
                    created_at: k.created_at,
                    signs_from: k.signs_from,
                    retired_at,
                    published_until,
                }
            })
            .collect()
    }

    /// The keys published at `now`: those not expired.
    fn published(&self, now: i64) -> impl Iterator<Item = &RingKey> {
        let current = self.signing_index(now);
        self.keys
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.phase(*i, current, now).0 != KeyPhase::Expired)
            .map(|(_, k)| k)
    }

    /// The key with ID `kid` if it is published at `now`: what tokens are
    /// checked against.
    pub fn find(&self, kid: &str, now: i64) -> Option<&PublicJwk> {
        self.published(now)
            .find(|k| k.kid == kid)
            .map(|k| &k.public)
    }

    /// The key with ID `kid`, published or not: audit checkpoints stay
    /// verifiable after their key has left the JWKS.
    pub fn find_any(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| &k.public)
    }

    /// When the newest key was made: the rotation schedule counts from it.
    pub fn newest_created_at(&self) -> i64 {
        self.keys.iter().map(|k| k.created_at).max().unwrap_or(0)
    }

    /// The JWKS document (RFC 7517 §5) at `now`, with `kid`, `alg` and `use`
    /// on every key.
    pub fn jwks(&self, now: i64) -> Jwks {
        let keys = self
            .published(now)
            .map(|k| Jwk {
                params: match k.public.to_json() {
                    Value::Object(members) => members,
                    _ => unreachable!("a public JWK is a JSON object"),
                },
                kid: Some(k.kid.clone()),
                alg: Some(k.public.alg().as_str().to_owned()),
                key_use: Some("sig".to_owned()),
            })
            .collect();
        Jwks { keys }
    }
}

/// Adds a signing key that signs after the publish lead (or at once with
/// `now`), and reloads this replica's ring; returns the new key's status.
pub(crate) async fn rotate_keys(
    s: &Authority,
    now: bool,
    actor: &str,
    why: &str,
    request_id: &str,
) -> Result<KeyStatus, AuthorityError> {
    let at = unix_now();
    // `at` is the second now began, so a whole second more keeps the lead
    // at least what is configured. A key signing at once must still come
    // after the key signing now, which may have started this very second.
    let signs_from = if now {
        let ring = s.keys();
        let current = &ring.keys[ring.signing_index(at)];
        at.max(current.signs_from + 1)
    } else {
        at + s.config.signing_key_publish_lead_secs + 1
    };
    let record = KeyRecord {
        actor,
        why,
        request_id,
    };
    let kid = KeyRing::add(&*s.store, &s.master, at, signs_from, Some(record)).await?;
    reload(s).await?;
    tracing::info!(%kid, signs_from, "added a signing key");
    s.keys()
        .statuses(unix_now())
        .into_iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| AuthorityError::Internal("the new signing key did not load".into()))
}

/// Re-reads the signing keys, so keys added by another replica are
/// published (and sign when their time comes) here too.
pub(crate) async fn reload(s: &Authority) -> Result<(), AuthorityError> {
    let ring = KeyRing::load(&*s.store, &s.master, s.key_retired_for()).await?;
    *s.keys.write().expect("key ring lock") = Arc::new(ring);
    Ok(())
}

/// How often the rotation task looks: often enough that a key added by
/// another replica is published here well within the publish lead.
fn check_interval(lead_secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(lead_secs / 4).unwrap_or(0).clamp(1, 60))
}

/// Keeps the ring current and rotates on schedule: reloads the keys every
/// check, and adds a key once the newest is `signing_key_rotation_days`
/// old. Stops with the state.
pub(crate) fn spawn_rotator(state: Weak<Authority>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(interval) = state
            .upgrade()
            .map(|s| check_interval(s.config.signing_key_publish_lead_secs))
        else {
            return;
        };
        let mut signing = None;
        loop {
            tokio::time::sleep(interval).await;
            let Some(s) = state.upgrade() else { return };
            if let Err(e) = reload(&s).await {
                tracing::warn!(error = %e.detail(), "re-reading the signing keys failed");
                continue;
            }
            let days = i64::from(s.config.signing_key_rotation_days);
            let now = unix_now();
            if days > 0 && now >= s.keys().newest_created_at() + days * 86_400 {
                let why = format!("scheduled rotation, every {days} days");
                if let Err(e) = rotate_keys(&s, false, "authority", &why, "").await {
                    tracing::warn!(error = %e.detail(), "the scheduled signing key rotation failed");
                }
            }
            let kid = s.keys().signer(now).0.to_owned();
            if signing.as_ref().is_some_and(|k| *k != kid) {
                tracing::info!(%kid, "a new signing key signs from now on");
            }
            signing = Some(kid);
        }
    })
}

/// `GET /v1/keys` (admin): every signing key and where it is in its life.
pub(crate) async fn list(State(s): State<AppState>) -> Json<SigningKeyList> {
    let keys = s
        .keys()
        .statuses(unix_now())
        .into_iter()
        .map(view)
        .collect();
    Json(SigningKeyList { keys })
}

/// `POST /v1/keys/rotate` (admin): adds a signing key, published at once
/// and signing after the publish lead (or at once with `"now": true`).
pub(crate) async fn rotate(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<KeyRotation>,
) -> Result<Response, AuthorityError> {
    let why = if body.now {
        "rotation by request, signing at once"
    } else {
        "rotation by request"
    };
    let key = rotate_keys(&s, body.now, &by.actor(), why, &request_id(&headers)).await?;
    Ok((StatusCode::CREATED, Json(view(key))).into_response())
}

fn view(k: KeyStatus) -> SigningKeyView {
    SigningKeyView {
        kid: k.kid,
        alg: k.alg.to_owned(),
        phase: k.phase.as_str().to_owned(),
        created_at: k.created_at,
        signs_from: k.signs_from,
        retired_at: k.retired_at,
        published_until: k.published_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_master_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(dir.path(), None).unwrap();
        let sealed = master.seal("kid-1", b"secret");
        assert!(!sealed.contains("secret"));
        assert_eq!(master.open("kid-1", &sealed).unwrap(), b"secret");
        assert!(master.open("kid-2", &sealed).is_err());
        let again = MasterKey::load_or_create(dir.path(), None).unwrap();
        assert_eq!(again.open("kid-1", &sealed).unwrap(), b"secret");
        let other = MasterKey::load_or_create(dir.path(), Some(&b64url_encode([9u8; 32]))).unwrap();
        assert!(other.open("kid-1", &sealed).is_err());
    }

    #[test]
    fn the_master_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load_or_create(dir.path(), None).unwrap();
        let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// A sealed row for a fresh key made at `created_at`, signing from `signs_from`.
    fn row(master: &MasterKey, created_at: i64, signs_from: i64) -> SigningKeyRow {
        let key = SigningKey::generate_ed25519();
        let kid = key.public_jwk().thumbprint().0;
        let private = serde_json::to_vec(&key.to_private_jwk()).unwrap();
        SigningKeyRow {
            kid: kid.clone(),
            alg: "EdDSA".into(),
            public_jwk: key.public_jwk().to_json().to_string(),
            sealed_private: master.seal(&kid, &private),
            created_at,
            signs_from,
        }
    }

    fn phases(ring: &KeyRing, now: i64) -> Vec<KeyPhase> {
        ring.statuses(now).into_iter().map(|k| k.phase).collect()
    }

    fn jwks_kids(ring: &KeyRing, now: i64) -> Vec<String> {
        ring.jwks(now)
            .keys
            .into_iter()
            .filter_map(|k| k.kid)
            .collect()
    }

    #[test]
    fn each_key_is_published_before_it_signs_and_after_it_retires_until_its_tokens_expire() {
        use KeyPhase::{Expired, Published, Retired, Signing};
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(dir.path(), None).unwrap();
        // Made at 100 (signing at once), then at 1000 and 2000, each
        // published 600 s ahead; a retired key stays published 3630 s.
        let rows = [
            row(&master, 100, 100),
            row(&master, 1000, 1600),
            row(&master, 2000, 2600),
        ];
        let kid = |i: usize| rows[i].kid.clone();
        // Given in any order: the ring orders them by when they sign.
        let ring = KeyRing::from_rows(
            &[rows[2].clone(), rows[0].clone(), rows[1].clone()],
            &master,
            3630,
        )
        .unwrap();

        assert_eq!(phases(&ring, 1599), [Signing, Published, Published]);
        assert_eq!(ring.signer(1599).0, kid(0));
        assert_eq!(jwks_kids(&ring, 1599), [kid(0), kid(1), kid(2)]);

        assert_eq!(phases(&ring, 1600), [Retired, Signing, Published]);
        assert_eq!(ring.signer(1600).0, kid(1));
        assert_eq!(ring.signer(2600).0, kid(2));

        let first = &ring.statuses(2600)[0];
        assert_eq!(first.retired_at, Some(1600));
        assert_eq!(first.published_until, Some(1600 + 3630));
        assert_eq!(ring.statuses(2600)[1].retired_at, Some(2600));
        assert_eq!(ring.statuses(2600)[2].retired_at, None);

        // The first key leaves the JWKS once every token it signed has
        // expired; tokens are checked against published keys only, audit
        // checkpoints against any.
        assert_eq!(phases(&ring, 5229), [Retired, Retired, Signing]);
        assert!(ring.find(&kid(0), 5229).is_some());
        assert_eq!(phases(&ring, 5230), [Expired, Retired, Signing]);
        assert_eq!(jwks_kids(&ring, 5230), [kid(1), kid(2)]);
        assert!(ring.find(&kid(0), 5230).is_none());
        assert!(ring.find_any(&kid(0)).is_some());
        assert!(ring.find("no-such-key", 5230).is_none());
        assert_eq!(ring.newest_created_at(), 2000);
    }

    #[test]
    fn a_ring_refuses_a_row_whose_public_key_was_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(dir.path(), None).unwrap();
        let mut swapped = row(&master, 1, 1);
        let other = row(&master, 1, 1);
        swapped.kid = other.kid;
        assert!(KeyRing::from_rows(&[swapped], &master, 60).is_err());
        assert!(KeyRing::from_rows(&[], &master, 60).is_err());
    }

    #[test]
    fn a_short_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(MasterKey::load_or_create(dir.path(), Some("c2hvcnQ")).is_err());
    }
}
