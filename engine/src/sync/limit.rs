//! The server's limit on rows per request (Directus's `QUERY_LIMIT_MAX`), learned when it
//! refuses a page.
//!
//! Owns the page size a collection is synced with: its configured `page_size`, or the
//! server's limit once a request was refused for exceeding it. The limit is asked for only
//! then (Directus sets none by default), so a sync costs no request for it. It must not
//! decide anything else about a refused request.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use schema::CollectionConfig;
use tracing::warn;

use super::Engine;
use crate::error::{RemoteError, RemoteErrorKind};
use crate::ports::{Remote, Store};

/// Directus's default rows per request: a limit at or below it is never refused.
const ALWAYS_ALLOWED: u32 = 100;

impl<S: Store, R: Remote> Engine<S, R> {
    /// `c` with its page size cut to the server's limit, where one is known and smaller.
    pub(super) fn fitted<'c>(&self, c: &'c CollectionConfig) -> Cow<'c, CollectionConfig> {
        match self.query_limit.load(Ordering::Relaxed) {
            limit if limit > 0 && limit < c.page_size => Cow::Owned(CollectionConfig {
                page_size: limit,
                ..c.clone()
            }),
            _ => Cow::Borrowed(c),
        }
    }

    /// Whether `error` was the server refusing `c`'s page size: when a request was refused
    /// as invalid and the page size is above what every server allows, the server is asked
    /// for its limit, which is kept when it is below the page size. The phase then runs
    /// again with pages that fit.
    pub(super) async fn learned_query_limit(
        &self,
        c: &CollectionConfig,
        error: &RemoteError,
    ) -> bool {
        let refused = error.kind == RemoteErrorKind::Rejected && error.status == Some(400);
        if !refused || c.page_size <= ALWAYS_ALLOWED {
            return false;
        }
        let Ok(Some(limit)) = self.remote.query_limit().await else {
            return false;
        };
        let limit = limit.max(ALWAYS_ALLOWED);
        if limit >= c.page_size {
            return false;
        }
        warn!(collection = %c.name, page_size = c.page_size, limit,
            "page_size is above the server's QUERY_LIMIT_MAX: pages of {limit} rows are used (set page_size to at most {limit})");
        self.query_limit.store(limit, Ordering::Relaxed);
        true
    }
}
