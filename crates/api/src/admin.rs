//! The admin credential: `POST /v1/admin/credential` replaces it.

use serde::{Deserialize, Serialize};

/// The answer of `POST /v1/admin/credential`: the new admin credential,
/// shown this once, and the authority's file that now holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCredentialRotation {
    /// The new credential; the old one no longer works.
    pub admin_token: String,
    /// `<data-dir>/admin-token` on the authority's machine (0600).
    pub file: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::pinned;

    #[test]
    fn a_rotation_names_the_new_credential_and_its_file() {
        pinned(
            &AdminCredentialRotation {
                admin_token: "aa_admin_x".into(),
                file: "./agentauth-data/admin-token".into(),
            },
            r#"
{
  "admin_token": "aa_admin_x",
  "file": "./agentauth-data/admin-token"
}"#,
        );
    }
}
