//! What the service makes of a cycle's outcome, and how long it waits between probes (pure).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::ErrorKind;
use crate::sync::CollectionReport;

/// Whether the server answers, as far as the service knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    Up,
    Down,
}

/// What a finished cycle means for the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The collection synced.
    Synced,
    /// Another process holds the lease and syncs it.
    HeldElsewhere,
    /// The server could not be reached, or answered that it is unavailable, after the
    /// client's retries: stop cycling and probe.
    RemoteDown,
    /// Anything else failed: try again at the next trigger.
    Failed,
}

pub(crate) fn outcome(report: &CollectionReport) -> Outcome {
    match report.error_kind {
        _ if report.held_elsewhere => Outcome::HeldElsewhere,
        None => Outcome::Synced,
        Some(ErrorKind::Unreachable | ErrorKind::Unavailable) => Outcome::RemoteDown,
        Some(_) => Outcome::Failed,
    }
}

/// The waits before each probe of a server that is down: from `min`, doubling up to `max`,
/// each with jitter (up to as much again), without end.
pub(crate) fn probe_delays(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .with_jitter()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_of_cycles() {
        let report = |kind: Option<ErrorKind>, held: bool| CollectionReport {
            error_kind: kind,
            error: kind.map(|k| format!("{k:?}")),
            held_elsewhere: held,
            ..Default::default()
        };
        let cases = [
            (report(None, false), Outcome::Synced),
            (report(None, true), Outcome::HeldElsewhere),
            (
                report(Some(ErrorKind::Unreachable), false),
                Outcome::RemoteDown,
            ),
            (
                report(Some(ErrorKind::Unavailable), false),
                Outcome::RemoteDown,
            ),
            (report(Some(ErrorKind::StoreBusy), false), Outcome::Failed),
            (report(Some(ErrorKind::Auth), false), Outcome::Failed),
            (
                report(Some(ErrorKind::ServerMismatch), false),
                Outcome::Failed,
            ),
        ];
        for (report, expected) in cases {
            assert_eq!(outcome(&report), expected, "{report:?}");
        }
    }

    #[test]
    fn probes_back_off_up_to_the_cap_with_jitter_and_never_end() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(5));
        let delays: Vec<Duration> = probe_delays(min, max).take(50).collect();
        assert_eq!(delays.len(), 50, "never runs out");
        for d in &delays {
            assert!(*d >= min && *d <= 2 * max, "{d:?}");
        }
        assert!(delays[0] < 2 * min, "starts small: {:?}", delays[0]);
        assert!(delays[49] >= max, "reaches the cap: {:?}", delays[49]);
    }
}
