//! The admin credential (`POST /v1/admin/credential` replaces it) and the
//! operators it manages (`/v1/operators`).

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

/// Body of `POST /v1/operators`: a person who will decide approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    /// Unique name (letters, digits, `-`, `_`, `.`), recorded in the audit log.
    pub name: String,
    /// Approver groups, as `@approvers("…")` names them; `admin` gives the
    /// operator the admin's rights, under their own name.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// An operator as the admin API shows it; the credential is never shown again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorView {
    /// The operator's name.
    pub name: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// The answer of `POST /v1/operators`: the operator and their credential,
/// shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCreated {
    /// The operator.
    #[serde(flatten)]
    pub operator: OperatorView,
    /// Their credential (`Authorization: Bearer …`), stored only as a hash.
    pub operator_token: String,
}

/// The answer of `GET /v1/operators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorList {
    /// Every operator, by name.
    pub operators: Vec<OperatorView>,
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
