//! A push's chunks in a pipeline: the local transaction that settles one chunk runs while
//! the next chunk is read and its requests are out.
//!
//! Owns when a chunk's settles are applied relative to the next chunk, and that what the
//! server acknowledged is applied even when a chunk fails. It must not decide what a chunk
//! sends or how its rows settle (see `push`).

use schema::{CollectionConfig, KeyType};

use super::self_references;
use crate::error::Result;
use crate::ports::{Changes, Store};

/// What one chunk did: the settles of what the server acknowledged, and whether the rest of
/// the chunk went through.
pub(super) struct Pushed {
    pub settles: Changes,
    pub outcome: Result<()>,
}

/// The chunks of one collection's push phase.
pub(super) struct Chunks<'c> {
    collection: &'c CollectionConfig,
    /// Whether a chunk may run while the one before is settled.
    overlap: bool,
    /// The settles of the chunk before, not applied yet.
    settling: Changes,
}

impl<'c> Chunks<'c> {
    pub(super) fn new(collection: &'c CollectionConfig) -> Self {
        Chunks {
            collection,
            overlap: may_overlap(collection),
            settling: Changes::default(),
        }
    }

    /// Runs `chunk` (`None`: there was nothing left to push) while the settles of the chunk
    /// before are applied, and keeps its own for the next step. Returns whether a chunk ran.
    /// On an error, this chunk's settles are applied before the error is returned.
    pub(super) async fn step<S: Store>(
        &mut self,
        store: &S,
        chunk: impl Future<Output = Result<Option<Pushed>>>,
    ) -> Result<bool> {
        let before = std::mem::take(&mut self.settling);
        let apply = store.apply(self.collection, before);
        let (applied, chunk) = if self.overlap {
            tokio::join!(apply, chunk)
        } else {
            let applied = apply.await;
            (applied, chunk.await)
        };
        let (settles, outcome) = match chunk {
            Ok(Some(pushed)) => (pushed.settles, pushed.outcome.map(|()| true)),
            Ok(None) => (Changes::default(), Ok(false)),
            Err(e) => (Changes::default(), Err(e)),
        };
        match (applied, outcome) {
            (Ok(_), Ok(ran)) => {
                self.settling = settles;
                Ok(ran)
            }
            (Err(e), _) | (_, Err(e)) => {
                store.apply(self.collection, settles).await?;
                Err(e)
            }
        }
    }
}

/// A chunk reads local rows the chunk before may settle in two cases, and then waits for it:
/// the held-back check reads parents in the same collection, and a server-assigned key
/// rewrites the references to the row.
fn may_overlap(c: &CollectionConfig) -> bool {
    c.key_type != KeyType::AutoIncrement && self_references(c).is_empty()
}
