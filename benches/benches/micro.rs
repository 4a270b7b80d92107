//! Micro-benchmarks of the hot paths of a sync: decoding a page of server rows, planning what
//! to do with them, and writing them to SQLite in one batched upsert.
//!
//! `cargo bench -p benches --bench micro`

use std::hint::black_box;

use benches::{Fixture, collections};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use deltasync::engine_ports::{Changes, RowOp, Store};
use engine::model::{LocalRow, RemoteRow, SyncStatus};
use serde_json::{Value, json};

const PAGE: usize = 1_000;

/// A page of posts as the server renders it, cursor included.
fn page() -> Vec<Value> {
    Fixture::new(1, PAGE)
        .post_rows(0..PAGE)
        .into_iter()
        .map(|mut r| {
            r.insert("last_modified".into(), json!("2026-11-22T10:00:00.123Z"));
            Value::Object(r)
        })
        .collect()
}

fn posts() -> deltasync::CollectionConfig {
    collections().pop().expect("posts")
}

fn decoded(page: &[Value]) -> Vec<RemoteRow> {
    let c = posts();
    page.iter()
        .map(|raw| engine::decode::remote_row(&c, raw).expect("a valid row"))
        .collect()
}

fn decode(cr: &mut Criterion) {
    let c = posts();
    let raw = page();
    let bytes = serde_json::to_vec(&json!({ "data": raw })).expect("json");
    cr.bench_function("decode/parse a 1000-row page", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&bytes)).expect("json"));
    });
    cr.bench_function("decode/check and convert 1000 rows", |b| {
        b.iter(|| {
            for row in black_box(&raw) {
                black_box(engine::decode::remote_row(&c, row).expect("valid"));
            }
        });
    });
}

fn plan(cr: &mut Criterion) {
    let rows = decoded(&page());
    let local = |r: &RemoteRow, status| LocalRow {
        key: r.key.clone(),
        status,
        rev: 1,
        base: Some(r.stamp),
        change_key: None,
        changed_at: None,
        error: None,
        data: r.data.clone(),
    };
    let synced: Vec<LocalRow> = rows.iter().map(|r| local(r, SyncStatus::Synced)).collect();
    cr.bench_function("plan/pull 1000 rows over synced ones", |b| {
        b.iter_batched(
            || rows.clone(),
            |rows| {
                for (remote, local) in rows.into_iter().zip(&synced) {
                    black_box(engine::plan::pull_row(Some(local), remote, false));
                }
            },
            BatchSize::SmallInput,
        );
    });
    let created: Vec<LocalRow> = rows.iter().map(|r| local(r, SyncStatus::Created)).collect();
    cr.bench_function("plan/order 1000 creates parents first", |b| {
        b.iter_batched(
            || created.clone(),
            |rows| black_box(engine::plan::parents_first(rows, &["author"])),
            BatchSize::SmallInput,
        );
    });
}

fn upsert(cr: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir =
        std::env::temp_dir().join(format!("deltasync-micro-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("micro.db").display());
    let config = deltasync::Config::new("http://127.0.0.1:9", "unused", url, collections());
    let replica = runtime.block_on(deltasync::open(config)).expect("replica");
    let c = posts();
    let rows = decoded(&page());
    cr.bench_function("store/upsert a page of 1000 pulled rows (SQLite)", |b| {
        b.iter_batched(
            || Changes {
                ops: rows.iter().cloned().map(RowOp::Pull).collect(),
                ..Default::default()
            },
            |changes| {
                runtime
                    .block_on(replica.store().apply(&c, changes))
                    .expect("applied")
            },
            BatchSize::SmallInput,
        );
    });
    drop(replica);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(micro, decode, plan, upsert);
criterion_main!(micro);
