//! Where the pull of one collection stands, and which page to ask for next.
//!
//! Owns the cursor semantics documented in docs/sync-protocol.md. Pure: no IO, no clock.
//!
//! Directus cannot order-compare uuid keys, so the keyset `(stamp, key) > (S, K)` cannot be
//! asked for. Instead a position inside a group of rows sharing one stamp is held as "the first `seen`
//! rows at stamp S in key order", paged with `offset`, and checked with an anchor: the next
//! request starts one row early and must return the last row already seen first. If it does
//! not, the group changed under the pull and is re-read from its start (re-applying a row is
//! a no-op), so no row is skipped however large the group is.
//!
//! A collection on Directus's standard date fields is pulled in two lanes, each with its own
//! position: rows never updated by `date_created`, then updated rows by `date_updated`. A row
//! leaves the first lane when it is first updated, and enters the second with a stamp later
//! than anything read so far, so it is seen there.

use serde::{Deserialize, Serialize};

use crate::model::{Key, RemoteRow, Stamp};

/// The stored pull position of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum PullPosition {
    /// Nothing pulled yet.
    #[default]
    Start,
    /// Every row stamped at or before `stamp` has been applied.
    After { stamp: Stamp },
    /// Every row stamped before `stamp` has been applied, and the first `seen` rows stamped
    /// exactly `stamp` in key order, the last of which is `last_key`.
    Within {
        stamp: Stamp,
        seen: u64,
        last_key: Option<Key>,
    },
}

/// The rows a pull reads in one ordered walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Rows whose cursor field holds a stamp, by that stamp.
    Cursor,
    /// Rows never updated (their cursor field is empty), by the created field's stamp. Only
    /// for collections with `cursor_created`.
    Created,
}

impl Lane {
    /// The lanes of a collection, in pull order.
    pub fn of(c: &schema::CollectionConfig) -> &'static [Lane] {
        match c.cursor_created {
            Some(_) => &[Lane::Created, Lane::Cursor],
            None => &[Lane::Cursor],
        }
    }
}

/// Which rows a page is read from, by their stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampRange {
    /// Every row that has a stamp.
    All,
    /// Rows stamped after this stamp.
    After(Stamp),
    /// Rows stamped at or after this stamp.
    From(Stamp),
    /// Rows with no version at all, which no pull can see.
    Missing,
}

/// One page request: `limit` rows from `offset` on, of the rows in `stamps` that pass the
/// collection's own filter, in cursor order, then key order.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub lane: Lane,
    pub stamps: StampRange,
    pub offset: u64,
    pub limit: u32,
    /// The key the first returned row must have (the last row of the previous page).
    pub anchor: Option<Key>,
}

/// What a fetched page means for the pull.
#[derive(Debug, Clone, PartialEq)]
pub enum PageOutcome {
    /// Apply `rows`, then store `next`. `done` when the server has nothing further.
    Advance {
        rows: Vec<RemoteRow>,
        next: PullPosition,
        done: bool,
    },
    /// The anchor row moved: re-read the group from `restart` (nothing to apply).
    AnchorLost { restart: PullPosition },
}

/// The request for the page at `position` of `lane`.
pub fn page_request(lane: Lane, position: &PullPosition, page_size: u32) -> PageRequest {
    let (stamps, offset, anchor) = match position {
        PullPosition::Start => (StampRange::All, 0, None),
        PullPosition::After { stamp } => (StampRange::After(*stamp), 0, None),
        PullPosition::Within {
            stamp,
            seen,
            last_key,
        } => {
            let stamps = StampRange::From(*stamp);
            match last_key {
                Some(key) if *seen > 0 => (stamps, seen - 1, Some(key.clone())),
                _ => (stamps, *seen, None),
            }
        }
    };
    // The anchor row is part of the page, so a page never asks for more than the page size
    // (Directus refuses a limit above QUERY_LIMIT_MAX); an anchored page needs room for one
    // more row to make progress.
    let limit = page_size.max(1 + u32::from(anchor.is_some()));
    PageRequest {
        lane,
        stamps,
        offset,
        limit,
        anchor,
    }
}

/// Interprets the rows returned for `request` at `position`. `returned` is how many rows the
/// server sent, counting any that could not be decoded: only a short answer ends the pull.
pub fn page_outcome(
    position: &PullPosition,
    request: &PageRequest,
    mut rows: Vec<RemoteRow>,
    returned: usize,
) -> PageOutcome {
    if let Some(anchor) = &request.anchor {
        let stamp = match position {
            PullPosition::Within { stamp, .. } => *stamp,
            _ => unreachable!("anchors are only set within a stamp group"),
        };
        let anchored = rows
            .first()
            .is_some_and(|first| &first.key == anchor && first.stamp == stamp);
        if !anchored {
            return PageOutcome::AnchorLost {
                restart: PullPosition::Within {
                    stamp,
                    seen: 0,
                    last_key: None,
                },
            };
        }
        rows.remove(0);
    }
    let done = returned < request.limit as usize;
    let next = match rows.last() {
        None => position.clone(),
        Some(last) => {
            let trailing = rows
                .iter()
                .rev()
                .take_while(|r| r.stamp == last.stamp)
                .count() as u64;
            let seen = match position {
                PullPosition::Within { stamp, seen, .. }
                    if *stamp == last.stamp && trailing == rows.len() as u64 =>
                {
                    seen + trailing
                }
                _ => trailing,
            };
            PullPosition::Within {
                stamp: last.stamp,
                seen,
                last_key: Some(last.key.clone()),
            }
        }
    };
    PageOutcome::Advance { rows, next, done }
}

