//! `PolicyError`, and the problems of an invalid policy set with the file, line
//! and column where a person finds them.

use std::fmt;

use thiserror::Error as ThisError;

/// Every way loading a policy set or building a decision fails.
#[derive(Debug, ThisError, Clone)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy set does not parse or does not validate against the
    /// schema; each problem names its file, line and column.
    #[error("the policy set is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// A decision could not be asked: a name in it is not a valid Cedar value.
    #[error("the policy request is invalid: {0}")]
    Request(#[from] RequestError),
}

/// Which part of a policy query Cedar refused, with Cedar's own error.
#[derive(Debug, ThisError, Clone)]
#[non_exhaustive]
pub enum RequestError {
    /// An entity type or agent name is not a valid Cedar name.
    #[error("a name is not a valid Cedar name: {0}")]
    Name(Cause),
    /// An entity (principal, target, resource) could not be built.
    #[error("an entity could not be built: {0}")]
    Entity(Cause),
    /// The request context could not be built.
    #[error("the request context could not be built: {0}")]
    Context(Cause),
    /// Cedar refused the request itself.
    #[error("the request could not be built: {0}")]
    Request(Cause),
    /// The candidate policies of a query could not be put together.
    #[error("the candidate policies could not be gathered: {0}")]
    Candidates(Cause),
}

/// A typed cause kept behind a cheap clone; downcast it to Cedar's error type.
#[derive(Debug, Clone)]
pub struct Cause(pub std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub(crate) fn of(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(e))
    }
}

/// Turns Cedar's error at one step of building a query into a [`PolicyError`].
pub(crate) fn refused<E>(step: fn(Cause) -> RequestError) -> impl FnOnce(E) -> PolicyError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| PolicyError::Request(step(Cause::of(e)))
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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
