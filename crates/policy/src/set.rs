//! Loading a policy set: parse each file, name each policy, check the
//! annotations agentauth gives meaning to, and validate the whole set
//! against the schema; every problem names its file, line and column.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Authorizer, Effect, PolicyId, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use serde::{Deserialize, Serialize};

use crate::error::{PolicyError, Problem};
use crate::schema::with_actions;
use crate::scope::Scopes;

/// Most files one policy set may have.
pub const MAX_FILES: usize = 128;
/// Largest single policy file.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Largest policy set, all files together.
pub const MAX_SET_BYTES: usize = 1024 * 1024;

/// One `.cedar` file of a policy set, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// The file name, e.g. `payments.cedar`.
    pub name: String,
    /// The policy text.
    pub text: String,
}

/// What a policy set holds, one entry per policy, for listings and reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// `@id("…")` if given, otherwise `file:line`.
    pub id: String,
    /// The file the policy is in.
    pub file: String,
    /// The line the policy starts on.
    pub line: usize,
    /// `permit` or `forbid`.
    pub effect: String,
    /// Whether a permit needs a person's approval (`@approval("required")`).
    pub approval: bool,
    /// Who should approve (`@approvers("group")`), if said.
    pub approvers: Option<String>,
}

/// A validated policy set, ready to decide.
#[derive(Debug)]
pub struct PolicySet {
    /// Every policy, under its agentauth ID.
    pub(crate) policies: cedar_policy::PolicySet,
    /// Which policies' scopes match each query shape seen.
    pub(crate) scopes: Scopes,
    pub(crate) summaries: Vec<PolicySummary>,
    pub(crate) by_id: HashMap<String, usize>,
    pub(crate) authorizer: Authorizer,
}

/// One parsed file, before the set is validated as a whole.
struct Parsed<'a> {
    file: &'a PolicyFile,
    policies: Vec<(cedar_policy::Policy, PolicySummary)>,
}

