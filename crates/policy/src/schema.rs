//! The shipped schema, completed with the actions a policy set names.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The schema every policy set is validated against (entity types and the
/// request context); actions are declared per set by [`with_actions`].
pub const SCHEMA: &str = include_str!("../../../policies/schema.cedarschema");

/// An action declared in every completed schema.
const UNLISTED_ACTION: &str = "unlisted";

/// The group a permission belongs to: the text before its first `:`
/// (`write:orders` is in `write`), so one policy can cover "any write".
pub fn action_group(permission: &str) -> Option<&str> {
    match permission.split_once(':') {
        Some((group, _)) if !group.is_empty() => Some(group),
        _ => None,
    }
}

/// The shipped schema plus one action per permission or group in `named`,
/// each permission declared `in` its group.
pub(crate) fn with_actions(named: &BTreeSet<String>) -> String {
    // Stands for every permission the set does not name, so that policies
    // with an unconstrained `action` are type-checked too.
    let mut all: BTreeSet<&str> = BTreeSet::from([UNLISTED_ACTION]);
    for action in named {
        all.insert(action);
        if let Some(group) = action_group(action) {
            all.insert(group);
        }
    }
    let mut text = String::from(SCHEMA);
    let applies =
        "appliesTo { principal: [Agent], resource: [Agent, Resource], context: RequestContext }";
    for action in all {
        // Permissions are [A-Za-z0-9:_.*/-]: nothing to escape inside quotes.
        match action_group(action) {
            Some(group) => {
                let _ = writeln!(text, "action \"{action}\" in [\"{group}\"] {applies};");
            }
            None => {
                let _ = writeln!(text, "action \"{action}\" {applies};");
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_group_by_their_first_segment() {
        assert_eq!(action_group("write:orders"), Some("write"));
        assert_eq!(action_group("payments:refund:large"), Some("payments"));
        assert_eq!(action_group("read"), None);
        assert_eq!(action_group(":odd"), None);
    }

    #[test]
    fn the_completed_schema_parses_and_declares_groups() {
        let named: BTreeSet<String> = ["write:orders".to_owned(), "read".to_owned()].into();
        let text = with_actions(&named);
        assert!(text.contains("action \"write:orders\" in [\"write\"]"));
        assert!(text.contains("action \"write\" appliesTo"));
        let (schema, _) = cedar_policy::Schema::from_cedarschema_str(&text).expect("schema");
        assert_eq!(schema.actions().count(), 4);
    }
}
