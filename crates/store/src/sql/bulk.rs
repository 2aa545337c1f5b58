//! Multi-row statements: one statement inserts or looks up many rows, so a
//! batch of writes costs a handful of database round trips whatever its size.
//!
//! A statement is built once for each run length, from 1 to [`MAX_ROWS`]: a
//! batch of up to 64 is one statement (each statement is a round trip, and a
//! round trip on a busy machine costs far more than preparing a new form),
//! and each connection caches the forms it has prepared (see the stores'
//! statement cache capacity).

use std::ops::Range;
use std::sync::OnceLock;

/// The most rows one statement carries: 64 audit records bind 1,088
/// parameters, well under either database's limit.
pub(super) const MAX_ROWS: usize = 64;

/// How many prepared statements each connection keeps: every form of the
/// five multi-row statements (5 × [`MAX_ROWS`]) and the single statements.
pub(crate) const STATEMENT_CACHE_CAPACITY: usize = 512;

/// A statement repeated over rows: `head`, one group of `width` numbered
/// parameters per row (`($1, $2), ($3, $4)`), then `tail`.
pub(super) struct Bulk {
    head: &'static str,
    width: usize,
    tail: &'static str,
    built: [OnceLock<String>; MAX_ROWS],
}

impl Bulk {
    /// A statement whose rows bind `width` parameters each.
    pub(super) const fn new(head: &'static str, width: usize, tail: &'static str) -> Self {
        Self {
            head,
            width,
            tail,
            built: [const { OnceLock::new() }; MAX_ROWS],
        }
    }

    /// The statement for `rows` rows, a run length from [`runs`].
    pub(super) fn sql(&'static self, rows: usize) -> &'static str {
        assert!(
            (1..=MAX_ROWS).contains(&rows),
            "a run is 1 to {MAX_ROWS} rows, not {rows}"
        );
        self.built[rows - 1].get_or_init(|| {
            let mut sql = String::from(self.head);
            for row in 0..rows {
                sql.push_str(if row == 0 { "(" } else { ", (" });
                for column in 0..self.width {
                    if column > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('$');
                    sql.push_str(&(row * self.width + column + 1).to_string());
                }
                sql.push(')');
            }
            sql.push_str(self.tail);
            sql
        })
    }
}

/// Splits `0..n` into consecutive runs of [`MAX_ROWS`] and one shorter run
/// for the rest: 37 items are one run, 150 are runs of 64, 64 and 22.
pub(super) fn runs(n: usize) -> impl Iterator<Item = Range<usize>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = n - start;
        if left == 0 {
            return None;
        }
        let len = left.min(MAX_ROWS);
        let run = start..start + len;
        start += len;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static PAIRS: Bulk = Bulk::new("INSERT INTO t (a, b) VALUES ", 2, " ON CONFLICT DO NOTHING");
    static LIST: Bulk = Bulk::new("SELECT a FROM t WHERE a IN (", 1, ")");

    #[test]
    fn numbers_parameters_row_after_row() {
        assert_eq!(
            PAIRS.sql(2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            LIST.sql(4),
            "SELECT a FROM t WHERE a IN (($1), ($2), ($3), ($4))"
        );
        assert!(
            PAIRS
                .sql(64)
                .ends_with("($127, $128) ON CONFLICT DO NOTHING")
        );
    }

    #[test]
    #[should_panic(expected = "1 to 64 rows")]
    fn refuses_a_length_that_is_not_a_run() {
        let _ = PAIRS.sql(65);
    }

    #[test]
    fn runs_cover_every_item_once_in_as_few_statements_as_fit() {
        for n in 0..300 {
            let all: Vec<Range<usize>> = runs(n).collect();
            assert_eq!(all.iter().map(ExactSizeIterator::len).sum::<usize>(), n);
            let mut next = 0;
            for run in &all {
                assert_eq!(run.start, next, "runs are consecutive");
                assert!((1..=MAX_ROWS).contains(&run.len()));
                next = run.end;
            }
            assert_eq!(all.len(), n.div_ceil(MAX_ROWS));
        }
        assert_eq!(runs(37).map(|r| r.len()).collect::<Vec<_>>(), vec![37]);
        assert_eq!(
            runs(150).map(|r| r.len()).collect::<Vec<_>>(),
            vec![64, 64, 22]
        );
    }
}
