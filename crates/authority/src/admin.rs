//! The admin credential: created once, printed once, stored only as a hash.

use std::path::Path;

use agentauth_core::random_b64;
use agentauth_store::Store;
use aws_lc_rs::{constant_time, digest};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;

use crate::AuthorityError;
use crate::error::Needed;
use crate::server::AppState;

/// Settings key of the credential's SHA-256.
const ADMIN_HASH_SETTING: &str = "admin_token_sha256";
/// File in the data dir that holds the credential for the local CLI.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The SHA-256 of the admin credential, the only form the authority keeps.
#[derive(Clone)]
pub struct AdminCredential {
    hash: Vec<u8>,
}

impl AdminCredential {
    /// Loads the credential hash, or creates a credential on first start,
    /// writes it to `<data_dir>/admin-token` (0600) and returns it for printing.
    pub async fn load_or_create(
        store: &dyn Store,
        data_dir: &Path,
    ) -> Result<(Self, Option<String>), AuthorityError> {
        if let Some(stored) = store.setting(ADMIN_HASH_SETTING).await? {
            return Ok((Self::from_hex(&stored)?, None));
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
        Ok(Self { hash })
    }

    /// Whether `presented` is the admin credential, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest = digest::digest(&digest::SHA256, presented.as_bytes());
        constant_time::verify_slices_are_equal(digest.as_ref(), &self.hash).is_ok()
    }

    /// Checks the request's `Authorization: Bearer` against the credential.
    pub fn require(&self, headers: &HeaderMap) -> Result<(), AuthorityError> {
        match bearer(headers) {
            Some(token) if self.matches(token) => Ok(()),
            Some(_) => Err(AuthorityError::AdminCredentialInvalid),
            None => Err(AuthorityError::MissingCredential(Needed::Admin)),
        }
    }
}

/// The admin sub-router's layer: only a request with the admin credential
/// reaches the handler; anything else is answered 401.
pub(crate) async fn admin_only(
    State(s): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AuthorityError> {
    s.admin.require(request.headers())?;
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

fn hex_sha256(text: &str) -> String {
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
