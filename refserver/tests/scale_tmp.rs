mod common;
use common::{Api, uuid};
use serde_json::json;
use std::time::Instant;

#[tokio::test]
async fn scale() {
    let api = Api::start().await;
    let state = api.server.state();
    let t = Instant::now();
    for chunk in 0..100 {
        let rows: Vec<_> = (0..1000)
            .map(|i| {
                json!({"id": uuid(), "title": format!("n{i}"), "count": i})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        state.insert("notes", rows).unwrap();
        if chunk % 2 == 0 {
            api.tick(1);
        }
    }
    eprintln!("insert 100k: {:?}", t.elapsed());
    let t = Instant::now();
    let mut n = 0;
    let mut offset = 0;
    loop {
        let off = offset.to_string();
        let r = api
            .get(
                "/items/notes",
                &[
                    (
                        "filter",
                        r#"{"last_modified":{"_gte":"2026-11-22T10:00:00.000Z"}}"#,
                    ),
                    ("sort", "last_modified,id"),
                    ("limit", "1000"),
                    ("offset", &off),
                ],
            )
            .await;
        let k = r.data().as_array().unwrap().len();
        n += k;
        offset += k;
        if k < 1000 {
            break;
        }
    }
    eprintln!("paged {n} rows by offset: {:?}", t.elapsed());
    let t = Instant::now();
    let r = api.get("/items/notes", &[("limit", "-1")]).await;
    eprintln!(
        "limit -1 {} rows: {:?}",
        r.data().as_array().unwrap().len(),
        t.elapsed()
    );
    let t = Instant::now();
    let batch: Vec<_> = (0..500).map(|_| Api::note("x")).collect();
    api.post("/items/notes", json!(batch)).await;
    eprintln!("post 500: {:?}", t.elapsed());
    let t = Instant::now();
    let r = api.get("/activity", &[("filter", r#"{"collection":{"_eq":"notes"},"action":{"_eq":"delete"},"id":{"_gt":50000}}"#), ("sort","id"), ("limit","1000")]).await;
    eprintln!(
        "activity cursor {}: {:?}",
        r.data().as_array().unwrap().len(),
        t.elapsed()
    );
}
