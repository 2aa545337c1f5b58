//! Agent identities: trust domains, agent names and SPIFFE IDs, parsed once
//! and valid by construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, IdentityError, SpiffeIdFault};

/// Longest SPIFFE ID we accept, as the SPIFFE spec bounds URIs.
const MAX_SPIFFE_ID_LEN: usize = 2048;

/// A SPIFFE trust domain such as `agentauth.local`: lowercase letters, digits,
/// `.`, `-` and `_`, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain name.
    pub fn new(name: &str) -> Result<Self, Error> {
        if is_trust_domain(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(IdentityError::TrustDomain(truncate(name).to_owned()).into())
        }
    }

    /// The trust domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent's registry name: `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(String);

impl AgentName {
    /// Parses an agent name.
    pub fn new(name: &str) -> Result<Self, Error> {
        let bytes = name.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes[1.min(bytes.len())..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= 63 {
            Ok(Self(name.to_owned()))
        } else {
            Err(IdentityError::AgentName(truncate(name).to_owned()).into())
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AgentName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

/// A SPIFFE ID, `spiffe://<trust-domain>/<path>`. Agents are
/// `spiffe://<td>/agent/<name>`; the authority itself is `spiffe://<td>/authority`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    domain_len: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID per the SPIFFE-ID spec (no query,
    /// fragment, port, user info, empty or dot segments).
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let bad = |fault| -> Error {
            IdentityError::SpiffeId {
                uri: truncate(uri).to_owned(),
                fault,
            }
            .into()
        };
        if uri.len() > MAX_SPIFFE_ID_LEN {
            return Err(bad(SpiffeIdFault::TooLong));
        }
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad(SpiffeIdFault::Scheme))?;
        let (domain, path) = match slash(rest.as_bytes()) {
            Some(i) => (&rest[..i], &rest.as_bytes()[i + 1..]),
            None => (rest, &[][..]),
        };
        if !is_trust_domain(domain) {
            return Err(bad(SpiffeIdFault::TrustDomain));
        }
        // After the domain's '/', every segment must be valid ("spiffe://td/" too).
        if domain.len() < rest.len() && !is_path(path) {
            return Err(bad(SpiffeIdFault::PathSegment));
        }
        Ok(Self {
            uri: uri.to_owned(),
            domain_len: domain.len(),
        })
    }

    /// The SPIFFE ID of the agent `name` in `domain`.
    pub fn agent(domain: &TrustDomain, name: &AgentName) -> Self {
        let uri = format!("spiffe://{domain}/agent/{name}");
        Self {
            uri,
            domain_len: domain.as_str().len(),
        }
    }

    /// The SPIFFE ID of the authority itself, the audience of tokens for its own API.
    pub fn authority(domain: &TrustDomain) -> Self {
        let uri = format!("spiffe://{domain}/authority");
        Self {
            uri,
            domain_len: domain.as_str().len(),
        }
    }

    /// The trust domain part.
    pub fn trust_domain(&self) -> &str {
        &self.uri["spiffe://".len().."spiffe://".len() + self.domain_len]
    }

    /// The path part, starting with `/` (empty for a bare trust domain).
    pub fn path(&self) -> &str {
        &self.uri["spiffe://".len() + self.domain_len..]
    }

    /// The agent name if this is `spiffe://<td>/agent/<name>`.
    pub fn agent_name(&self) -> Option<AgentName> {
        AgentName::new(self.path().strip_prefix("/agent/")?).ok()
    }

    /// Whether this ID belongs to `domain`.
    pub fn is_in(&self, domain: &TrustDomain) -> bool {
        self.trust_domain() == domain.as_str()
    }

    /// The full URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.uri)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Parsed(Self::parse, "a SPIFFE ID"))
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.uri
    }
}

impl Serialize for AgentName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgentName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Parsed(Self::new, "an agent name"))
    }
}

impl AsRef<str> for AgentName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Compares an identifier with its text, so callers and tests need not copy it.
macro_rules! eq_text {
    ($ty:ty) => {
        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other
            }
        }
    };
}
pub(crate) use eq_text;

eq_text!(TrustDomain);
eq_text!(AgentName);
eq_text!(SpiffeId);

/// A serde visitor that validates a string into `T` without copying it first.
pub(crate) struct Parsed<T>(
    pub(crate) fn(&str) -> Result<T, Error>,
    pub(crate) &'static str,
);

impl<T> serde::de::Visitor<'_> for Parsed<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

