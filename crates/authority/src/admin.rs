//! The admin credential: created once, printed once, stored only as a hash;
//! replaced by `agentauth admin rotate-credential`, after which every replica
//! refuses the old one within a second. Operators' credentials
//! ([`crate::operator`]) are checked here too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use agentauth_core::random_b64;
use agentauth_store::Store;
use aws_lc_rs::{constant_time, digest};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;

use crate::AuthorityError;
use crate::error::Needed;
use crate::operator::{OperatorRefusal, Operators, Principal};
use crate::server::AppState;

/// Settings key of the credential's SHA-256.
const ADMIN_HASH_SETTING: &str = "admin_token_sha256";
/// File in the data dir that holds the credential for the local CLI.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The SHA-256 of the admin credential, the only form the authority keeps.
#[derive(Clone)]
pub struct AdminCredential {
    hash: Arc<RwLock<Vec<u8>>>,
    operators: Operators,
}

/// A new admin credential, and the file it was written to.
#[derive(Debug)]
pub(crate) struct Rotated {
    /// The new credential, shown once.
    pub(crate) token: String,
    /// `<data_dir>/admin-token`, now holding it (0600).
    pub(crate) file: PathBuf,
}

impl AdminCredential {
    /// Loads the credential hash, or creates a credential on first start,
    /// writes it to `<data_dir>/admin-token` (0600) and returns it for printing.
    pub async fn load_or_create(
        store: &dyn Store,
        data_dir: &Path,
    ) -> Result<(Self, Option<String>), AuthorityError> {
        if let Some(stored) = store.setting(ADMIN_HASH_SETTING).await? {
            let credential = Self::from_hex(&stored)?;
            credential.operators.reload(store).await?;
            return Ok((credential, None));
        }
        let token = format!("aa_admin_{}", random_b64(32));
        let wanted = hex_sha256(&token);
        let winner = store.init_setting(ADMIN_HASH_SETTING, &wanted).await?;
        if winner != wanted {
            // Another replica created the credential first; only it knows the plaintext.
            return Ok((Self::from_hex(&winner)?, None));
        }
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        let _ = std::fs::remove_file(&path);
        crate::files::write_private(&path, token.as_bytes())?;
        Ok((Self::from_hex(&wanted)?, Some(token)))
    }

    fn from_hex(hex_hash: &str) -> Result<Self, AuthorityError> {
        let hash = decode_hex(hex_hash)
            .ok_or_else(|| AuthorityError::Internal("the stored admin hash is corrupt".into()))?;
        Ok(Self {
            hash: Arc::new(RwLock::new(hash)),
            operators: Operators::default(),
        })
    }

    /// The operators' credentials.
    pub(crate) fn operators(&self) -> &Operators {
        &self.operators
    }

    /// Whose credential `presented` is: the admin's (compared in constant
    /// time) or an operator's, looked up by its SHA-256.
    pub fn identify(&self, presented: &str) -> Option<Principal> {
        if self.matches(presented) {
            return Some(Principal::Admin);
        }
        let digest = digest::digest(&digest::SHA256, presented.as_bytes());
        self.operators.find(digest.as_ref())
    }

