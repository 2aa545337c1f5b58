//! The third-party toolchains the checks run in: a Python virtualenv with
//! `requirements.txt` and an `npm ci` of `package-lock.json`, each installed
//! once under `target/interop/` in a directory named after its lock file's
//! content and reused by later runs; and the rule for a machine without
//! python3, npm or the package registries: the check is skipped with one
//! `skipped: …` line, unless `AGENTAUTH_TEST_INTEROP=required` makes it fail.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use serde_json::Value;

use crate::support::output_within;

/// Where the requirement files and check scripts live.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// `target/interop`: next to the test binary (`target/<profile>/deps/…`).
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_owned())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("interop")
}

/// A short name for the content of `files`, so a changed lock file gets a fresh install.
fn content_key(files: &[&str]) -> String {
    let mut hasher = DefaultHasher::new();
    for file in files {
        std::fs::read(source_dir().join(file))
            .unwrap_or_default()
            .hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Runs an install step, or says why it failed in one line (a program that
/// is not installed is such a failure, not a panic).
fn step(cmd: &mut Command, what: &str, within: Duration) -> Result<(), String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(within) {
        Ok(output) => output.map_err(|e| format!("{what}: {e}"))?,
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            return Err(format!("{what} did not finish within {within:?}"));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("{what} failed ({}): {last}", output.status))
}

/// The virtualenv's python, with `requirements.txt` installed.
fn python_env() -> Result<PathBuf, String> {
    let dir = cache_dir().join(format!("venv-{}", content_key(&["requirements.txt"])));
    let python = dir.join("bin/python");
    let marker = dir.join(".installed");
    if marker.exists() {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(cache_dir()).map_err(|e| e.to_string())?;
    step(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv",
        Duration::from_secs(120),
    )?;
    step(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(source_dir().join("requirements.txt")),
        "pip install -r tests/interop/requirements.txt (is the package registry reachable?)",
        Duration::from_secs(600),
    )?;
    std::fs::write(&marker, b"").map_err(|e| e.to_string())?;
    Ok(python)
}

/// A directory with `node_modules` from `package-lock.json` and the check script.
fn node_env() -> Result<PathBuf, String> {
    let dir = cache_dir().join(format!(
        "node-{}",
        content_key(&["package.json", "package-lock.json"])
    ));
    let marker = dir.join(".installed");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(source_dir().join(file), dir.join(file)).map_err(|e| e.to_string())?;
        }
        step(
            Command::new("node").arg("--version"),
            "node --version",
            Duration::from_secs(30),
        )?;
        step(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            "npm ci in tests/interop (is the package registry reachable?)",
            Duration::from_secs(600),
        )?;
        std::fs::write(&marker, b"").map_err(|e| e.to_string())?;
    }
    // ESM resolves `node_modules` from the script's own directory, so the
    // script runs from the install; copied on every run so edits take effect.
    std::fs::copy(source_dir().join("js/checks.mjs"), dir.join("checks.mjs"))
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Which library ecosystem a check runs in.
#[derive(Debug, Clone, Copy)]
pub enum Lang {
    /// `py/checks.py` in the virtualenv.
    Python,
    /// `js/checks.mjs` with the npm install.
    Node,
}

static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static NODE: OnceLock<Result<PathBuf, String>> = OnceLock::new();

fn command(lang: Lang) -> Result<Command, String> {
    match lang {
        Lang::Python => {
            let python = PYTHON.get_or_init(python_env).clone()?;
            let mut cmd = Command::new(python);
            cmd.arg(source_dir().join("py/checks.py"));
            Ok(cmd)
        }
        Lang::Node => {
            let dir = NODE.get_or_init(node_env).clone()?;
            let mut cmd = Command::new("node");
            cmd.arg(dir.join("checks.mjs")).current_dir(dir);
            Ok(cmd)
        }
    }
}

/// Runs `check` in `lang` with `input` and returns its JSON answer, or
/// `None` (after one `skipped:` line) when the toolchain cannot be had and
/// `AGENTAUTH_TEST_INTEROP` is not `required`.
pub async fn run(lang: Lang, check: &str, input: Value) -> Option<Value> {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_owned();
    let check = check.to_owned();
    // The checks call servers on this test's runtime: wait off its thread.
    tokio::task::spawn_blocking(move || run_blocking(lang, &check, &input, &test))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn run_blocking(lang: Lang, check: &str, input: &Value, test: &str) -> Option<Value> {
    let mut cmd = match command(lang) {
        Ok(cmd) => cmd,
        Err(why) => {
            if std::env::var("AGENTAUTH_TEST_INTEROP").as_deref() == Ok("required") {
                panic!("{why}, and AGENTAUTH_TEST_INTEROP=required");
            }
            // Straight to stderr: the harness hides the output of a test that passes.
            let _ = writeln!(
                std::io::stderr().lock(),
                "skipped: {test}: {why}; set AGENTAUTH_TEST_INTEROP=required to fail instead"
            );
            return None;
        }
    };
    cmd.arg(check).env("INTEROP_INPUT", input.to_string());
    let output = output_within(&mut cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let answer = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok());
    match answer {
        Some(answer) => Some(answer),
        None => panic!("{check} printed no JSON answer\nstdout: {stdout}\nstderr: {stderr}"),
    }
}
