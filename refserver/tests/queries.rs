//! Filters, sorting and paging as deltasync's pull uses them.

mod common;

use common::{Api, uuid};
use refserver::Options;
use serde_json::{Value, json};

fn ids(r: &common::Reply) -> Vec<String> {
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn range_operators_on_uuid_are_refused() {
    let api = Api::start().await;
    let r = api
        .get(
            "/items/notes",
            &[(
                "filter",
                r#"{"id":{"_gt":"00000000-0000-0000-0000-000000000000"}}"#,
            )],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "INVALID_QUERY");
    assert_eq!(
        r.message(),
        "Invalid query. \"uuid\" field type does not contain the \"_gt\" filter operator."
    );
}

#[tokio::test]
async fn unknown_fields_in_filter_sort_or_fields_are_forbidden() {
    let api = Api::start().await;
    for (k, v) in [
        ("filter", r#"{"nope":{"_eq":1}}"#),
        ("sort", "nope"),
        ("fields", "id,nope"),
    ] {
        let r = api.get("/items/notes", &[(k, v)]).await;
        assert_eq!(r.status, 403, "{k}");
        assert_eq!(
            r.message(),
            "You don't have permission to access field \"nope\" in collection \"notes\" or it does not exist. Queried in root."
        );
    }
}

#[tokio::test]
async fn sort_adds_no_key_tie_breaker_but_paging_ties_is_stable() {
    let api = Api::start().await;
    // One request: 30 rows sharing one stamp, inserted in an order unrelated to their keys.
    let batch: Vec<Value> = (0..30).map(|i| Api::note(&format!("n{i}"))).collect();
    let inserted: Vec<String> = batch
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    api.post("/items/notes", json!(batch)).await;

    let page = |offset: &'static str, sort: &'static str| {
        let api = &api;
        async move {
            let q = [
                ("sort", sort),
                ("limit", "10"),
                ("offset", offset),
                ("fields", "id"),
            ];
            ids(&api.get("/items/notes", &q).await)
        }
    };
    // `sort=last_modified` alone: ties come back in insertion order, not key order.
    let mut by_stamp = Vec::new();
    for offset in ["0", "10", "20"] {
        by_stamp.extend(page(offset, "last_modified").await);
    }
    assert_eq!(by_stamp, inserted);
    let mut sorted = inserted.clone();
    sorted.sort();
    assert_ne!(by_stamp, sorted, "insertion order differs from key order");

    // `sort=last_modified,id`: the order deltasync asks for.
    let mut by_stamp_and_id = Vec::new();
    for offset in ["0", "10", "20"] {
        by_stamp_and_id.extend(page(offset, "last_modified,id").await);
    }
    assert_eq!(by_stamp_and_id, sorted);
}

#[tokio::test]
async fn timestamp_filters_compare_instants_whatever_the_format() {
    let api = Api::start().await;
    let first = api.create_note(Api::note("first")).await;
    api.tick(1_500);
    let second = api.create_note(Api::note("second")).await;
    for value in [
        "2026-11-22T10:00:00.000Z",
        "2026-11-22T10:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22T11:00:00+01:00",
    ] {
        let gt = format!(r#"{{"last_modified":{{"_gt":"{value}"}}}}"#);
        let r = api
            .get(
                "/items/notes",
                &[("filter", &gt), ("sort", "last_modified,id")],
            )
            .await;
        assert_eq!(ids(&r), [second["id"].as_str().unwrap()], "{value}");
        let gte = format!(r#"{{"last_modified":{{"_gte":"{value}"}}}}"#);
        let r = api
            .get(
                "/items/notes",
                &[("filter", &gte), ("sort", "last_modified,id")],
            )
            .await;
        assert_eq!(
            ids(&r),
            [
                first["id"].as_str().unwrap(),
                second["id"].as_str().unwrap()
            ],
            "{value}"
        );
    }
}

#[tokio::test]
async fn bracket_filters_meta_and_default_limit() {
    let api = Api::start().await;
    let batch: Vec<Value> = (0..120)
        .map(|i| json!({"id": uuid(), "title": format!("n{i}"), "count": i}))
        .collect();
    api.post("/items/notes", json!(batch)).await;
    let r = api.get("/items/notes", &[]).await;
    assert_eq!(r.data().as_array().unwrap().len(), 100);
    let r = api.get("/items/notes", &[("limit", "-1")]).await;
    assert_eq!(r.data().as_array().unwrap().len(), 120);
    let r = api
        .get(
            "/items/notes",
            &[
                ("filter[count][_gte]", "100"),
                ("meta", "*"),
                ("sort", "-count"),
                ("limit", "3"),
            ],
        )
        .await;
    assert_eq!(
        r.body["meta"],
        json!({"total_count": 120, "filter_count": 20})
    );
    let counts: Vec<&Value> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row["count"])
        .collect();
    assert_eq!(counts, [&json!(119), &json!(118), &json!(117)]);
    let r = api
        .get(
            "/items/notes",
            &[
                ("filter[title][_in]", "n1,n2"),
                ("fields", "title"),
                ("sort", "title"),
            ],
        )
        .await;
    assert_eq!(r.body["data"], json!([{"title": "n1"}, {"title": "n2"}]));
}

#[tokio::test]
async fn limit_above_the_configured_maximum_is_an_invalid_query() {
    let api = Api::with(Options {
        query_limit_max: Some(50),
        ..Options::default()
    })
    .await;
    let r = api.get("/items/notes", &[("limit", "51")]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "INVALID_QUERY");
    let r = api.get("/server/info", &[]).await;
    assert_eq!(r.data()["queryLimit"], json!({"default": 100, "max": 50}));
    let anon = api.anonymous().get("/server/info").await;
    assert!(anon.data().get("queryLimit").is_none());
    assert!(anon.data()["license"].is_object());
    assert_eq!(r.data()["version"], json!("12.4.0"));
}

/// The index-backed page walk must agree with a plain scan on every page.
#[tokio::test]
async fn cursor_pages_match_a_full_sort() {
    let api = Api::start().await;
    let state = api.server.state();
    for round in 0..25 {
        let rows: Vec<_> = (0..(round % 4 + 1))
            .map(|_| {
                json!({"id": uuid(), "title": "x"})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        state.insert("notes", rows).unwrap();
        if round % 3 == 0 {
            api.tick(1);
        }
    }
    let mut all = state.rows("notes");
    all.sort_by(|a, b| {
        (a["last_modified"].as_str(), a["id"].as_str())
            .cmp(&(b["last_modified"].as_str(), b["id"].as_str()))
    });
    let cursor = all[7]["last_modified"].as_str().unwrap().to_string();
    let want: Vec<String> = all
        .iter()
        .filter(|r| r["last_modified"].as_str().unwrap() >= cursor.as_str())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let filter = format!(r#"{{"last_modified":{{"_gte":"{cursor}"}}}}"#);
    let mut got = Vec::new();
    for offset in (0..want.len() + 3).step_by(3) {
        let offset = offset.to_string();
        let q = [
            ("filter", filter.as_str()),
            ("sort", "last_modified,id"),
            ("limit", "3"),
            ("offset", offset.as_str()),
        ];
        got.extend(ids(&api.get("/items/notes", &q).await));
    }
    assert_eq!(got, want);
}
