//! Operators: named people, each with their own credential, who decide
//! approvals (only those whose `@approvers` group they belong to) and, in
//! the `admin` group, act with the admin's rights. Every admin action is
//! attributed in the audit log to whoever's credential made it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use agentauth_api::{NewOperator, OperatorCreated, OperatorList, OperatorView};
use agentauth_core::{AgentName, AuditKind, Decision, random_b64, unix_now};
use agentauth_store::{OperatorRow, Store};
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use http::request::Parts;
use http::{HeaderMap, StatusCode};

use crate::AuthorityError;
use crate::audit::{event, request_id};
use crate::body::JsonBody;
use crate::error::Needed;
use crate::server::AppState;

/// The group whose operators act with the admin's rights.
pub const ADMIN_GROUP: &str = "admin";
/// Most groups one operator belongs to.
const MAX_GROUPS: usize = 16;
/// Longest group name.
const MAX_GROUP_LEN: usize = 64;

/// Why an operator could not be added, or an operator's request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorRefusal {
    /// The name breaks the naming rule (that of agent names), or is
    /// `admin`, which names the admin credential.
    #[error("an operator name is 1 to 64 letters, digits, '-', '_' or '.', and not \"admin\"")]
    BadName,
    /// A group name is empty, too long or not plain.
    #[error("a group name is 1 to {MAX_GROUP_LEN} letters, digits, '-', '_' or '.'")]
    BadGroup,
    /// Too many groups.
    #[error("an operator belongs to at most {MAX_GROUPS} groups")]
    TooManyGroups,
    /// An operator outside the `admin` group called an admin API.
    #[error("operator \"{0}\" is not in the admin group; this API needs the admin's rights")]
    NotAdmin(String),
}

/// Who presented a credential the authority knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin credential created at first start.
    Admin,
    /// A named operator.
    Operator {
        /// Their name.
        name: String,
        /// Their groups.
        groups: Vec<String>,
    },
}

impl Principal {
    /// The name decisions are recorded under: `admin` or the operator's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Admin => "admin",
            Self::Operator { name, .. } => name,
        }
    }

    /// The actor audit records name: `admin` or `operator:NAME`.
    pub fn actor(&self) -> String {
        match self {
            Self::Admin => "admin".to_owned(),
            Self::Operator { name, .. } => format!("operator:{name}"),
        }
    }

    /// Whether it has the admin's rights: the admin credential, or an
    /// operator in the `admin` group.
    pub fn is_admin(&self) -> bool {
        match self {
            Self::Admin => true,
            Self::Operator { groups, .. } => groups.iter().any(|g| g == ADMIN_GROUP),
        }
    }

    /// Whether it is an operator in `group`. The admin credential is in no
    /// group: an approval for a named group needs one of its people.
    pub fn in_group(&self, group: &str) -> bool {
        matches!(self, Self::Operator { groups, .. } if groups.iter().any(|g| g == group))
    }
}

/// The admin layers put the principal in the request; handlers take it from there.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthorityError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(AuthorityError::MissingCredential(Needed::Admin))
    }
}

/// Every operator's credential hash, kept in memory so that a credential
/// check costs one SHA-256 and no store read; refreshed from the store
/// every second, and at once on this replica's own changes.
#[derive(Clone, Default)]
pub(crate) struct Operators {
    by_hash: Arc<RwLock<HashMap<Vec<u8>, Principal>>>,
}

impl Operators {
    /// The operator whose credential hashes to `digest`.
    pub(crate) fn find(&self, digest: &[u8]) -> Option<Principal> {
        self.by_hash.read().expect("lock").get(digest).cloned()
    }

    /// Replaces the directory with the store's operators.
    pub(crate) async fn reload(&self, store: &dyn Store) -> Result<(), AuthorityError> {
        let rows = store.operators().await?;
        let directory = rows
            .into_iter()
            .filter_map(|row| {
                let hash = hex::decode(&row.token_sha256).ok()?;
                let who = Principal::Operator {
                    name: row.name.to_string(),
                    groups: row.groups,
                };
                Some((hash, who))
            })
            .collect();
        *self.by_hash.write().expect("lock") = directory;
        Ok(())
    }
}

fn view(row: &OperatorRow) -> OperatorView {
    OperatorView {
        name: row.name.to_string(),
        groups: row.groups.clone(),
        created_at: row.created_at,
    }
}