/// The position to keep once a pull has reached the end.
///
/// `settled` is the latest stamp before which no row can still appear: the server clock at
/// the start of the pull minus the overlap window. Rows committed late carry stamps older
/// than rows already seen; rewinding to `settled` re-reads that window on the next pull.
pub fn settle(position: &PullPosition, settled: Stamp) -> PullPosition {
    match position {
        PullPosition::Start => PullPosition::Start,
        PullPosition::After { stamp } | PullPosition::Within { stamp, .. } => PullPosition::After {
            stamp: (*stamp).min(settled),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn stamp(s: i64) -> Stamp {
        Stamp(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap())
    }

    fn row(key: &str, s: i64) -> RemoteRow {
        RemoteRow {
            key: key.into(),
            stamp: stamp(s),
            data: Default::default(),
        }
    }

    #[test]
    fn start_asks_for_every_stamped_row() {
        let req = page_request(Lane::Cursor, &PullPosition::Start, 2);
        assert_eq!(req.stamps, StampRange::All);
        assert_eq!((req.offset, req.limit, req.anchor), (0, 2, None));
    }

    #[test]
    fn a_settled_position_asks_for_later_stamps_and_a_group_from_its_stamp() {
        let req = page_request(Lane::Cursor, &PullPosition::After { stamp: stamp(1) }, 10);
        assert_eq!(req.stamps, StampRange::After(stamp(1)));
        let within = PullPosition::Within {
            stamp: stamp(1),
            seen: 0,
            last_key: None,
        };
        assert_eq!(
            page_request(Lane::Cursor, &within, 10).stamps,
            StampRange::From(stamp(1))
        );
    }

    #[test]
    fn tie_group_larger_than_a_page_is_walked_with_an_anchor() {
        // Five rows share one stamp; pages of two.
        let all: Vec<_> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|k| row(k, 5))
            .collect();
        let mut position = PullPosition::Start;
        let mut applied = Vec::new();
        loop {
            let req = page_request(Lane::Cursor, &position, 2);
            let offset = req.offset as usize;
            let page: Vec<_> = all
                .iter()
                .skip(offset)
                .take(req.limit as usize)
                .cloned()
                .collect();
            let returned = page.len();
            match page_outcome(&position, &req, page, returned) {
                PageOutcome::Advance { rows, next, done } => {
                    applied.extend(rows.into_iter().map(|r| r.key));
                    position = next;
                    if done {
                        break;
                    }
                }
                PageOutcome::AnchorLost { .. } => panic!("stable data never loses its anchor"),
            }
        }
        assert_eq!(applied, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn a_page_of_one_still_moves_through_a_tie_group() {
        let position = PullPosition::Within {
            stamp: stamp(5),
            seen: 1,
            last_key: Some("a".into()),
        };
        let req = page_request(Lane::Cursor, &position, 1);
        assert_eq!((req.offset, req.limit), (0, 2));
        let outcome = page_outcome(&position, &req, vec![row("a", 5), row("b", 5)], 2);
        let PageOutcome::Advance { rows, .. } = outcome else {
            panic!("expected rows")
        };
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn an_undecodable_row_does_not_end_the_pull_early() {
        let req = page_request(Lane::Cursor, &PullPosition::Start, 3);
        // The server sent a full page; one row could not be read.
        let outcome = page_outcome(
            &PullPosition::Start,
            &req,
            vec![row("a", 1), row("b", 2)],
            3,
        );
        let PageOutcome::Advance { done, .. } = outcome else {
            panic!("expected rows")
        };
        assert!(!done);
    }

    #[test]
    fn a_moved_anchor_restarts_the_group() {
        let position = PullPosition::Within {
            stamp: stamp(5),
            seen: 2,
            last_key: Some("b".into()),
        };
        let req = page_request(Lane::Cursor, &position, 2);
        assert_eq!(
            (req.offset, req.limit),
            (1, 2),
            "the anchor counts in the page"
        );
        // "a" was updated elsewhere and left the group: offset 1 now lands on "c".
        let outcome = page_outcome(&position, &req, vec![row("c", 5), row("d", 5)], 2);
        assert_eq!(
            outcome,
            PageOutcome::AnchorLost {
                restart: PullPosition::Within {
                    stamp: stamp(5),
                    seen: 0,
                    last_key: None
                }
            }
        );
    }

    #[test]
    fn seen_counts_only_the_trailing_stamp() {
        let req = page_request(Lane::Cursor, &PullPosition::Start, 3);
        let outcome = page_outcome(
            &PullPosition::Start,
            &req,
            vec![row("a", 1), row("b", 2), row("c", 2)],
            3,
        );
        let PageOutcome::Advance { next, done, .. } = outcome else {
            panic!("expected rows")
        };
        assert!(!done);
        assert_eq!(
            next,
            PullPosition::Within {
                stamp: stamp(2),
                seen: 2,
                last_key: Some("c".into())
            }
        );
    }

    #[test]
    fn settle_rewinds_to_the_overlap_window() {
        let at = PullPosition::Within {
            stamp: stamp(100),
            seen: 3,
            last_key: Some("x".into()),
        };
        assert_eq!(
            settle(&at, stamp(90)),
            PullPosition::After { stamp: stamp(90) }
        );
        assert_eq!(
            settle(&at, stamp(200)),
            PullPosition::After { stamp: stamp(100) }
        );
    }
}
