//! When a pull's open write transaction commits: decisions only.
//!
//! A pull keeps one local transaction open across pages, because committing every page of
//! a large pull costs more than writing its rows (each commit rewrites the index pages it
//! touched). Holding it also holds other writers back, so it commits once it has been open
//! [`CommitPolicy::max_open`] or holds [`CommitPolicy::max_rows`] rows, whichever comes
//! first, and at the end of the pull. The driver in [`crate::sync`] carries this out.

use std::time::Duration;

/// How long and how large a pull's transaction may grow before it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPolicy {
    /// The longest a transaction stays open, and so about the longest another writer waits
    /// for it (plus the write of one page, which is not interrupted).
    pub max_open: Duration,
    /// The most row operations one transaction carries: bounds the write-ahead log and
    /// what a crash rolls back on a machine fast enough never to reach `max_open`.
    pub max_rows: usize,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            max_open: Duration::from_secs(1),
            max_rows: 50_000,
        }
    }
}

impl CommitPolicy {
    /// Whether a transaction open for `open_for` and carrying `rows` row operations
    /// commits now.
    pub fn due(&self, open_for: Duration, rows: usize) -> bool {
        open_for >= self.max_open || rows >= self.max_rows
    }

    /// How much longer a transaction open for `open_for` may stay open.
    pub fn left(&self, open_for: Duration) -> Duration {
        self.max_open.saturating_sub(open_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_commits_when_it_is_old_or_large_enough() {
        let policy = CommitPolicy {
            max_open: Duration::from_millis(1_000),
            max_rows: 100,
        };
        let ms = Duration::from_millis;
        // (open for, rows, due, time left)
        let cases = [
            (ms(0), 0, false, ms(1_000)),
            (ms(999), 99, false, ms(1)),
            (ms(1_000), 0, true, ms(0)),
            (ms(5_000), 1, true, ms(0)),
            (ms(10), 100, true, ms(990)),
            (ms(10), 1_000, true, ms(990)),
        ];
        for (open_for, rows, due, left) in cases {
            assert_eq!(policy.due(open_for, rows), due, "{open_for:?}, {rows} rows");
            assert_eq!(policy.left(open_for), left, "{open_for:?}");
        }
    }

    #[test]
    fn the_default_bounds_a_waiting_writer_to_about_a_second() {
        let policy = CommitPolicy::default();
        assert_eq!(policy.max_open, Duration::from_secs(1));
        assert!(!policy.due(Duration::from_millis(999), policy.max_rows - 1));
    }
}
