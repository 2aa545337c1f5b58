//! Permissions such as `read:customer` and the OAuth `scope` sets made of them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ScopeError};

/// Most permissions one scope or one registry entry may hold.
const MAX_PERMISSIONS: usize = 64;
/// Longest single permission string.
const MAX_PERMISSION_LEN: usize = 128;

/// One permission such as `read:customer`: 1–128 characters from
/// `[A-Za-z0-9:_.*/-]`, so it can sit in a space-separated OAuth scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(String);

impl Permission {
    /// Parses one permission.
    pub fn new(p: &str) -> Result<Self, Error> {
        let ok = !p.is_empty()
            && p.len() <= MAX_PERMISSION_LEN
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'*' | b'/' | b'-')
            });
        if ok {
            Ok(Self(p.to_owned()))
        } else {
            let shown: String = p.chars().take(40).collect();
            Err(ScopeError::Permission(shown).into())
        }
    }

    /// The permission string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of permissions, written as an OAuth space-separated `scope`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope(BTreeSet<Permission>);

impl Scope {
    /// Parses a space-separated scope string; duplicates collapse.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::from_strs(s.split(' ').filter(|p| !p.is_empty()))
    }

    /// Builds a scope from individual permission strings.
    pub fn from_strs<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let mut set = BTreeSet::new();
        for item in items {
            set.insert(Permission::new(item)?);
            if set.len() > MAX_PERMISSIONS {
                return Err(ScopeError::TooMany(MAX_PERMISSIONS).into());
            }
        }
        Ok(Self(set))
    }

    /// Whether the scope grants `p`.
    pub fn contains(&self, p: &str) -> bool {
        self.0.iter().any(|have| have.as_str() == p)
    }

    /// Whether every permission here is also in `other`.
    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The permissions here that `other` lacks.
    pub fn missing_from(&self, other: &Scope) -> Vec<String> {
        self.0.difference(&other.0).map(|p| p.0.clone()).collect()
    }

    /// Whether the scope holds no permission.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many permissions the scope holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The permissions held both here and in `other`.
    pub fn intersection(&self, other: &Scope) -> Scope {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// The permissions in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
    }

    /// The permissions as owned strings, for storage and JSON.
    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().map(|p| p.0.clone()).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(p.as_str())?;
            first = false;
        }
        Ok(())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parses_space_separated_and_prints_sorted() {
        let s = Scope::parse("write:customer  read:customer read:customer").unwrap();
        assert_eq!(s.to_string(), "read:customer write:customer");
        assert!(s.contains("read:customer"));
        assert!(!s.contains("read"));
    }

    #[test]
    fn subset_and_missing_report_the_difference() {
        let held = Scope::parse("read:customer read:orders").unwrap();
        let asked = Scope::parse("read:customer write:customer").unwrap();
        assert!(!asked.is_subset(&held));
        assert_eq!(asked.missing_from(&held), vec!["write:customer".to_owned()]);
        assert!(Scope::parse("read:orders").unwrap().is_subset(&held));
    }

    #[test]
    fn bad_permissions_and_oversized_scopes_are_refused() {
        assert!(Permission::new("read customer").is_err());
        assert!(Permission::new("").is_err());
        assert!(Permission::new("a\"b").is_err());
        assert!(Permission::new(&"a".repeat(129)).is_err());
        let many: Vec<String> = (0..65).map(|i| format!("p{i}")).collect();
        assert!(Scope::from_strs(many.iter().map(String::as_str)).is_err());
    }
}
