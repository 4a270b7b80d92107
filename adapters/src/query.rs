//! The Directus query dialect: the engine's typed item requests as filters, sorts, limits and
//! offsets.
//!
//! Owns every item filter the client sends. Pure: no IO. A collection's own `filter` is
//! passed through untouched, combined with a request's condition as
//! `{"_and": [<condition>, <filter>]}`. It must not decide which rows to ask for; the engine
//! does.

use engine::cursor::{Lane, PageRequest, StampRange};
use engine::model::key_to_json;
use engine::ports::FilteredRows;
use engine::{Key, Stamp};
use schema::CollectionConfig;
use serde_json::{Value, json};

/// A list request (`GET /items/:collection`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListQuery {
    pub filter: Value,
    pub sort: Vec<String>,
    pub fields: Vec<String>,
    pub limit: i64,
    pub offset: u64,
}

impl ListQuery {
    /// The query string, in the order the client has always sent it.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("filter", self.filter.to_string()),
            ("sort", self.sort.join(",")),
            ("fields", self.fields.join(",")),
            ("limit", self.limit.to_string()),
            ("offset", self.offset.to_string()),
        ]
    }
}

/// A page of the pull, sorted by cursor, then key.
pub(crate) fn page(c: &CollectionConfig, request: &PageRequest, fields: &[String]) -> ListQuery {
    let by = match request.lane {
        Lane::Cursor => c.cursor.as_str(),
        Lane::Created => c.cursor_created.as_deref().unwrap_or(&c.cursor),
    };
    let mut condition = match request.stamps {
        StampRange::Missing => {
            let mut empty: Vec<Value> = c
                .version_fields()
                .map(|f| json!({ f: { "_null": true } }))
                .collect();
            if empty.len() == 1 {
                empty.remove(0)
            } else {
                json!({ "_and": empty })
            }
        }
        StampRange::All => json!({ by: { "_nnull": true } }),
        StampRange::After(stamp) => json!({ by: { "_gt": stamp.to_wire() } }),
        StampRange::From(stamp) => json!({ by: { "_gte": stamp.to_wire() } }),
    };
    if request.lane == Lane::Created {
        condition = json!({ "_and": [{ &c.cursor: { "_null": true } }, condition] });
    }
    ListQuery {
        filter: with_own_filter(c, condition),
        sort: vec![by.to_owned(), c.primary_key.clone()],
        fields: fields.to_vec(),
        limit: i64::from(request.limit),
        offset: request.offset,
    }
}

/// The rows among `keys`, whatever the collection's filter.
pub(crate) fn rows_by_keys(c: &CollectionConfig, keys: &[Key], fields: &[String]) -> ListQuery {
    ListQuery {
        filter: among(c, keys),
        sort: vec![c.primary_key.clone()],
        fields: fields.to_vec(),
        // Never -1: Directus caps that at QUERY_LIMIT_MAX without a word, and a missing row
        // would read as deleted. A limit above the cap is refused instead.
        limit: keys.len() as i64,
        offset: 0,
    }
}

/// The rows whose idempotency field holds one of `ids`, whatever the collection's filter.
pub(crate) fn rows_created_as(
    c: &CollectionConfig,
    ids: &[String],
    fields: &[String],
) -> ListQuery {
    let field = c.idempotency_field.as_deref().unwrap_or("deltasync_key");
    ListQuery {
        filter: json!({ field: { "_in": ids } }),
        sort: vec![c.primary_key.clone()],
        fields: fields.to_vec(),
        limit: ids.len() as i64,
        offset: 0,
    }
}

/// The rows `which` covers among those passing the collection's filter, in key order.
pub(crate) fn filtered_rows(
    c: &CollectionConfig,
    which: FilteredRows<'_>,
    fields: &[String],
) -> ListQuery {
    let (condition, limit, offset) = match which {
        FilteredRows::Among(keys) => (among(c, keys), keys.len(), 0),
        FilteredRows::Page { offset, limit } => {
            (json!({ &c.primary_key: { "_nnull": true } }), limit, offset)
        }
    };
    ListQuery {
        filter: with_own_filter(c, condition),
        sort: vec![c.primary_key.clone()],
        fields: fields.to_vec(),
        limit: limit as i64,
        offset,
    }
}

