//! `deltasync demo`: two local replicas and the bundled reference server, end to end.
//!
//! Owns the demo script and a shortcut that creates a collection on a reference server the way
//! a user would (over REST, with the definition of [`crate::remote_setup`]). It must not reach
//! past the public API: what the demo shows is what a user gets.

use std::io::Write;

use chrono::Utc;
use serde_json::{Value, json};

use deltasync::{CollectionConfig, Config, Deltasync, FieldType, Row, Strategy};

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Creates a collection on a reference server through `POST /collections`: a uuid primary
/// key `id`, a `last_modified` timestamp stamped on create and update (the cursor), and
/// `fields`. The definition is the one of
/// [`remote_setup::collection_definition`](crate::remote_setup::collection_definition), so it
/// works the same against a real Directus.
pub async fn create_collection(
    server: &refserver::ServerHandle,
    name: &str,
    fields: &[(&str, FieldType)],
) -> DemoResult<()> {
    let remote = schema::RemoteConfig::new(
        server.url(),
        schema::Auth::Token(schema::Secret::new(server.admin_token())),
    );
    let client = deltasync::DirectusClient::new(&remote)?;
    let config = fields
        .iter()
        .fold(CollectionConfig::new(name), |c, (field, kind)| {
            c.with_field(*field, *kind)
        });
    crate::remote_setup::create_collection(&client, &config).await?;
    Ok(())
}

fn row(value: Value) -> Row {
    value.as_object().cloned().unwrap_or_default()
}

const FIELDS: [(&str, FieldType); 3] = [
    ("title", FieldType::String),
    ("views", FieldType::Integer),
    ("published", FieldType::Boolean),
];

fn articles() -> CollectionConfig {
    let mut c = CollectionConfig::new("articles");
    for (name, kind) in FIELDS {
        c = c.with_field(name, kind);
    }
    c.conflict = Strategy::LastWriteWins;
    c
}

async fn replica(
    server: &refserver::ServerHandle,
    dir: &std::path::Path,
    name: &str,
) -> DemoResult<Deltasync> {
    let database = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let config = Config::new(
        server.url(),
        server.admin_token(),
        database,
        vec![articles()],
    );
    Ok(deltasync::open(config).await?)
}

fn line(out: &mut impl Write, text: impl AsRef<str>) -> DemoResult<()> {
    writeln!(out, "{}", text.as_ref())?;
    Ok(())
}

fn summary(report: &deltasync::SyncReport) -> String {
    let c = &report.collections[0];
    format!(
        "pushed {}, pulled {}, deleted {}, conflicts {}",
        c.pushed, c.pulled, c.deleted, c.conflicts
    )
}

/// Runs the demo, writing what happens to `out`. Returns whether everything converged.
pub async fn run(out: &mut impl Write) -> DemoResult<bool> {
    let server = refserver::start(Default::default()).await?;
    let dir = tempfile::tempdir()?;
    line(
        out,
        format!(
            "Reference server on {} (Directus-compatible, in memory)",
            server.url()
        ),
    )?;
    create_collection(&server, "articles", &FIELDS).await?;
    let seed: Vec<_> = (1..=5)
        .map(|i| {
            row(json!({"title": format!("Article {i}"), "views": i * 10, "published": i % 2 == 0}))
        })
        .collect();
    let seeded = server.state().insert("articles", seed)?;
    let key = |i: usize| seeded[i]["id"].as_str().unwrap_or_default().to_owned();
    line(
        out,
        format!(
            "Server holds {} articles; two replicas start empty in {}",
            seeded.len(),
            dir.path().display()
        ),
    )?;

    let a = replica(&server, dir.path(), "replica-a").await?;
    let b = replica(&server, dir.path(), "replica-b").await?;
    line(
        out,
        format!("\n1. Initial sync  A: {}", summary(&a.sync(None).await?)),
    )?;
    line(
        out,
        format!("                 B: {}", summary(&b.sync(None).await?)),
    )?;

    line(
        out,
        "\n2. Offline, A retitles article 1 and writes article 6",
    )?;
    let articles_a = a.collection("articles")?;
    articles_a
        .update(&key(0), row(json!({"title": "Article 1, edited on A"})))
        .await?;
    let new_key = articles_a
        .insert(row(
            json!({"title": "Article 6, from A", "views": 0, "published": false}),
        ))
        .await?;
    line(
        out,
        format!("   A syncs: {}", summary(&a.sync(None).await?)),
    )?;

    line(
        out,
        "\n3. Someone edits article 3 in Directus; B, still offline, deletes article 2",
    )?;
    server
        .state()
        .update("articles", &key(2), row(json!({"views": 999})))?;
    let articles_b = b.collection("articles")?;
    articles_b.delete(&key(1)).await?;
    line(
        out,
        "   and, later than A's push, retitles article 1 too: a conflict",
    )?;
    articles_b
        .update(&key(0), row(json!({"title": "Article 1, edited on B"})))
        .await?;

    line(
        out,
        format!("\n4. B syncs: {}", summary(&b.sync(None).await?)),
    )?;
    if let Some(record) = b.conflicts(false).await?.first() {
        let kept = match record.resolution {
            Some(deltasync::Resolution::KeepLocal) => {
                "B's local edit is later than the server's version: it stands"
            }
            Some(deltasync::Resolution::TakeRemote) => {
                "the server's version is as late as B's edit: the server wins ties"
            }
            _ => "parked for a person",
        };
        line(
            out,
            format!("   last_write_wins on article 1: {kept}; the other version is recorded"),
        )?;
    }
    line(
        out,
        format!("   A syncs: {}", summary(&a.sync(None).await?)),
    )?;

    let mut on_server = server.state().rows("articles");
    on_server.sort_by_key(|r| r["title"].as_str().unwrap_or_default().to_owned());
    let mut converged = true;
    line(
        out,
        "\nResult (title / views on the server, then whether A and B hold the same):",
    )?;
    for remote in &on_server {
        let k = remote["id"].as_str().unwrap_or_default();
        let same = |r: Option<deltasync::LocalRow>| {
            r.is_some_and(|r| {
                r.status == deltasync::SyncStatus::Synced
                    && r.data["title"] == remote["title"]
                    && r.data["views"] == remote["views"]
            })
        };
        let (in_a, in_b) = (
            same(a.collection("articles")?.get(k).await?),
            same(b.collection("articles")?.get(k).await?),
        );
        converged &= in_a && in_b;
        let marker = if k == new_key { " (new)" } else { "" };
        line(
            out,
            format!(
                "  {:<28} {:>4}   A {}  B {}{marker}",
                remote["title"].as_str().unwrap_or(""),
                remote["views"].to_string(),
                tick(in_a),
                tick(in_b)
            ),
        )?;
    }
    let deleted_gone = a.collection("articles")?.get(&key(1)).await?.is_none()
        && b.collection("articles")?.get(&key(1)).await?.is_none();
    converged &= deleted_gone && on_server.len() == 5;
    line(
        out,
        format!(
            "\n{} articles on the server; article 2 deleted everywhere: {}; replicas converged: {}",
            on_server.len(),
            deleted_gone,
            converged
        ),
    )?;
    let conflicts = a.conflicts(false).await?.len() + b.conflicts(false).await?.len();
    line(
        out,
        format!(
            "Conflicts recorded: {conflicts} (see `deltasync conflicts list`); finished at {}",
            Utc::now().format("%H:%M:%S")
        ),
    )?;
    server.shutdown().await;
    Ok(converged)
}

fn tick(ok: bool) -> &'static str {
    if ok { "same" } else { "DIFFERENT" }
}
