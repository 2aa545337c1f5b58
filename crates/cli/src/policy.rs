//! `agentauth policy …`: load, list, show, diff, activate and dry-run
//! versioned Cedar policy sets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use agentauth_api::{
    DryRunAnswer, DryRunRequest, NewPolicySet, OAuthError, PolicyDecision, PolicyFile,
    PolicyOutcome, PolicySetLoaded, PolicyVersion, PolicyVersionDetail, PolicyVersionList,
};
use agentauth_policy::{MAX_FILE_BYTES, MAX_FILES, PolicyError, PolicySet, Problem};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::admin_client::Connection;

/// Policy set commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate every *.cedar file in DIR and load them as a new version.
    Load {
        /// Directory whose *.cedar files (not its subdirectories) make the set.
        dir: PathBuf,
        /// Make the new version the active one at once.
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the stored versions, newest first.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one version: its policies, then its files.
    Show {
        /// Policy set version.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        version: i64,
        /// Print the authority's JSON as is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show what changed between two versions, file by file.
    Diff {
        /// The older version.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        version_a: i64,
        /// The newer version.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        version_b: i64,
        #[command(flatten)]
        conn: Connection,
    },
    /// Make a stored version the one that decides (also to roll back).
    Activate {
        /// Policy set version.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        version: i64,
        #[command(flatten)]
        conn: Connection,
    },
    /// Dry-run one decision; nothing is stored or issued.
    Test {
        /// The agent asking.
        #[arg(long)]
        principal: String,
        /// The permission it asks for.
        #[arg(long)]
        action: String,
        /// The target agent.
        #[arg(long)]
        resource: String,
        /// Context fields as a JSON object, e.g. '{"purpose":"refund"}'.
        #[arg(long)]
        context: Option<String>,
        /// Decide with this stored version [default: the active one].
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..), conflicts_with = "dir")]
        version: Option<i64>,
        /// Decide with the *.cedar files of this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the authority's JSON as is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs a policy command.
pub(crate) async fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Load {
            dir,
            activate,
            conn,
        } => load(&conn, &dir, activate).await?,
        PolicyCommand::List { conn } => {
            let list: PolicyVersionList = conn.admin(Method::GET, "/v1/policies").await?;
            if list.versions.is_empty() {
                println!("no policy set versions");
            }
            for version in &list.versions {
                println!("{}", version_line(version));
            }
        }
        PolicyCommand::Show {
            version,
            json,
            conn,
        } => {
            let view = fetch(&conn, version).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", show_text(&view)?);
            }
        }
        PolicyCommand::Diff {
            version_a,
            version_b,
            conn,
        } => {
            let a = fetch(&conn, version_a).await?.files;
            let b = fetch(&conn, version_b).await?.files;
            let diff = diff_sets(&format!("v{version_a}"), &a, &format!("v{version_b}"), &b);
            if diff.is_empty() {
                println!("no differences");
            } else {
                print!("{diff}");
            }
        }
        PolicyCommand::Activate { version, conn } => {
            let listed: PolicyVersion = conn
                .admin(Method::POST, &format!("/v1/policies/{version}/activate"))
                .await?;
            println!("activated policy set version {}", listed.version);
        }
        PolicyCommand::Test {
            principal,
            action,
            resource,
            context,
            version,
            dir,
            json,
            conn,
        } => {
            let mut body = DryRunRequest {
                files: None,
                version: None,
                principal,
                action,
                resource,
                context: Value::Null,
            };
            if let Some(raw) = context {
                let context: Value = serde_json::from_str(&raw).context(
                    "--context is not JSON (give an object, e.g. '{\"purpose\":\"refund\"}')",
                )?;
                if !context.is_object() {
                    bail!("--context must be a JSON object");
                }
                body.context = context;
            }
            if let Some(dir) = dir {
                let files = read_dir(&dir)?;
                validate_locally(&dir, &files, "nothing was tested")?;
                body.files = Some(files);
            } else {
                body.version = version;
            }
            let answer = conn
                .admin_answer(Method::POST, "/v1/policies/test", Some(&body))
                .await?;
            print_problems(&answer);
            let answer: DryRunAnswer = answer.read()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", decision_text(&answer.decision));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `policy load`: validates DIR locally, then stores it as a new version.
async fn load(conn: &Connection, dir: &Path, activate: bool) -> anyhow::Result<()> {
    let files = read_dir(dir)?;
    validate_locally(
        dir,
        &files,
        "nothing was loaded and the active version is unchanged",
    )?;
    let body = NewPolicySet { files, activate };
    let answer = conn
        .admin_answer(Method::POST, "/v1/policies", Some(&body))
        .await?;
    if print_problems(&answer) > 0 {
        bail!(
            "the authority refused the policy set in {}: nothing was loaded and the active version is unchanged",
            dir.display()
        );
    }
    let loaded: PolicySetLoaded = answer.read()?;
    let version = loaded.version;
    println!(
        "loaded policy set version {version} ({} policies, sha256 {})",
        loaded.policy_count, loaded.digest
    );
    if loaded.active {
        println!("activated policy set version {version}");
    }
    Ok(())
}

/// Reads every `*.cedar` file directly in `dir`, sorted by name, each bounded
/// to the authority's largest file so nothing unbounded is read into memory.
fn read_dir(dir: &Path) -> anyhow::Result<Vec<PolicyFile>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {}", dir.display()))?;
    let mut paths = BTreeMap::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("cannot read the directory {}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "cedar") {
            continue;
        }
        // Follows symbolic links; subdirectories and other non-files are skipped.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            bail!("the file name {} is not UTF-8", path.display());
        };
        paths.insert(name, path);
    }
    if paths.is_empty() {
        bail!("{} has no .cedar files", dir.display());
    }
    if paths.len() > MAX_FILES {
        bail!(
            "{} has {} .cedar files; a policy set may have at most {MAX_FILES}",
            dir.display(),
            paths.len()
        );
    }
    paths
        .into_iter()
        .map(|(name, path)| {
            Ok(PolicyFile {
                text: read_bounded(&path)?,
                name,
            })
        })
        .collect()
}