/// The filter of a compare-and-set: each row on its key and, when given, its stamp. One row
/// is its own condition; several are alternatives.
pub(crate) fn unchanged<'a>(
    c: &CollectionConfig,
    rows: impl IntoIterator<Item = (&'a Key, Option<Stamp>)>,
) -> Value {
    let mut each: Vec<Value> = rows
        .into_iter()
        .map(|(key, stamp)| {
            let key = json!({ &c.primary_key: { "_eq": key_to_json(key, c.key_type) } });
            match stamp {
                Some(stamp) => json!({ "_and": [key, at_version(c, stamp)] }),
                None => key,
            }
        })
        .collect();
    if each.len() == 1 {
        return each.remove(0);
    }
    json!({ "_or": each })
}

/// The rows whose version is `stamp`: their cursor holds it or, for a collection with
/// `cursor_created`, their cursor is empty and their created field holds it.
fn at_version(c: &CollectionConfig, stamp: Stamp) -> Value {
    let updated = json!({ &c.cursor: { "_eq": stamp.to_wire() } });
    match &c.cursor_created {
        None => updated,
        Some(created) => json!({ "_or": [
            updated,
            { "_and": [{ &c.cursor: { "_null": true } }, { created: { "_eq": stamp.to_wire() } }] },
        ] }),
    }
}

fn among(c: &CollectionConfig, keys: &[Key]) -> Value {
    let wire: Vec<Value> = keys.iter().map(|k| key_to_json(k, c.key_type)).collect();
    json!({ &c.primary_key: { "_in": wire } })
}

