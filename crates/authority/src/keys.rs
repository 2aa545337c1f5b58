//! The authority's token-signing keys and the key-encryption key that seals
//! them at rest.

use std::path::Path;

use agentauth_api::{Jwk, Jwks};
use agentauth_core::{
    AuditKey, PublicJwk, SigningKey, b64url_decode, b64url_encode, random_bytes, unix_now,
};
use agentauth_store::{SigningKeyRow, Store};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde_json::Value;

use crate::AuthorityError;

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
    audit: AuditKey,
}

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

    /// The key that authenticates audit records (HKDF of the master key).
    pub fn audit_key(&self) -> AuditKey {
        self.audit.clone()
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
        let bytes = b64url_decode(&encoded)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                AuthorityError::Internal("the master key must be 32 bytes, base64url".into())
            })?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| AuthorityError::Internal("the master key is unusable".into()))?;
        Ok(Self {
            aead: LessSafeKey::new(key),
            audit: AuditKey::derive(&bytes),
        })
    }

    /// Encrypts `plaintext`, binding it to `context` (the key ID).
    fn seal(&self, context: &str, plaintext: &[u8]) -> String {
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
    fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, AuthorityError> {
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

/// The keys the authority signs with and publishes.
#[derive(Clone)]
pub struct KeyRing {
    /// Key ID of the key that signs new tokens.
    pub current_kid: String,
    /// The key that signs new tokens.
    pub current: SigningKey,
    /// Every published key, for verification, by key ID.
    pub published: Vec<(String, PublicJwk)>,
}

impl KeyRing {
    /// Loads the signing keys from the store, creating the first Ed25519 key
    /// if there is none. The newest key signs.
    pub async fn load_or_create(
        store: &dyn Store,
        master: &MasterKey,
    ) -> Result<Self, AuthorityError> {
        let mut rows = store.signing_keys().await?;
        if rows.is_empty() {
            let key = SigningKey::generate_ed25519();
            let kid = key.public_jwk().thumbprint().0;
            let private = serde_json::to_vec(&key.to_private_jwk()).unwrap_or_default();
            let row = SigningKeyRow {
                kid: kid.clone(),
                alg: key.alg().as_str().into(),
                public_jwk: key.public_jwk().to_json().to_string(),
                sealed_private: master.seal(&kid, &private),
                created_at: unix_now(),
            };
            store.add_signing_key(&row).await?;
            tracing::info!(%kid, "created the authority's first signing key");
            rows = store.signing_keys().await?;
        }
        Self::from_rows(&rows, master)
    }

    /// Loads the signing keys without ever creating one: for tools that
    /// check what the authority signed. Every key must open with `master`.
    pub async fn load(store: &dyn Store, master: &MasterKey) -> Result<Self, AuthorityError> {
        let rows = store.signing_keys().await?;
        Self::from_rows(&rows, master)
    }

    fn from_rows(rows: &[SigningKeyRow], master: &MasterKey) -> Result<Self, AuthorityError> {
        // Each published key is taken from its sealed private key, which only
        // the master key opens: a database writer cannot slip in a key of
        // their own, nor swap a public key.
        let mut opened = Vec::with_capacity(rows.len());
        for r in rows {
            let private: Value =
                serde_json::from_slice(&master.open(&r.kid, &r.sealed_private)?)
                    .map_err(|_| AuthorityError::Internal("a sealed key is not JSON".into()))?;
            let key = SigningKey::from_private_jwk(&private)
                .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            if key.public_jwk().thumbprint().0 != r.kid {
                return Err(AuthorityError::Internal(format!(
                    "signing key {} does not match its sealed private key",
                    r.kid
                )));
            }
            opened.push((r.kid.clone(), key));
        }
        let published = opened
            .iter()
            .map(|(kid, key)| (kid.clone(), key.public_jwk()))
            .collect();
        let (current_kid, current) = opened
            .pop()
            .ok_or_else(|| AuthorityError::Internal("no signing key".into()))?;
        Ok(Self {
            current_kid,
            current,
            published,
        })
    }

    /// The published key with ID `kid`.
    pub fn find(&self, kid: &str) -> Option<&PublicJwk> {
        self.published
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, jwk)| jwk)
    }

    /// The JWKS document (RFC 7517 §5) with `kid`, `alg` and `use` on every key.
    pub fn jwks(&self) -> Jwks {
        let keys = self
            .published
            .iter()
            .map(|(kid, jwk)| Jwk {
                params: match jwk.to_json() {
                    Value::Object(members) => members,
                    _ => unreachable!("a public JWK is a JSON object"),
                },
                kid: Some(kid.clone()),
                alg: Some(jwk.alg().as_str().to_owned()),
                key_use: Some("sig".to_owned()),
            })
            .collect();
        Jwks { keys }
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

    #[test]
    fn a_short_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(MasterKey::load_or_create(dir.path(), Some("c2hvcnQ")).is_err());
    }
}
