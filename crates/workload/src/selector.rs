//! Workload attestation: the selectors a caller on the Unix socket has,
//! read from the kernel (`SO_PEERCRED`: its uid, gid and pid; then the
//! executable behind the pid and its SHA-256), and the selectors an agent's
//! registration entry demands.

use std::collections::BTreeSet;

use crate::WorkloadError;

/// Longest `unix:path:` value, as Linux bounds a path.
const MAX_PATH: usize = 4096;

/// Largest executable hashed for `unix:sha256:`; a bigger one gets no hash
/// selector (so no entry naming a hash matches it).
const MAX_HASHED: u64 = 512 * 1024 * 1024;

/// One selector of a registration entry: `unix:uid:1000`, `unix:gid:1000`,
/// `unix:path:/usr/bin/x` (absolute), `unix:sha256:<64 hex digits>`, or
/// `node:<name>`, which only the node of that name gives its callers (an
/// entry with it is served by that node alone, never by the authority's
/// own socket).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector(String);

impl Selector {
    /// Checks and normalises (hex to lowercase) one selector.
    pub fn parse(text: &str) -> Result<Self, WorkloadError> {
        let bad = |why: &str| WorkloadError::Selector(format!("{why}: {}", shorten(text)));
        if let Some(node) = text.strip_prefix("node:") {
            agentauth_core::AgentName::new(node)
                .map_err(|_| bad("a node name is lowercase letters, digits and dashes"))?;
            return Ok(Self(text.to_owned()));
        }
        let rest = text
            .strip_prefix("unix:")
            .ok_or_else(|| bad("a selector starts with unix: or node:"))?;
        let (kind, value) = rest
            .split_once(':')
            .ok_or_else(|| bad("a selector is unix:KIND:VALUE"))?;
        match kind {
            "uid" | "gid" => {
                if value.is_empty()
                    || value.len() > 10
                    || !value.bytes().all(|b| b.is_ascii_digit())
                    || value.parse::<u32>().is_err()
                {
                    return Err(bad("a uid or gid is a decimal number"));
                }
                Ok(Self(format!(
                    "unix:{kind}:{}",
                    value.parse::<u32>().unwrap_or(0)
                )))
            }
            "path" => {
                if !value.starts_with('/') || value.len() > MAX_PATH || value.contains('\0') {
                    return Err(bad("a path is absolute, at most 4096 bytes"));
                }
                Ok(Self(text.to_owned()))
            }
            "sha256" => {
                if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("a sha256 is 64 hex digits"));
                }
                Ok(Self(format!("unix:sha256:{}", value.to_ascii_lowercase())))
            }
            _ => Err(bad("the kinds are uid, gid, path and sha256")),
        }
    }

    /// The selector as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// At most 80 characters of untrusted text, for an error message.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The selectors a caller was found to have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors(BTreeSet<String>);

impl Selectors {
    /// A set from selectors already known (tests, or another attestor).
    pub fn new(selectors: impl IntoIterator<Item = Selector>) -> Self {
        Self(selectors.into_iter().map(|s| s.0).collect())
    }

    /// Whether an entry demanding `entry` matches: it names at least one
    /// selector, and the caller has every one of them.
    pub fn satisfy<S: AsRef<str>>(&self, entry: &[S]) -> bool {
        !entry.is_empty() && entry.iter().all(|s| self.0.contains(s.as_ref()))
    }

    /// The set with `selector` added: a node adds its own `node:<name>` to
    /// what the kernel says of each caller.
    pub fn with(mut self, selector: Selector) -> Self {
        self.0.insert(selector.0);
        self
    }

    /// The selectors, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The selectors of the process behind a socket peer: `uid`, `gid`, and
    /// when the pid is known and its executable readable, `path` and
    /// `sha256`. The kernel gives the credentials as of the `connect`.
    pub async fn of_peer(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        let mut set = BTreeSet::new();
        set.insert(format!("unix:uid:{uid}"));
        set.insert(format!("unix:gid:{gid}"));
        if let Some(pid) = pid.filter(|p| *p > 0) {
            let exe = format!("/proc/{pid}/exe");
            if let Ok(path) = tokio::fs::read_link(&exe).await
                && let Some(path) = path.to_str()
                && !path.ends_with(" (deleted)")
            {
                set.insert(format!("unix:path:{path}"));
                // Hashed through /proc, so it is the file the process runs
                // even if the path now names another.
                if let Ok(Some(digest)) = tokio::task::spawn_blocking(move || hash_file(&exe)).await
                {
                    set.insert(format!("unix:sha256:{digest}"));
                }
            }
        }
        Self(set)
    }
}

/// SHA-256 of a file of at most [`MAX_HASHED`] bytes, lowercase hex.
fn hash_file(path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_HASHED {
        return None;
    }
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).ok()?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Some(
        context
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_checked_and_normalised() {
        assert_eq!(
            Selector::parse("unix:uid:0").unwrap().as_str(),
            "unix:uid:0"
        );
        assert_eq!(
            Selector::parse("unix:gid:007").unwrap().as_str(),
            "unix:gid:7"
        );
        assert_eq!(
            Selector::parse("node:edge-1").unwrap().as_str(),
            "node:edge-1"
        );
        let hash = "AB".repeat(32);
        assert_eq!(
            Selector::parse(&format!("unix:sha256:{hash}"))
                .unwrap()
                .as_str(),
            format!("unix:sha256:{}", "ab".repeat(32))
        );
        for bad in [
            "uid:0",
            "unix:uid:",
            "unix:uid:-1",
            "unix:uid:99999999999",
            "unix:path:relative/x",
            "unix:sha256:abc",
            "unix:user:root",
            "k8s:ns:default",
            "node:",
            "node:Edge_1",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn an_entry_matches_only_a_caller_with_all_its_selectors() {
        let caller = Selectors::new(
            ["unix:uid:1000", "unix:path:/usr/bin/x"].map(|s| Selector::parse(s).unwrap()),
        );
        assert!(caller.satisfy(&["unix:uid:1000"]));
        assert!(caller.satisfy(&["unix:uid:1000", "unix:path:/usr/bin/x"]));
        assert!(!caller.satisfy(&["unix:uid:1000", "unix:gid:1000"]));
        assert!(
            !caller.satisfy::<&str>(&[]),
            "an entry naming nothing matches nobody"
        );
    }

    #[tokio::test]
    async fn this_process_is_seen_with_its_executable_and_hash() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let seen = Selectors::of_peer(5, 6, Some(pid)).await;
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let digest: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(seen.satisfy(&[
            "unix:uid:5".to_owned(),
            "unix:gid:6".to_owned(),
            format!("unix:path:{}", exe.display()),
            format!("unix:sha256:{digest}"),
        ]));
    }
}