fn with_own_filter(c: &CollectionConfig, condition: Value) -> Value {
    match &c.filter {
        Some(own) => json!({ "_and": [condition, own] }),
        None => condition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use engine::cursor::{Lane, PullPosition, page_request};

    fn stamp(s: i64) -> Stamp {
        Stamp(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap())
    }

    fn collection() -> CollectionConfig {
        let mut c = CollectionConfig::new("posts");
        c.cursor = "ts".into();
        c
    }

    fn fields() -> Vec<String> {
        vec!["id".into(), "ts".into(), "title".into()]
    }

    #[test]
    fn start_asks_for_every_stamped_row() {
        let req = page_request(Lane::Cursor, &PullPosition::Start, 2);
        let q = page(&collection(), &req, &fields());
        assert_eq!(q.filter, json!({"ts": {"_nnull": true}}));
        assert_eq!(
            q.params(),
            [
                ("filter", r#"{"ts":{"_nnull":true}}"#.to_owned()),
                ("sort", "ts,id".to_owned()),
                ("fields", "id,ts,title".to_owned()),
                ("limit", "2".to_owned()),
                ("offset", "0".to_owned()),
            ]
        );
    }

    #[test]
    fn a_settled_position_asks_after_its_stamp_and_a_group_from_its_stamp() {
        let after = page_request(Lane::Cursor, &PullPosition::After { stamp: stamp(1) }, 10);
        assert_eq!(
            page(&collection(), &after, &fields()).filter,
            json!({"ts": {"_gt": "2023-11-14T22:13:21.000Z"}})
        );
        let within = PullPosition::Within {
            stamp: stamp(1),
            seen: 3,
            last_key: Some("c".into()),
        };
        let q = page(
            &collection(),
            &page_request(Lane::Cursor, &within, 10),
            &fields(),
        );
        assert_eq!(
            q.filter,
            json!({"ts": {"_gte": "2023-11-14T22:13:21.000Z"}})
        );
        assert_eq!((q.limit, q.offset), (10, 2));
    }

    #[test]
    fn collection_filter_is_combined() {
        let own = json!({"status": {"_eq": "live"}});
        let mut c = collection();
        c.filter = Some(own.clone());
        let req = page_request(Lane::Cursor, &PullPosition::After { stamp: stamp(1) }, 10);
        let q = page(&c, &req, &fields());
        assert_eq!(q.filter["_and"][1], own);
        assert_eq!(
            q.filter["_and"][0],
            json!({"ts": {"_gt": "2023-11-14T22:13:21.000Z"}})
        );
    }

    #[test]
    fn rows_by_keys_ask_for_exactly_that_many_whatever_the_collection_filter() {
        let mut c = collection();
        c.key_type = schema::KeyType::Integer;
        c.filter = Some(json!({"status": {"_eq": "live"}}));
        let q = rows_by_keys(&c, &["3".into(), "1".into()], &fields());
        assert_eq!(q.filter, json!({"id": {"_in": [3, 1]}}));
        assert_eq!((q.sort, q.limit, q.offset), (vec!["id".to_owned()], 2, 0));
    }

    #[test]
    fn filtered_rows_go_through_the_collection_filter() {
        let own = json!({"views": {"_lt": 100}});
        let mut c = collection();
        c.filter = Some(own.clone());
        let keys = ["a".to_owned(), "b".to_owned()];
        let q = filtered_rows(&c, FilteredRows::Among(&keys), &fields());
        assert_eq!(
            q.filter,
            json!({"_and": [{"id": {"_in": ["a", "b"]}}, own]})
        );
        assert_eq!((q.limit, q.offset), (2, 0));
        let all = FilteredRows::Page {
            offset: 40,
            limit: 20,
        };
        let q = filtered_rows(&collection(), all, &fields());
        assert_eq!(q.filter, json!({"id": {"_nnull": true}}));
        assert_eq!((q.sort, q.limit, q.offset), (vec!["id".to_owned()], 20, 40));
    }

    #[test]
    fn one_compared_row_is_its_own_condition_and_several_are_alternatives() {
        let c = collection();
        let (a, b) = ("a".to_owned(), "b".to_owned());
        let one = unchanged(&c, [(&a, Some(stamp(1)))]);
        assert_eq!(
            one.to_string(),
            r#"{"_and":[{"id":{"_eq":"a"}},{"ts":{"_eq":"2023-11-14T22:13:21.000Z"}}]}"#
        );
        let key_alone = unchanged(&c, [(&a, None)]);
        assert_eq!(key_alone, json!({"id": {"_eq": "a"}}));
        let two = unchanged(&c, [(&a, Some(stamp(1))), (&b, None)]);
        assert_eq!(
            two,
            json!({"_or": [
                {"_and": [{"id": {"_eq": "a"}}, {"ts": {"_eq": "2023-11-14T22:13:21.000Z"}}]},
                {"id": {"_eq": "b"}},
            ]})
        );
    }

    #[test]
    fn date_fields_are_read_in_two_lanes_and_compared_on_the_version() {
        let c = CollectionConfig::new("posts").with_date_cursor();
        let fields = ["id".to_owned()];
        let created = page_request(Lane::Created, &PullPosition::After { stamp: stamp(1) }, 10);
        let q = page(&c, &created, &fields);
        assert_eq!(
            q.filter,
            json!({"_and": [{"date_updated": {"_null": true}}, {"date_created": {"_gt": "2023-11-14T22:13:21.000Z"}}]})
        );
        assert_eq!(q.sort, ["date_created", "id"]);
        let updated = page_request(Lane::Cursor, &PullPosition::Start, 10);
        let q = page(&c, &updated, &fields);
        assert_eq!(q.filter, json!({"date_updated": {"_nnull": true}}));
        assert_eq!(q.sort, ["date_updated", "id"]);
        let a = "1".to_owned();
        assert_eq!(
            unchanged(&c, [(&a, Some(stamp(1)))]),
            json!({"_and": [{"id": {"_eq": "1"}}, {"_or": [
                {"date_updated": {"_eq": "2023-11-14T22:13:21.000Z"}},
                {"_and": [{"date_updated": {"_null": true}}, {"date_created": {"_eq": "2023-11-14T22:13:21.000Z"}}]},
            ]}]})
        );
    }
}