    /// Whether `presented` is the admin credential, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest = digest::digest(&digest::SHA256, presented.as_bytes());
        let hash = self.hash.read().expect("lock");
        constant_time::verify_slices_are_equal(digest.as_ref(), &hash).is_ok()
    }

    /// Replaces the credential: a new one is stored (as its hash, only if
    /// the stored one is still the one this replica knows), audited, written
    /// to `<data_dir>/admin-token` and returned once. The old one stops
    /// working here at once and on other replicas within a second.
    pub(crate) async fn rotate(
        &self,
        store: &dyn Store,
        data_dir: &Path,
        by: &Principal,
        request_id: &str,
    ) -> Result<Rotated, AuthorityError> {
        let current = hex::encode(&*self.hash.read().expect("lock"));
        let token = format!("aa_admin_{}", random_b64(32));
        let wanted = hex_sha256(&token);
        let mut audit = crate::audit::event(
            agentauth_core::AuditKind::AdminCredentialRotated,
            &by.actor(),
            "admin credential",
            agentauth_core::Decision::Allow,
        );
        audit.request_id = request_id.to_owned();
        if !store
            .replace_setting(ADMIN_HASH_SETTING, &current, &wanted, &audit)
            .await?
        {
            return Err(AuthorityError::Stored(agentauth_store::StoreError::Stale(
                "the admin credential was changed meanwhile; try again".into(),
            )));
        }
        *self.hash.write().expect("lock") = decode_hex(&wanted).expect("just encoded");
        let file = data_dir.join(ADMIN_TOKEN_FILE);
        let _ = std::fs::remove_file(&file);
        crate::files::write_private(&file, token.as_bytes())?;
        Ok(Rotated { token, file })
    }

    /// Re-reads the stored hash and the operators, so a rotation or an
    /// operator change through another replica applies here too.
    pub(crate) async fn refresh(&self, store: &dyn Store) -> Result<(), AuthorityError> {
        self.operators.reload(store).await?;
        if let Some(stored) = store.setting(ADMIN_HASH_SETTING).await?
            && let Some(hash) = decode_hex(&stored)
        {
            *self.hash.write().expect("lock") = hash;
        }
        Ok(())
    }

    /// Who the request's `Authorization: Bearer` credential belongs to, the
    /// admin or any operator.
    pub fn require_operator(&self, headers: &HeaderMap) -> Result<Principal, AuthorityError> {
        match bearer(headers) {
            Some(token) => self
                .identify(token)
                .ok_or(AuthorityError::AdminCredentialInvalid),
            None => Err(AuthorityError::MissingCredential(Needed::Admin)),
        }
    }

    /// Like [`AdminCredential::require_operator`], but only the admin or an
    /// operator in the `admin` group passes.
    pub fn require(&self, headers: &HeaderMap) -> Result<Principal, AuthorityError> {
        let who = self.require_operator(headers)?;
        if !who.is_admin() {
            return Err(OperatorRefusal::NotAdmin(who.name().to_owned()).into());
        }
        Ok(who)
    }

    /// Whether the request's Bearer credential has the admin's rights.
    pub fn admits(&self, headers: &HeaderMap) -> Option<Principal> {
        bearer(headers)
            .and_then(|t| self.identify(t))
            .filter(Principal::is_admin)
    }
}

/// Keeps this replica's copy of the credential's hash and of the operators
/// current: at once when another replica's change is signalled, and every
/// `every` in any case; stops with the state.
pub(crate) fn spawn_refresher(
    state: Weak<crate::server::State>,
    mut signals: agentauth_store::ChangeSignals,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            signals
                .wait(agentauth_store::Change::Credentials, every)
                .await;
            let Some(s) = state.upgrade() else { return };
            if let Err(e) = s.admin.refresh(&*s.store).await {
                tracing::warn!(error = %e.detail(), "re-reading the admin credential failed");
            }
        }
    })
}

/// `POST /v1/admin/credential` (admin): replaces the admin credential and
/// answers the new one, once.
pub(crate) async fn rotate(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
) -> Result<axum::response::Response, AuthorityError> {
    let rotated = s
        .admin
        .rotate(
            &*s.store,
            &s.config.data_dir,
            &by,
            &crate::audit::request_id(&headers),
        )
        .await?;
    tracing::info!(file = %rotated.file.display(), "admin credential rotated");
    let body = agentauth_api::AdminCredentialRotation {
        admin_token: rotated.token,
        file: rotated.file.display().to_string(),
    };
    let mut response = axum::response::IntoResponse::into_response(axum::Json(body));
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The admin sub-router's layer: only a request with the admin's rights
/// (the admin credential, or an `admin`-group operator's) reaches the
/// handler, which finds the [`Principal`] in the request.
pub(crate) async fn admin_only(
    State(s): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, AuthorityError> {
    let who = s.admin.require(request.headers())?;
    request.extensions_mut().insert(who);
    Ok(next.run(request).await)
}

/// The approvals sub-router's layer: the admin or any operator passes; the
/// handler decides what that operator may do.
pub(crate) async fn operator_only(
    State(s): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, AuthorityError> {
    let who = s.admin.require_operator(request.headers())?;
    request.extensions_mut().insert(who);
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer` or `Authorization: DPoP` header:
/// agents present key-bound tokens either way.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop");
    known.then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The token of an `Authorization: Bearer` header, if there is one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The SHA-256 of a credential, hex: the only form credentials are kept in.
pub(crate) fn hex_sha256(text: &str) -> String {
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_credential_matches() {
        let token = "aa_admin_secret";
        let cred = AdminCredential::from_hex(&hex_sha256(token)).unwrap();
        assert!(cred.matches(token));
        assert!(!cred.matches("aa_admin_secreT"));
        assert!(!cred.matches(""));
    }

    #[test]
    fn bearer_header_is_parsed_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
