//! Stock Directus collections, as the Data Studio makes them, through the `deltasync` binary:
//! against the reference server and, when `DELTASYNC_TEST_DIRECTUS` is set, a real Directus;
//! on SQLite and, when `DELTASYNC_TEST_PG` is set, PostgreSQL.
//!
//! Each case is one a user lost data on: a cursor on `date_updated` alone, which never sees a
//! row that was not updated.

use std::path::PathBuf;

use assert_cmd::Command;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tests::{Databases, Site, pairs, row};

/// A schema file and local database for one stock collection of `site`.
struct Project {
    dir: tempfile::TempDir,
    url: String,
    token: String,
    database: String,
}

impl Project {
    async fn new(site: &Site, dbs: &mut Databases) -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
            url: site.url.clone(),
            token: site.admin_token(),
            database: dbs.fresh().await,
        }
    }

    /// Writes the schema file with `collections` (YAML below `collections:`).
    fn write(&self, collections: &str) -> PathBuf {
        let text = format!(
            "remote:\n  url: {}\n  token: ${{DELTASYNC_STOCK_TOKEN}}\n  max_retries: 1\nlocal:\n  database: {}\ncollections:\n{collections}",
            self.url, self.database,
        );
        let path = self.dir.path().join("deltasync.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `deltasync -c FILE sync --json`: the exit code and the report.
    fn sync(&self, file: &PathBuf) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_deltasync"))
            .env("DELTASYNC_STOCK_TOKEN", &self.token)
            .arg("-c")
            .arg(file)
            .args(["sync", "--json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(&stdout).unwrap_or_else(|_| {
            panic!(
                "sync printed no report: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    async fn sql(&self, statement: &str) {
        let db = Database::connect(self.database.as_str()).await.unwrap();
        db.execute_unprepared(statement).await.unwrap();
        db.close().await.unwrap();
    }

    /// The local rows of `table`: id -> (status, title).
    async fn local(&self, table: &str) -> std::collections::BTreeMap<i64, (String, Value)> {
        let db = Database::connect(self.database.as_str()).await.unwrap();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT id, _sync_status, title FROM \"{table}\""),
            ))
            .await
            .unwrap_or_default();
        db.close().await.unwrap();
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get_by_index(0).unwrap();
                let status: String = r.try_get_by_index(1).unwrap();
                let title: Option<String> = r.try_get_by_index(2).unwrap();
                (id, (status, json!(title)))
            })
            .collect()
    }
}

fn id(row: &deltasync::Row) -> i64 {
    row["id"].as_i64().expect("an integer id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_date_fields_see_every_row_and_date_updated_alone_is_refused() {
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let c = site
            .stock_collection("stock", &[("title", deltasync::FieldType::String)])
            .await;
        let rows = site
            .insert(
                &c.name,
                (0..300)
                    .map(|i| row(json!({"title": format!("t{i}")})))
                    .collect(),
            )
            .await;
        let ids: Vec<i64> = rows.iter().map(id).collect();
        for &key in &ids[..5] {
            site.update(
                &c.name,
                &key.to_string(),
                row(json!({"title": format!("u{key}")})),
            )
            .await;
        }
        let project = Project::new(&site, &mut dbs).await;

        let alone = project.write(&format!(
            "  {}:\n    key_type: integer\n    cursor: date_updated\n    fields:\n      title: string\n",
            c.name
        ));
        let (code, report) = project.sync(&alone);
        assert_eq!(code, 2, "{label}: {report}");
        let failure = &report["collections"][0];
        assert_eq!(failure["error_kind"], json!("server_mismatch"), "{label}");
        let error = failure["error"].as_str().unwrap();
        assert!(
            error.contains(&c.name)
                && error.contains("date_updated")
                && error.contains("created: date_created"),
            "{label}: {error}"
        );
        assert_eq!(failure["pulled"], json!(0), "{label}");

        let dates = project.write(&format!(
            "  {}:\n    key_type: integer\n    cursor: {{updated: date_updated, created: date_created}}\n    fields:\n      title: string\n      date_created: timestamp\n",
            c.name
        ));
        let (code, report) = project.sync(&dates);
        assert_eq!(code, 0, "{label}: {report}");
        let local = project.local(&c.name).await;
        assert_eq!(local.len(), 300, "{label}: every row pulled");
        assert_eq!(local[&ids[0]].1, json!(format!("u{}", ids[0])), "{label}");
        assert_eq!(local[&ids[299]].1, json!("t299"), "{label}");

        // A row never updated is compared on its date_created; once pushed, it is updated,
        // and a server edit of another such row is pulled.
        project
            .sql(&format!(
                "UPDATE \"{}\" SET title = 'local' WHERE id = {}",
                c.name, ids[10]
            ))
            .await;
        site.update(
            &c.name,
            &ids[20].to_string(),
            row(json!({"title": "server"})),
        )
        .await;
        let (code, report) = project.sync(&dates);
        assert_eq!(code, 0, "{label}: {report}");
        assert_eq!(
            report["collections"][0]["pushed"],
            json!(1),
            "{label}: {report}"
        );
        let server = site.rows(&c.name).await;
        let pushed = server.iter().find(|r| id(r) == ids[10]).unwrap();
        assert_eq!(pushed["title"], json!("local"), "{label}");
        assert!(
            pushed["date_updated"].is_string(),
            "{label}: the push updated it"
        );
        let local = project.local(&c.name).await;
        assert_eq!(
            local[&ids[20]],
            ("synced".to_owned(), json!("server")),
            "{label}"
        );
        assert_eq!(
            local[&ids[10]],
            ("synced".to_owned(), json!("local")),
            "{label}"
        );
        site.cleanup().await;
    }
}