/// Reads a UTF-8 file of at most `MAX_FILE_BYTES`.
fn read_bounded(path: &Path) -> anyhow::Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > MAX_FILE_BYTES {
        bail!(
            "{} is larger than {} KiB, the most a policy file may have",
            path.display(),
            MAX_FILE_BYTES / 1024
        );
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))
}

/// Validates a set as the authority will; on problems prints each on its own
/// line to stderr and fails saying `consequence`.
fn validate_locally(dir: &Path, files: &[PolicyFile], consequence: &str) -> anyhow::Result<()> {
    let files: Vec<agentauth_policy::PolicyFile> = files
        .iter()
        .map(|f| agentauth_policy::PolicyFile {
            name: f.name.clone(),
            text: f.text.clone(),
        })
        .collect();
    match PolicySet::load(&files) {
        Ok(_) => Ok(()),
        Err(PolicyError::Invalid(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            bail!(
                "the policy set in {} is invalid ({}): {consequence}",
                dir.display(),
                count(problems.len(), "problem", "problems")
            )
        }
        Err(other) => Err(other.into()),
    }
}

/// Prints the problems of an `invalid_policy` refusal to stderr, one a line;
/// returns how many there were.
fn print_problems(answer: &crate::admin_client::Answer) -> usize {
    let Some(refusal) = answer.refusal() else {
        return 0;
    };
    let problems = problems_in(&refusal);
    for problem in &problems {
        eprintln!("{problem}");
    }
    problems.len()
}

/// The problems an `invalid_policy` refusal lists; none for any other error.
fn problems_in(refusal: &OAuthError) -> Vec<Problem> {
    if refusal.error != "invalid_policy" {
        return Vec::new();
    }
    let listed = refusal.problems.iter().flatten();
    listed
        .map(|p| Problem {
            file: p.file.clone(),
            line: p.line,
            column: p.column,
            message: p.message.clone(),
        })
        .collect()
}

/// `N things`, singular when one.
fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The full view of a stored version.
async fn fetch(conn: &Connection, version: i64) -> anyhow::Result<PolicyVersionDetail> {
    conn.admin(Method::GET, &format!("/v1/policies/{version}"))
        .await
}

/// Unix seconds as RFC 3339.
fn time(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

/// One line of `policy list`.
fn version_line(v: &PolicyVersion) -> String {
    format!(
        "v{:<5} {:<6} {:>4} policies  {}  sha256 {}",
        v.version,
        if v.active { "active" } else { "-" },
        v.policy_count,
        time(v.created_at),
        v.digest.get(..12).unwrap_or(&v.digest)
    )
}

/// What `policy show` prints: a line per policy, then each file.
fn show_text(view: &PolicyVersionDetail) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "policy set version {}{} ({}, sha256 {})",
        view.version,
        if view.active { ", active" } else { "" },
        count(
            usize::try_from(view.policy_count).unwrap_or(0),
            "policy",
            "policies"
        ),
        view.digest
    )?;
    let rows: Vec<[String; 4]> = view
        .policies
        .iter()
        .map(|p| {
            let approval = if p.approval {
                match &p.approvers {
                    Some(group) => format!("approval required (approvers: {group})"),
                    None => "approval required".to_owned(),
                }
            } else {
                "-".to_owned()
            };
            [
                p.id.clone(),
                p.effect.clone(),
                approval,
                format!("{}:{}", p.file, p.line),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (id_width, effect_width, approval_width) = (width(0), width(1), width(2));
    for [id, effect, approval, place] in &rows {
        writeln!(
            out,
            "{id:<id_width$}  {effect:<effect_width$}  {approval:<approval_width$}  {place}"
        )?;
    }
    for file in &view.files {
        writeln!(out, "\n// file: {}", file.name)?;
        out.push_str(&file.text);
        if !file.text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// A unified diff of two sets, file by file in name order; empty when they
/// are the same. A file only in `a` is removed, one only in `b` is added.
fn diff_sets(a_label: &str, a: &[PolicyFile], b_label: &str, b: &[PolicyFile]) -> String {
    let mut names: BTreeMap<&str, (Option<&str>, Option<&str>)> = BTreeMap::new();
    for f in a {
        names.entry(&f.name).or_default().0 = Some(&f.text);
    }
    for f in b {
        names.entry(&f.name).or_default().1 = Some(&f.text);
    }
    let mut out = String::new();
    for (name, (old, new)) in names {
        if old == new {
            continue;
        }
        let old_header =
            old.map_or_else(|| "/dev/null".to_owned(), |_| format!("{a_label}/{name}"));
        let new_header =
            new.map_or_else(|| "/dev/null".to_owned(), |_| format!("{b_label}/{name}"));
        let diff = similar::TextDiff::from_lines(old.unwrap_or(""), new.unwrap_or(""));
        out.push_str(
            &diff
                .unified_diff()
                .header(&old_header, &new_header)
                .to_string(),
        );
    }
    out
}

/// What `policy test` prints for a decision.
fn decision_text(decision: &PolicyDecision) -> String {
    let policies = &decision.policies;
    let mut out = match &decision.outcome {
        PolicyOutcome::NeedsApproval {
            approvers: Some(group),
        } => format!("decision: needs approval (approvers: {group})\n"),
        PolicyOutcome::NeedsApproval { approvers: None } => "decision: needs approval\n".to_owned(),
        PolicyOutcome::Permit => "decision: permit\n".to_owned(),
        PolicyOutcome::Deny => "decision: deny\n".to_owned(),
    };
    if policies.is_empty() {
        if decision.outcome == PolicyOutcome::Deny {
            out.push_str("determined by: no policy permits it (default deny)\n");
        } else {
            out.push_str("determined by: no policy\n");
        }
    } else {
        out.push_str(&format!("determined by: {}\n", policies.join(", ")));
    }
    if !decision.errors.is_empty() {
        out.push_str("errors:\n");
        for e in &decision.errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    /// An answer of the authority, as JSON, read as the CLI reads it.
    fn read<T: DeserializeOwned>(answer: Value) -> T {
        serde_json::from_value(answer).expect("the authority's shape")
    }

    fn file(name: &str, text: &str) -> PolicyFile {
        PolicyFile {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_dir_gives_only_its_cedar_files_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.cedar"), "// b\n").unwrap();
        std::fs::write(dir.path().join("a.cedar"), "// a\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not policy").unwrap();
        std::fs::write(dir.path().join("c.cedar.bak"), "old").unwrap();
        std::fs::create_dir(dir.path().join("nested.cedar")).unwrap();
        std::fs::write(dir.path().join("nested.cedar").join("z.cedar"), "// z").unwrap();
        let files = read_dir(dir.path()).unwrap();
        assert_eq!(
            files,
            vec![file("a.cedar", "// a\n"), file("b.cedar", "// b\n")]
        );
    }

    #[test]
    fn a_dir_without_cedar_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("readme.md"), "hi").unwrap();
        let e = read_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no .cedar files"), "{e}");
        assert!(read_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_file_over_the_bound_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.cedar"), "x".repeat(MAX_FILE_BYTES)).unwrap();
        assert_eq!(read_dir(dir.path()).unwrap()[0].text.len(), MAX_FILE_BYTES);
        std::fs::write(dir.path().join("b.cedar"), "x".repeat(MAX_FILE_BYTES + 1)).unwrap();
        let e = read_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("b.cedar") && e.contains("256 KiB"), "{e}");
    }

    #[test]
    fn an_invalid_set_is_refused_locally_with_a_count() {
        let dir = tempfile::tempdir().unwrap();
        let files = [file("bad.cedar", "permit(principal, action, resource")];
        let e = validate_locally(dir.path(), &files, "nothing was loaded")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is invalid (1 problem"), "{e}");
        assert!(e.ends_with("nothing was loaded"), "{e}");
    }

    #[test]
    fn the_diff_shows_changed_added_and_removed_files() {
        let a = [
            file("same.cedar", "permit(principal, action, resource);\n"),
            file("changed.cedar", "line one\nline two\n"),
            file("removed.cedar", "gone\n"),
        ];
        let b = [
            file("added.cedar", "new\n"),
            file("changed.cedar", "line one\nline 2\n"),
            file("same.cedar", "permit(principal, action, resource);\n"),
        ];
        let diff = diff_sets("v1", &a, "v2", &b);
        assert!(
            diff.contains("--- /dev/null\n+++ v2/added.cedar\n"),
            "{diff}"
        );
        assert!(diff.contains("+new\n"), "{diff}");
        assert!(
            diff.contains("--- v1/changed.cedar\n+++ v2/changed.cedar\n"),
            "{diff}"
        );
        assert!(diff.contains("-line two\n+line 2\n"), "{diff}");
        assert!(
            diff.contains("--- v1/removed.cedar\n+++ /dev/null\n"),
            "{diff}"
        );
        assert!(diff.contains("-gone\n"), "{diff}");
        assert!(!diff.contains("same.cedar"), "{diff}");
        // In name order.
        let added = diff.find("added.cedar").unwrap();
        let changed = diff.find("changed.cedar").unwrap();
        let removed = diff.find("removed.cedar").unwrap();
        assert!(added < changed && changed < removed);
    }

    #[test]
    fn the_authoritys_problems_print_as_file_line_column() {
        let refusal = json!({
            "error": "invalid_policy",
            "error_description": "the policy set is invalid",
            "problems": [
                {"file": "a.cedar", "line": 3, "column": 7, "message": "unknown attribute"},
                {"file": "(set)", "line": 0, "column": 0, "message": "too many files"}
            ]
        });
        let shown: Vec<String> = problems_in(&read(refusal))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["a.cedar:3:7: unknown attribute", "(set): too many files"]
        );
        let other = json!({"error": "invalid_request", "error_description": "", "problems": []});
        assert!(problems_in(&read(other)).is_empty());
    }

    #[test]
    fn show_lists_policies_then_files() {
        let view = json!({
            "version": 2, "digest": "abc", "policy_count": 2, "active": true,
            "created_at": 0,
            "policies": [
                {"id": "pay", "file": "a.cedar", "line": 3, "effect": "permit",
                 "approval": true, "approvers": "finance"},
                {"id": "a-much-longer-id", "file": "b.cedar", "line": 1, "effect": "forbid",
                 "approval": false, "approvers": null}
            ],
            "files": [{"name": "a.cedar", "text": "// a"}, {"name": "b.cedar", "text": "// b\n"}]
        });
        assert_eq!(
            show_text(&read(view)).unwrap(),
            "policy set version 2, active (2 policies, sha256 abc)\n\
             pay               permit  approval required (approvers: finance)  a.cedar:3\n\
             a-much-longer-id  forbid  -                                       b.cedar:1\n\
             \n// file: a.cedar\n// a\n\n// file: b.cedar\n// b\n"
        );
    }

    #[test]
    fn identical_sets_have_no_diff() {
        let a = [file("a.cedar", "x\n")];
        assert_eq!(diff_sets("v1", &a, "v2", &a), "");
    }

    #[test]
    fn decisions_are_printed_with_what_determined_them() {
        let permit = json!({"decision": "permit", "policies": ["p1", "p2"], "errors": []});
        assert_eq!(
            decision_text(&read(permit)),
            "decision: permit\ndetermined by: p1, p2\n"
        );
        let approval = json!({
            "decision": "needs_approval", "approvers": "finance",
            "policies": ["big-refund"], "errors": []
        });
        assert_eq!(
            decision_text(&read(approval)),
            "decision: needs approval (approvers: finance)\ndetermined by: big-refund\n"
        );
        let default_deny =
            json!({"decision": "deny", "policies": [], "errors": ["f.cedar:3 failed"]});
        assert_eq!(
            decision_text(&read(default_deny)),
            "decision: deny\ndetermined by: no policy permits it (default deny)\nerrors:\n  f.cedar:3 failed\n"
        );
        let forbid = json!({"decision": "deny", "policies": ["no-prod"], "errors": []});
        assert_eq!(
            decision_text(&read(forbid)),
            "decision: deny\ndetermined by: no-prod\n"
        );
    }

    #[test]
    fn the_outcome_serialisation_is_what_the_printer_reads() {
        let decision = agentauth_policy::Decision {
            outcome: agentauth_policy::Outcome::NeedsApproval {
                approvers: Some("ops".into()),
            },
            policies: vec!["p".into()],
            errors: vec![],
        };
        assert_eq!(
            decision_text(&read(serde_json::to_value(decision).unwrap())),
            "decision: needs approval (approvers: ops)\ndetermined by: p\n"
        );
    }

    #[test]
    fn a_version_line_marks_the_active_one() {
        let line = version_line(&read(json!({
            "version": 3, "digest": "0123456789abcdef0123", "policy_count": 7,
            "created_at": 0, "active": true
        })));
        assert_eq!(
            line,
            "v3     active    7 policies  1970-01-01T00:00:00Z  sha256 0123456789ab"
        );
    }
}
