//! The check before a collection is first pulled: can its cursor see every server row?
//!
//! Owns when the check runs (while a pull lane is at its start, so once per collection, again
//! after the cursor changes; and for integer keys whenever changes wait to be pushed) and the
//! two reads it makes: the collection's fields, judged by
//! [`crate::fit`], and one row without a version, if any. A collection that fails is not
//! synced at all, so no row is silently missed.

use super::*;
use crate::cursor::{PageRequest, PullPosition, StampRange};
use crate::error::ServerMismatch;
use schema::KeyType;

impl<S: Store, R: Remote> Engine<S, R> {
    pub(super) async fn check_server(&self, c: &CollectionConfig) -> Result<()> {
        let checkpoint = self.store.checkpoint(&c.name).await?;
        let starting = Lane::of(c)
            .iter()
            .any(|&lane| *checkpoint.position(lane) == PullPosition::Start);
        // Integer keys are checked again before changes are pushed: who assigns them decides
        // whether a create may take a number.
        let integer_keys = matches!(c.key_type, KeyType::Integer | KeyType::AutoIncrement);
        let pushing = integer_keys && !self.store.pending(c, None, 1).await?.is_empty();
        if !starting && !pushing {
            return Ok(());
        }
        match self.remote.server_fields(&c.name).await? {
            Some(fields) => crate::fit::check(c, &fields).map_err(Error::ServerMismatch)?,
            None => {
                info!(collection = %c.name, "the token may not read the collection's fields; the cursor's specials are not checked");
            }
        }
        if !starting {
            return Ok(());
        }
        let unversioned = PageRequest {
            lane: Lane::Cursor,
            stamps: StampRange::Missing,
            offset: 0,
            limit: 1,
            anchor: None,
        };
        let page = self.remote.page(c, &unversioned, &ident_fields(c)).await?;
        let Some(raw) = page.rows.first() else {
            return Ok(());
        };
        let key = raw
            .get(&c.primary_key)
            .and_then(key_from_json)
            .unwrap_or_else(|| "?".to_owned());
        let (field, fields) = match &c.cursor_created {
            Some(created) => (created.as_str(), format!("{} nor {created}", c.cursor)),
            None => (c.cursor.as_str(), c.cursor.clone()),
        };
        Err(Error::ServerMismatch(ServerMismatch {
            collection: c.name.clone(),
            field: field.to_owned(),
            message: format!(
                "rows such as key {key} have neither {fields} set (made before the field was \
                 added?), so no pull would ever see them; set {field} on them on the server"
            ),
        }))
    }
}