/// Whether `name` is a trust domain: 1 to 255 bytes of lowercase letters,
/// digits, `.`, `-` and `_`. Checks without allocating (claims carry three
/// SPIFFE IDs, validated on every token check).
fn is_trust_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_'))
}

/// The index of the first `/`, by a plain loop: SPIFFE IDs are short, and
/// `str::find` costs more to set up than to scan them.
fn slash(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'/')
}

/// Whether the `/`-separated segments of `path` are all valid.
fn is_path(mut path: &[u8]) -> bool {
    loop {
        match slash(path) {
            Some(i) => {
                if !is_path_segment(&path[..i]) {
                    return false;
                }
                path = &path[i + 1..];
            }
            None => return is_path_segment(path),
        }
    }
}

/// Whether `segment` is a valid SPIFFE ID path segment: not empty, not `.`
/// or `..`, only letters, digits, `.`, `-` and `_`.
fn is_path_segment(segment: &[u8]) -> bool {
    !segment.is_empty()
        && segment != b"."
        && segment != b".."
        && segment
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_'))
}

/// Keeps error messages short when the input is attacker-sized.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_follow_the_registry_pattern() {
        assert!(AgentName::new("reader").is_ok());
        assert!(AgentName::new("0-a").is_ok());
        assert!(AgentName::new(&"a".repeat(63)).is_ok());
        assert!(AgentName::new(&"a".repeat(64)).is_err());
        assert!(AgentName::new("").is_err());
        assert!(AgentName::new("-a").is_err());
        assert!(AgentName::new("Reader").is_err());
        assert!(AgentName::new("a_b").is_err());
        assert!(AgentName::new("a/b").is_err());
    }

    #[test]
    fn agent_spiffe_id_round_trips_to_its_name() {
        let td = TrustDomain::new("agentauth.local").unwrap();
        let id = SpiffeId::agent(&td, &AgentName::new("reader").unwrap());
        assert_eq!(id.as_str(), "spiffe://agentauth.local/agent/reader");
        let parsed = SpiffeId::parse(id.as_str()).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.trust_domain(), "agentauth.local");
        assert_eq!(parsed.agent_name().unwrap().as_str(), "reader");
        assert!(parsed.is_in(&td));
        assert!(SpiffeId::authority(&td).agent_name().is_none());
    }

    #[test]
    fn malformed_spiffe_ids_are_refused() {
        for bad in [
            "https://agentauth.local/agent/a",
            "spiffe://",
            "spiffe://UPPER/agent/a",
            "spiffe://td/agent//a",
            "spiffe://td/agent/../a",
            "spiffe://td/agent/a?x=1",
            "spiffe://td:80/agent/a",
            "spiffe://td/agent/a/",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn each_spiffe_id_rule_names_its_fault() {
        let fault = |uri: &str| match SpiffeId::parse(uri) {
            Err(Error::Identity(IdentityError::SpiffeId { fault, .. })) => Some(fault),
            Err(e) => panic!("{uri}: {e}"),
            Ok(_) => None,
        };
        for good in [
            "spiffe://td",
            "spiffe://a-b_c.9/agent/Reader.v2_x-1",
            "spiffe://td/authority",
            "spiffe://td/.a/a..b/...",
        ] {
            assert_eq!(fault(good), None, "{good} was refused");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        let cases = [
            (long.as_str(), SpiffeIdFault::TooLong),
            ("SPIFFE://td/a", SpiffeIdFault::Scheme),
            ("spiffe://", SpiffeIdFault::TrustDomain),
            ("spiffe:///a", SpiffeIdFault::TrustDomain),
            ("spiffe://Td/a", SpiffeIdFault::TrustDomain),
            ("spiffe://t d/a", SpiffeIdFault::TrustDomain),
            ("spiffe://td/", SpiffeIdFault::PathSegment),
            ("spiffe://td/a//b", SpiffeIdFault::PathSegment),
            ("spiffe://td/a/.", SpiffeIdFault::PathSegment),
            ("spiffe://td/../a", SpiffeIdFault::PathSegment),
            ("spiffe://td/a%20b", SpiffeIdFault::PathSegment),
            ("spiffe://td/a#b", SpiffeIdFault::PathSegment),
            ("spiffe://td/é", SpiffeIdFault::PathSegment),
        ];
        for (uri, want) in cases {
            assert_eq!(fault(uri), Some(want), "{uri}");
        }
        assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
        assert!(TrustDomain::new(&"a".repeat(256)).is_err());
        assert!(TrustDomain::new("").is_err());
    }
}