impl PolicySet {
    /// Parses and validates `files`; refuses the whole set on any problem.
    pub fn load(files: &[PolicyFile]) -> Result<Self, PolicyError> {
        check_files(files)?;
        let mut problems = Vec::new();
        let mut parsed = Vec::new();
        for file in files {
            match parse_file(file) {
                Ok(p) => parsed.push(p),
                Err(mut more) => problems.append(&mut more),
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let mut cedar = cedar_policy::PolicySet::new();
        let mut summaries = Vec::new();
        let mut by_id = HashMap::new();
        let mut actions = BTreeSet::new();
        let mut source: HashMap<String, &PolicyFile> = HashMap::new();
        for p in &parsed {
            for (policy, summary) in &p.policies {
                if by_id.contains_key(&summary.id) {
                    problems.push(Problem::at(
                        &p.file.name,
                        &p.file.text,
                        offset_of_line(&p.file.text, summary.line),
                        format!("the policy id \"{}\" is used twice", summary.id),
                    ));
                    continue;
                }
                for uid in policy.entity_literals() {
                    if uid.type_name().basename() == "Action" {
                        let name = uid.id().unescaped().to_owned();
                        if let Err(e) = agentauth_core::Permission::new(&name) {
                            problems.push(Problem::at(
                                &p.file.name,
                                &p.file.text,
                                offset_of_line(&p.file.text, summary.line),
                                format!("an action must be a permission: {e}"),
                            ));
                        }
                        actions.insert(name);
                    }
                }
                let renamed = policy.new_id(PolicyId::new(&summary.id));
                if let Err(e) = cedar.add(renamed) {
                    problems.push(Problem::whole(&p.file.name, e.to_string()));
                }
                by_id.insert(summary.id.clone(), summaries.len());
                source.insert(summary.id.clone(), p.file);
                summaries.push(summary.clone());
            }
        }
        if problems.is_empty() {
            problems = validate(&cedar, &actions, &source);
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        Ok(Self {
            scopes: Scopes::new(&cedar)?,
            policies: cedar,
            summaries,
            by_id,
            authorizer: Authorizer::new(),
        })
    }

    /// Every policy of the set, in file order.
    pub fn summaries(&self) -> &[PolicySummary] {
        &self.summaries
    }

    /// The summary of one policy.
    pub fn summary(&self, id: &str) -> Option<&PolicySummary> {
        self.by_id.get(id).map(|i| &self.summaries[*i])
    }
}

/// Names, sizes and count are bounded before anything is parsed.
fn check_files(files: &[PolicyFile]) -> Result<(), PolicyError> {
    let mut problems = Vec::new();
    if files.is_empty() {
        problems.push(Problem::whole(
            "(set)",
            "a policy set needs at least one .cedar file".into(),
        ));
    }
    if files.len() > MAX_FILES {
        problems.push(Problem::whole(
            "(set)",
            format!("a policy set may have at most {MAX_FILES} files"),
        ));
    }
    if files.iter().map(|f| f.text.len()).sum::<usize>() > MAX_SET_BYTES {
        problems.push(Problem::whole(
            "(set)",
            format!("a policy set may have at most {MAX_SET_BYTES} bytes of policy text"),
        ));
    }
    let mut seen = HashSet::new();
    for file in files {
        let name_ok = file.name.ends_with(".cedar")
            && file.name.len() <= 128
            && file
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        let shown: String = file.name.chars().take(64).collect();
        if !name_ok {
            problems.push(Problem::whole(
                &shown,
                "a policy file name must be up to 128 characters from [A-Za-z0-9-_.] ending in .cedar"
                    .into(),
            ));
        } else if !seen.insert(file.name.as_str()) {
            problems.push(Problem::whole(&shown, "the file name is used twice".into()));
        }
        if file.text.len() > MAX_FILE_BYTES {
            problems.push(Problem::whole(
                &shown,
                format!("the file is larger than {MAX_FILE_BYTES} bytes"),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PolicyError::Invalid(problems))
    }
}

/// Parses one file and names and checks each of its policies.
fn parse_file(file: &PolicyFile) -> Result<Parsed<'_>, Vec<Problem>> {
    let set = cedar_policy::PolicySet::from_str(&file.text).map_err(|errors| {
        errors
            .iter()
            .map(|e| diagnosed(file, e))
            .collect::<Vec<_>>()
    })?;
    let mut problems = Vec::new();
    if set.num_of_templates() > 0 {
        problems.push(Problem::whole(
            &file.name,
            "policy templates are not supported; write static policies".into(),
        ));
    }
    // `from_str` numbers policies policy0, policy1, … in source order.
    let mut ordered: Vec<&cedar_policy::Policy> = set.policies().collect();
    ordered.sort_by_key(|p| {
        AsRef::<str>::as_ref(p.id())
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    let mut cursor = 0;
    let mut policies = Vec::new();
    for policy in ordered {
        let text = policy.to_cedar().unwrap_or_default();
        let offset = file.text[cursor..]
            .find(text.as_str())
            .map_or(cursor, |i| cursor + i);
        cursor = offset + text.len().min(file.text.len() - offset);
        let (line, column) = crate::error::line_and_column(&file.text, offset);
        match summarise(file, policy, line) {
            Ok(mut summary) => {
                // Two policies on one line: the second default id gets its column.
                let default = format!("{}:{line}", file.name);
                if summary.id == default
                    && policies
                        .iter()
                        .any(|(_, s): &(_, PolicySummary)| s.id == default)
                {
                    summary.id = format!("{default}:{column}");
                }
                policies.push((policy.clone(), summary));
            }
            Err(p) => problems.push(Problem::at(&file.name, &file.text, offset, p)),
        }
    }
    if problems.is_empty() {
        Ok(Parsed { file, policies })
    } else {
        Err(problems)
    }
}

/// Reads the annotations agentauth gives meaning to; refuses misuse.
fn summarise(
    file: &PolicyFile,
    policy: &cedar_policy::Policy,
    line: usize,
) -> Result<PolicySummary, String> {
    let effect = policy.effect();
    let approval = match policy.annotation("approval") {
        None => false,
        Some("required") if effect == Effect::Permit => true,
        Some("required") => {
            return Err("@approval(\"required\") applies only to permit policies".into());
        }
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return Err(format!("@approval must be \"required\", not \"{shown}\""));
        }
    };
    let approvers = policy.annotation("approvers").map(str::to_owned);
    if approvers.is_some() && !approval {
        return Err("@approvers needs @approval(\"required\") on the same policy".into());
    }
    let id = match policy.annotation("id") {
        Some(id) => {
            let ok = !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
            if !ok {
                return Err("@id must be 1 to 128 characters from [A-Za-z0-9-_.:/]".into());
            }
            id.to_owned()
        }
        None => format!("{}:{line}", file.name),
    };
    Ok(PolicySummary {
        id,
        file: file.name.clone(),
        line,
        effect: match effect {
            Effect::Permit => "permit".into(),
            Effect::Forbid => "forbid".into(),
        },
        approval,
        approvers,
    })
}

/// Strict validation against the schema completed with the set's actions.
fn validate(
    set: &cedar_policy::PolicySet,
    actions: &BTreeSet<String>,
    source: &HashMap<String, &PolicyFile>,
) -> Vec<Problem> {
    let text = with_actions(actions);
    let schema = match Schema::from_cedarschema_str(&text) {
        Ok((schema, _warnings)) => schema,
        Err(e) => return vec![Problem::whole("(schema)", e.to_string())],
    };
    let result = Validator::new(schema).validate(set, ValidationMode::Strict);
    result
        .validation_errors()
        .map(|e| {
            let id = e.policy_id().as_ref();
            match source.get(id) {
                Some(file) => diagnosed(file, e),
                None => Problem::whole(id, e.to_string()),
            }
        })
        .collect()
}

/// A Cedar diagnostic as a problem at its first labelled position.
fn diagnosed(file: &PolicyFile, e: &(impl Diagnostic + ?Sized)) -> Problem {
    let mut message = e.to_string();
    if let Some(help) = e.help() {
        message = format!("{message} ({help})");
    }
    let offset = e
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    match offset {
        Some(offset) => Problem::at(&file.name, &file.text, offset, message),
        None => Problem::whole(&file.name, message),
    }
}

/// The byte offset where 1-based `line` starts.
fn offset_of_line(text: &str, line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    text.match_indices('\n')
        .nth(line - 2)
        .map_or(text.len(), |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PolicyFile {
        PolicyFile {
            name: name.into(),
            text: text.into(),
        }
    }

    fn problems(files: &[PolicyFile]) -> Vec<Problem> {
        match PolicySet::load(files) {
            Err(PolicyError::Invalid(p)) => p,
            other => panic!("expected an invalid set, got {other:?}"),
        }
    }

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let p = problems(&[
            file("ok.cedar", "permit (principal, action, resource);\n"),
            file(
                "bad.cedar",
                "// comment\npermit (principal, action, resource)\n  when { 1 + };\n",
            ),
        ]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].file, "bad.cedar");
        assert_eq!(p[0].line, 3, "{p:?}");
        assert!(p[0].column > 1, "{p:?}");
    }

    #[test]
    fn a_type_error_names_the_file_and_the_line_of_the_expression() {
        let p = problems(&[file(
            "types.cedar",
            "permit (principal, action, resource);\n\npermit (principal, action, resource)\nwhen { context.delegation_depth == \"two\" };\n",
        )]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].file.as_str(), p[0].line), ("types.cedar", 4), "{p:?}");
    }

    #[test]
    fn an_unknown_attribute_is_refused() {
        let p = problems(&[file(
            "attr.cedar",
            "permit (principal, action, resource) when { principal.department == \"x\" };",
        )]);
        assert_eq!((p[0].line, p[0].column > 40), (1, true), "{p:?}");
    }

    #[test]
    fn default_ids_are_file_and_line_and_given_ids_must_be_unique() {
        let set = PolicySet::load(&[file(
            "a.cedar",
            "permit (principal, action, resource);\n\n@id(\"named\")\nforbid (principal, action, resource) when { context.environment == \"x\" };\n",
        )])
        .expect("valid");
        let ids: Vec<_> = set.summaries().iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a.cedar:1", "named"]);
        assert_eq!(set.summary("named").map(|s| s.line), Some(3));

        let p = problems(&[
            file(
                "a.cedar",
                "@id(\"x\") permit (principal, action, resource);",
            ),
            file(
                "b.cedar",
                "\n@id(\"x\") permit (principal, action, resource);",
            ),
        ]);
        assert_eq!((p[0].file.as_str(), p[0].line), ("b.cedar", 2), "{p:?}");
    }

    #[test]
    fn two_policies_on_one_line_get_distinct_default_ids() {
        let set = PolicySet::load(&[file(
            "a.cedar",
            "permit (principal, action, resource); forbid (principal, action, resource) when { context.txn == \"x\" };",
        )])
        .expect("valid");
        let ids: Vec<_> = set.summaries().iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a.cedar:1", "a.cedar:1:39"]);
    }

    #[test]
    fn approval_annotations_are_checked() {
        let cases = [
            "@approval(\"yes\") permit (principal, action, resource);",
            "@approval(\"required\") forbid (principal, action, resource);",
            "@approvers(\"ops\") permit (principal, action, resource);",
        ];
        for text in cases {
            let p = problems(&[file("a.cedar", text)]);
            assert_eq!(p.len(), 1, "{text}: {p:?}");
        }
        let set = PolicySet::load(&[file(
            "a.cedar",
            "@approval(\"required\") @approvers(\"ops\") permit (principal, action, resource);",
        )])
        .expect("valid");
        assert!(set.summaries()[0].approval);
        assert_eq!(set.summaries()[0].approvers.as_deref(), Some("ops"));
    }

    #[test]
    fn templates_bad_names_and_empty_sets_are_refused() {
        problems(&[file(
            "t.cedar",
            "permit (principal == ?principal, action, resource);",
        )]);
        problems(&[file("../x.cedar", "permit (principal, action, resource);")]);
        problems(&[file("x.txt", "permit (principal, action, resource);")]);
        problems(&[]);
        problems(&[file("a.cedar", &" ".repeat(MAX_FILE_BYTES + 1))]);
    }

    #[test]
    fn an_action_that_is_not_a_permission_is_refused() {
        let p = problems(&[file(
            "a.cedar",
            "permit (principal, action == Action::\"has space\", resource);",
        )]);
        assert!(p[0].message.contains("permission"), "{p:?}");
    }
}
