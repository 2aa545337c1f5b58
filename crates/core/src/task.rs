//! Task IDs (`txn`): the handle that ties every token of one piece of work
//! together, so that completing or revoking the task stops all of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::identity::Parsed;
use crate::{Error, IdentityError, random_b64};

/// Longest task ID accepted.
pub const MAX_TASK_ID_LEN: usize = 128;

/// A task ID: 1 to 128 characters of `[A-Za-z0-9-._:]`, chosen by the first
/// agent of the task or minted by the authority as `txn-<random>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    /// Parses a task ID.
    pub fn new(id: &str) -> Result<Self, Error> {
        let valid = !id.is_empty()
            && id.len() <= MAX_TASK_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            let shown: String = id.chars().take(MAX_TASK_ID_LEN).collect();
            Err(IdentityError::TaskId(shown).into())
        }
    }

    /// A fresh task ID with 96 random bits.
    pub fn generate() -> Self {
        Self(format!("txn-{}", random_b64(12)))
    }

    /// The ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

crate::identity::eq_text!(TaskId);

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Parsed(Self::new, "a task ID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet_and_refuses_the_rest() {
        for good in ["t1", "txn-abc_DEF.1:2", &"a".repeat(MAX_TASK_ID_LEN)] {
            assert_eq!(TaskId::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "has space",
            "slash/",
            "ü",
            &"a".repeat(MAX_TASK_ID_LEN + 1),
        ] {
            assert!(
                matches!(
                    TaskId::new(bad),
                    Err(Error::Identity(IdentityError::TaskId(_)))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (TaskId::generate(), TaskId::generate());
        assert_ne!(a, b);
        assert_eq!(TaskId::new(a.as_str()).unwrap(), a);
    }

    #[test]
    fn serde_refuses_an_invalid_id() {
        assert!(serde_json::from_str::<TaskId>("\"a b\"").is_err());
        let id: TaskId = serde_json::from_str("\"t-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"t-1\"");
    }
}
