//! `PolicyError`, and the problems of an invalid policy set with the file, line
//! and column where a person finds them.

use std::fmt;

use thiserror::Error as ThisError;

/// Every way loading a policy set or building a decision fails.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy set does not parse or does not validate against the
    /// schema; each problem names its file, line and column.
    #[error("the policy set is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// A decision could not be asked: a name in it is not a valid Cedar value.
    #[error("the policy request is invalid: {0}")]
    Request(String),
}

/// One problem in a policy set, where a person can find it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// The file the problem is in.
    pub file: String,
    /// 1-based line, 0 when the problem concerns the whole file or set.
    pub line: usize,
    /// 1-based column, 0 when the problem concerns the whole file or set.
    pub column: usize,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl Problem {
    /// A problem at a byte offset of `text`.
    pub(crate) fn at(file: &str, text: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_and_column(text, offset);
        Self {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    }

    /// A problem with no position.
    pub(crate) fn whole(file: &str, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 3), (2, 1));
        assert_eq!(line_and_column(text, 8), (3, 1));
        assert_eq!(line_and_column(text, 7), (2, 4));
        assert_eq!(line_and_column(text, 100), (3, 2));
    }
}
