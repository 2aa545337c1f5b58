//! Rotation of the master key: a new key-encryption key, with every signing
//! key, the audit root and the X.509 CA's key re-sealed under it in one
//! transaction. Audit keys
//! keep deriving from the same root, so every record and checkpoint written
//! before still verifies; only the sealing changes.
//!
//! The new key reaches disk before the store changes, so a crash leaves
//! either nothing changed or the new key beside the old one as
//! `master.key.new`, which the next rotation finds and finishes.

use std::path::{Path, PathBuf};

use agentauth_core::{AuditKind, Decision};
use agentauth_store::Store;

use crate::keys::{AUDIT_ROOT_CONTEXT, AUDIT_ROOT_SETTING, KeyRing, MASTER_KEY_FILE, MasterKey};
use crate::svid::{
    CA_KEY_CONTEXT, CA_SETTING, JWT_KEY_CONTEXT, JWT_KEY_SETTING, StoredCas, StoredJwtKey,
};
use crate::{AuthorityError, files};

/// Where the new master key waits until the store has been re-sealed.
const PENDING_FILE: &str = "master.key.new";

/// What a master-key rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeyRotated {
    /// The store is sealed under a new key, now in `path`.
    Rotated {
        /// Signing keys re-sealed.
        signing_keys: usize,
        /// Where the new key is: `<data-dir>/master.key`, or the file
        /// asked for when the old key came from the environment.
        path: PathBuf,
    },
    /// An earlier rotation had re-sealed the store but not yet replaced
    /// `master.key`; this one finished it and changed nothing else.
    Finished {
        /// `<data-dir>/master.key`.
        path: PathBuf,
    },
}

/// Replaces the master key of the store at `store`.
///
/// With `from_env` unset, the old key is `<data_dir>/master.key` and the new
/// one replaces it (mode 0600); with `from_env` set (the old key), the new
/// one is written to `out`, a file that must not exist, and the operator
/// moves it into `AGENTAUTH_MASTER_KEY`. Every authority on the store must
/// be stopped first and started again with the new key.
pub async fn rotate_master_key(
    store: &dyn Store,
    data_dir: &Path,
    from_env: Option<&str>,
    out: Option<&Path>,
    actor: &str,
) -> Result<MasterKeyRotated, AuthorityError> {
    let current = data_dir.join(MASTER_KEY_FILE);
    let pending = match (from_env, out) {
        (None, None) => data_dir.join(PENDING_FILE),
        (Some(_), Some(out)) => out.to_owned(),
        (None, Some(_)) => {
            return Err(AuthorityError::Internal(
                "--out is for a master key given in AGENTAUTH_MASTER_KEY; \
                 with master.key the new key replaces it in place"
                    .into(),
            ));
        }
        (Some(_), None) => {
            return Err(AuthorityError::Internal(
                "the master key comes from AGENTAUTH_MASTER_KEY: name a new file \
                 for the new key with --out"
                    .into(),
            ));
        }
    };
    if from_env.is_none() && pending.exists() {
        let left = MasterKey::decode(&read(&pending)?)?;
        if opens(store, &left).await {
            std::fs::rename(&pending, &current).map_err(|e| io(&current, e))?;
            return Ok(MasterKeyRotated::Finished { path: current });
        }
        // Written by a rotation that failed before the store changed.
        std::fs::remove_file(&pending).map_err(|e| io(&pending, e))?;
    }
    let old = MasterKey::load(data_dir, from_env)?;
    if !opens(store, &old).await {
        return Err(AuthorityError::Internal(
            "the master key does not open this store's signing keys".into(),
        ));
    }
    let (new, encoded) = MasterKey::generate();
    let rows = store.signing_keys().await?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let private = old.open(&row.kid, &row.sealed_private)?;
        keys.push((row.kid.clone(), new.seal(&row.kid, &private)));
    }
    let root = old.audit_root(store).await?;
    let mut settings = vec![(
        AUDIT_ROOT_SETTING.to_owned(),
        new.seal(AUDIT_ROOT_CONTEXT, &root),
    )];
    if let Some(text) = store.setting(CA_SETTING).await? {
        let mut stored: StoredCas = serde_json::from_str(&text)
            .map_err(|_| AuthorityError::Internal("the stored CA is not JSON".into()))?;
        for ca in &mut stored.cas {
            let key = old.open(CA_KEY_CONTEXT, &ca.key_sealed)?;
            ca.key_sealed = new.seal(CA_KEY_CONTEXT, &key);
        }
        let text =
            serde_json::to_string(&stored).map_err(|e| AuthorityError::Internal(e.to_string()))?;
        settings.push((CA_SETTING.to_owned(), text));
    }
    if let Some(text) = store.setting(JWT_KEY_SETTING).await? {
        let mut stored: StoredJwtKey = serde_json::from_str(&text)
            .map_err(|_| AuthorityError::Internal("the stored JWT-SVID key is not JSON".into()))?;
        let key = old.open(JWT_KEY_CONTEXT, &stored.key_sealed)?;
        stored.key_sealed = new.seal(JWT_KEY_CONTEXT, &key);
        let text =
            serde_json::to_string(&stored).map_err(|e| AuthorityError::Internal(e.to_string()))?;
        settings.push((JWT_KEY_SETTING.to_owned(), text));
    }
    store.set_audit_key(agentauth_core::AuditKey::derive(&root));
    let mut audit = crate::audit::event(
        AuditKind::MasterKeyRotated,
        actor,
        "master key",
        Decision::Allow,
    );
    audit.reason = format!(
        "{} signing keys re-sealed under a new master key",
        rows.len()
    );

    files::write_private(&pending, format!("{encoded}\n").as_bytes())?;
    if let Err(e) = store.reseal(&keys, &settings, &audit).await {
        let _ = std::fs::remove_file(&pending);
        return Err(e.into());
    }
    let path = if from_env.is_none() {
        std::fs::rename(&pending, &current).map_err(|e| io(&current, e))?;
        current
    } else {
        pending
    };
    Ok(MasterKeyRotated::Rotated {
        signing_keys: rows.len(),
        path,
    })
}

/// Whether `key` opens every signing key, the audit root and the CA of
/// `store`.
async fn opens(store: &dyn Store, key: &MasterKey) -> bool {
    let ca = match store.setting(CA_SETTING).await {
        Ok(Some(text)) => crate::svid::open(&text, key).is_ok(),
        Ok(None) => true,
        Err(_) => false,
    };
    let jwt = match store.setting(JWT_KEY_SETTING).await {
        Ok(Some(text)) => crate::svid::open_jwt_key(&text, key).is_ok(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && jwt && KeyRing::load(store, key, 0).await.is_ok() && key.audit_root(store).await.is_ok()
}

fn read(path: &Path) -> Result<String, AuthorityError> {
    std::fs::read_to_string(path).map_err(|e| io(path, e))
}

fn io(path: &Path, e: std::io::Error) -> AuthorityError {
    AuthorityError::Internal(format!("{}: {e}", path.display()))
}