/// Group names are plain words, like agent names.
fn checked_groups(groups: &[String]) -> Result<Vec<String>, OperatorRefusal> {
    if groups.len() > MAX_GROUPS {
        return Err(OperatorRefusal::TooManyGroups);
    }
    let mut out: Vec<String> = Vec::with_capacity(groups.len());
    for g in groups {
        let plain = !g.is_empty()
            && g.len() <= MAX_GROUP_LEN
            && g.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain {
            return Err(OperatorRefusal::BadGroup);
        }
        if !out.contains(g) {
            out.push(g.clone());
        }
    }
    Ok(out)
}

/// `POST /v1/operators` (admin): adds an operator and answers their
/// credential, once.
pub(crate) async fn add(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    JsonBody(new): JsonBody<NewOperator>,
) -> Result<(StatusCode, HeaderMap, Json<OperatorCreated>), AuthorityError> {
    let name = AgentName::new(&new.name)
        .ok()
        .filter(|n| n.as_str() != "admin")
        .ok_or(OperatorRefusal::BadName)?;
    let groups = checked_groups(&new.groups)?;
    let token = format!("aa_op_{}", random_b64(32));
    let row = OperatorRow {
        name,
        groups,
        token_sha256: crate::admin::hex_sha256(&token),
        created_at: unix_now(),
    };
    let mut audit = event(
        AuditKind::OperatorAdded,
        &by.actor(),
        &row.name,
        Decision::Allow,
    );
    audit.reason = format!("groups: {}", row.groups.join(","));
    audit.request_id = request_id(&headers);
    s.store.add_operator(&row, &audit).await?;
    s.admin.operators().reload(&*s.store).await?;
    tracing::info!(operator = %row.name, by = %by.actor(), "operator added");
    let mut no_store = HeaderMap::new();
    no_store.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    let created = OperatorCreated {
        operator: view(&row),
        operator_token: token,
    };
    Ok((StatusCode::CREATED, no_store, Json(created)))
}

/// `GET /v1/operators` (admin).
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<OperatorList>, AuthorityError> {
    let rows = s.store.operators().await?;
    Ok(Json(OperatorList {
        operators: rows.iter().map(view).collect(),
    }))
}

/// `DELETE /v1/operators/{name}` (admin): the credential stops working at
/// once here and within a second on other replicas.
pub(crate) async fn remove(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, AuthorityError> {
    let name = AgentName::new(&name).map_err(|_| OperatorRefusal::BadName)?;
    let mut audit = event(
        AuditKind::OperatorRemoved,
        &by.actor(),
        &name,
        Decision::Allow,
    );
    audit.request_id = request_id(&headers);
    s.store.remove_operator(&name, &audit).await?;
    s.admin.operators().reload(&*s.store).await?;
    tracing::info!(operator = %name, by = %by.actor(), "operator removed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(groups: &[&str]) -> Principal {
        Principal::Operator {
            name: "alice".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn only_the_admin_and_admin_group_operators_have_admin_rights() {
        assert!(Principal::Admin.is_admin());
        assert!(operator(&["finance", "admin"]).is_admin());
        assert!(!operator(&["finance"]).is_admin());
        assert!(!operator(&["administrators"]).is_admin());
    }

    #[test]
    fn the_admin_credential_is_in_no_approver_group() {
        assert!(!Principal::Admin.in_group("finance"));
        assert!(!Principal::Admin.in_group("admin"));
        assert!(operator(&["finance"]).in_group("finance"));
        assert!(!operator(&["finance"]).in_group("fin"));
        assert_eq!(operator(&[]).actor(), "operator:alice");
        assert_eq!(Principal::Admin.actor(), "admin");
    }

    #[test]
    fn groups_are_plain_bounded_and_deduplicated() {
        let groups =
            |g: &[&str]| checked_groups(&g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(
            groups(&["finance", "finance", "ops"]).unwrap(),
            ["finance", "ops"]
        );
        for bad in ["", "a b", "fin\"ance", &"g".repeat(65)] {
            assert!(
                matches!(groups(&[bad]), Err(OperatorRefusal::BadGroup)),
                "{bad}"
            );
        }
        let many: Vec<String> = (0..17).map(|i| format!("g{i}")).collect();
        assert!(matches!(
            checked_groups(&many),
            Err(OperatorRefusal::TooManyGroups)
        ));
    }
}
