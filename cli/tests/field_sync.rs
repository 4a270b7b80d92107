//! Field-level sync through the `deltasync` binary, as a user runs it: against the reference
//! server and, when `DELTASYNC_TEST_DIRECTUS` is set, a real Directus; on SQLite and, when
//! `DELTASYNC_TEST_PG` is set, PostgreSQL. Local edits are plain SQL, as an application's.
//!
//! Each case is one the engine used to lose data on: a field added to the schema file while a
//! row waited, edits of different fields on both sides, a token that lost a permission, a
//! server row that does not fit.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tests::{Databases, FIELDS, Site, pairs, row};

/// A schema file for one collection of `site`, with `fields` of the test collection.
struct SchemaFile {
    dir: tempfile::TempDir,
    url: String,
    token: String,
    database: String,
    collection: String,
}

impl SchemaFile {
    async fn new(site: &Site, token: String, dbs: &mut Databases, collection: &str) -> SchemaFile {
        SchemaFile {
            dir: tempfile::tempdir().unwrap(),
            url: site.url.clone(),
            token,
            database: dbs.fresh().await,
            collection: collection.to_owned(),
        }
    }

    /// Writes the file with `fields` and `options` (extra collection keys) and returns it:
    /// always the same path, so a file written earlier is replaced.
    fn write(&self, fields: &[&str], options: &str) -> PathBuf {
        self.write_with(fields, options, "")
    }

    /// Like [`SchemaFile::write`], with `more` (further collections) appended.
    fn write_with(&self, fields: &[&str], options: &str, more: &str) -> PathBuf {
        let types: std::collections::HashMap<&str, &str> =
            [("title", "string"), ("views", "integer"), ("meta", "json")].into();
        let fields: Vec<String> = fields
            .iter()
            .map(|f| match f.split_once(':') {
                Some((name, kind)) => format!("      {name}: {kind}"),
                None => format!("      {f}: {}", types[f]),
            })
            .collect();
        let this = match fields.is_empty() {
            true => String::new(),
            false => format!(
                "  {}:\n{options}    fields:\n{}\n",
                self.collection,
                fields.join("\n")
            ),
        };
        let text = format!(
            "remote:\n  url: {}\n  token: ${{DELTASYNC_FIELD_SYNC_TOKEN}}\n  max_retries: 1\nlocal:\n  database: {}\ncollections:\n{this}{more}",
            self.url, self.database,
        );
        let path = self.dir.path().join("deltasync.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `deltasync -c FILE args…`.
    fn output(&self, file: &Path, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_deltasync"))
            .env("DELTASYNC_FIELD_SYNC_TOKEN", &self.token)
            .arg("-c")
            .arg(file)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `deltasync -c FILE args…`; returns the exit code and stdout as JSON.
    fn run(&self, file: &Path, args: &[&str]) -> (i32, Value) {
        let out = self.output(file, args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|_| {
            panic!(
                "deltasync {args:?} printed no JSON: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }

    fn sync(&self, file: &Path) -> (i32, Value) {
        self.run(file, &["sync", "--json"])
    }

    /// Runs plain SQL on the local database, as an application would.
    async fn sql(&self, statement: &str) {
        let db = Database::connect(self.database.as_str()).await.unwrap();
        db.execute_unprepared(statement).await.unwrap();
        db.close().await.unwrap();
    }

    /// The local rows: key -> (status, title, views).
    async fn local(&self) -> std::collections::BTreeMap<String, (String, Value, Value)> {
        let db = Database::connect(self.database.as_str()).await.unwrap();
        let text_key = if self.database.starts_with("postgres") {
            "id::text"
        } else {
            "id"
        };
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT {text_key}, _sync_status, title, views FROM \"{}\"",
                    self.collection
                ),
            ))
            .await
            .unwrap();
        let out = rows
            .iter()
            .map(|r| {
                let key: String = r.try_get_by_index(0).unwrap();
                let status: String = r.try_get_by_index(1).unwrap();
                let title: Option<String> = r.try_get_by_index(2).unwrap();
                let views: Option<i64> = r.try_get_by_index(3).unwrap();
                (key, (status, json!(title), json!(views)))
            })
            .collect();
        db.close().await.unwrap();
        out
    }
}

fn key(row: &deltasync::Row) -> String {
    row["id"].as_str().unwrap().to_owned()
}

async fn server_row(site: &Site, collection: &str, key: &str) -> deltasync::Row {
    site.rows(collection)
        .await
        .into_iter()
        .find(|r| r["id"] == json!(key))
        .unwrap_or_else(|| panic!("{}: {key} is on the server", site.label))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_added_while_a_row_waits_is_pulled_and_never_written_as_empty() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("added", &FIELDS).await;
        let rows = site
            .insert(
                &c.name,
                (0..2)
                    .map(|i| row(json!({"title": format!("a{i}"), "views": 3})))
                    .collect(),
            )
            .await;
        let k0 = key(&rows[0]);
        let file =
            SchemaFile::new(&site, site.limited_token(&c.name).await, &mut dbs, &c.name).await;
        let before = file.write(&["title"], "");
        assert_eq!(file.sync(&before).0, 0, "{}", site.label);
        file.sql(&format!(
            "UPDATE \"{}\" SET title = 'mine' WHERE id = '{k0}'",
            c.name
        ))
        .await;

        let after = file.write(&["title", "views"], "");
        let (code, report) = file.sync(&after);
        assert_eq!(code, 0, "{}: {report}", site.label);
        let server = server_row(&site, &c.name, &k0).await;
        assert_eq!(server["title"], json!("mine"), "{}", site.label);
        assert_eq!(
            server["views"],
            json!(3),
            "{}: not written as empty",
            site.label
        );
        let local = file.local().await;
        for (k, (status, _, views)) in &local {
            assert_eq!(
                (status.as_str(), views),
                ("synced", &json!(3)),
                "{}: {k}",
                site.label
            );
        }
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_of_different_fields_merge_under_every_strategy() {
    for (site, mut dbs) in pairs().await {
        for strategy in ["last_write_wins", "first_write_wins", "manual"] {
            let c = site.collection("merged", &FIELDS).await;
            let rows = site
                .insert(
                    &c.name,
                    vec![
                        row(json!({"title": "t0", "views": 1})),
                        row(json!({"title": "t1", "views": 1})),
                    ],
                )
                .await;
            let (k0, k1) = (key(&rows[0]), key(&rows[1]));
            let file =
                SchemaFile::new(&site, site.limited_token(&c.name).await, &mut dbs, &c.name).await;
            let path = file.write(&["title", "views"], &format!("    conflict: {strategy}\n"));
            assert_eq!(file.sync(&path).0, 0);
            // k0: different fields on each side. k1 (manual only): the same field.
            site.update(&c.name, &k0, row(json!({"views": 5}))).await;
            file.sql(&format!(
                "UPDATE \"{}\" SET title = 'mine' WHERE id = '{k0}'",
                c.name
            ))
            .await;
            let label = format!("{} {strategy}", site.label);

            let (code, report) = file.sync(&path);
            assert_eq!(code, 0, "{label}: nothing waits for a person: {report}");
            assert_eq!(
                report["collections"][0]["merged"],
                json!(1),
                "{label}: {report}"
            );
            let server = server_row(&site, &c.name, &k0).await;
            assert_eq!(
                (&server["title"], &server["views"]),
                (&json!("mine"), &json!(5)),
                "{label}"
            );
            assert_eq!(
                file.local().await[&k0],
                ("synced".to_owned(), json!("mine"), json!(5)),
                "{label}"
            );
            let (_, records) = file.run(&path, &["conflicts", "list", "--all", "--json"]);
            assert_eq!(
                records[0]["resolution"],
                json!("merged"),
                "{label}: {records}"
            );
            assert_eq!(
                records[0]["fields"],
                json!({"title": "local", "views": "remote"}),
                "{label}: {records}"
            );
            let (_, runs) = file.run(&path, &["status", "--json"]);
            let run = &runs["last_run"]["summary"]["collections"][0];
            assert_eq!(run["merged"], json!(1), "{label}: {runs}");
            assert_eq!(
                run["merges"],
                json!([{"key": k0, "fields": {"title": "local", "views": "remote"}}]),
                "{label}: the run history shows the merge: {runs}"
            );

            if strategy == "manual" {
                site.update(&c.name, &k1, row(json!({"title": "theirs", "views": 9})))
                    .await;
                file.sql(&format!(
                    "UPDATE \"{}\" SET title = 'ours' WHERE id = '{k1}'",
                    c.name
                ))
                .await;
                let (code, report) = file.sync(&path);
                assert_eq!(code, 3, "{label}: a collision waits for a person: {report}");
                let (_, open) = file.run(&path, &["conflicts", "list", "--json"]);
                assert_eq!(
                    open[0]["fields"],
                    json!({"title": "collided", "views": "remote"}),
                    "{label}: {open}"
                );
                let server = server_row(&site, &c.name, &k1).await;
                assert_eq!(server["title"], json!("theirs"), "{label}");
            }
            site.cleanup().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_lost_a_permission_fails_the_sync_and_keeps_every_change() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("revoked", &FIELDS).await;
        let rows = site
            .insert(
                &c.name,
                (0..21)
                    .map(|i| row(json!({"title": format!("a{i}"), "views": i})))
                    .collect(),
            )
            .await;
        let file =
            SchemaFile::new(&site, site.limited_token(&c.name).await, &mut dbs, &c.name).await;
        let path = file.write(&["title", "views"], "");
        assert_eq!(file.sync(&path).0, 0, "{}", site.label);

        let (edited, other) = rows.split_at(20);
        // A server edit still arrives: the failed push does not stop the pull.
        site.update(
            &c.name,
            &key(&other[0]),
            row(json!({"title": "from the server"})),
        )
        .await;
        site.revoke(&c.name, "update").await;
        for r in edited {
            file.sql(&format!(
                "UPDATE \"{}\" SET title = 'offline {}' WHERE id = '{}'",
                c.name,
                r["title"].as_str().unwrap(),
                key(r)
            ))
            .await;
        }
        let (code, report) = file.sync(&path);
        assert_eq!(code, 1, "{}: {report}", site.label);
        let collection = &report["collections"][0];
        assert_eq!(
            collection["error_kind"],
            json!("forbidden"),
            "{}: {report}",
            site.label
        );
        assert!(
            collection["error"]
                .as_str()
                .unwrap()
                .contains("may not update"),
            "{}: names the action: {report}",
            site.label
        );
        assert_eq!(
            collection["quarantined"],
            json!(0),
            "{}: {report}",
            site.label
        );
        let local = file.local().await;
        let pending = local.values().filter(|(s, _, _)| s == "updated").count();
        assert_eq!(pending, 20, "{}: every change waits", site.label);
        assert_eq!(
            local[&key(&other[0])].1,
            json!("from the server"),
            "{}",
            site.label
        );
        let (_, records) = file.run(&path, &["conflicts", "list", "--all", "--json"]);
        assert_eq!(records, json!([]), "{}: nothing for a person", site.label);

        site.restore(&c.name, "update").await;
        let (code, report) = file.sync(&path);
        assert_eq!(code, 0, "{}: {report}", site.label);
        assert_eq!(
            report["collections"][0]["pushed"],
            json!(20),
            "{}: {report}",
            site.label
        );
        let server = site.rows(&c.name).await;
        let offline = server
            .iter()
            .filter(|r| r["title"].as_str().unwrap().starts_with("offline "))
            .count();
        assert_eq!(offline, 20, "{}", site.label);
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_row_that_does_not_fit_stops_nothing_else() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("unfit", &FIELDS).await;
        let rows = site
            .insert(
                &c.name,
                (0..3)
                    .map(|i| row(json!({"title": format!("a{i}"), "views": i})))
                    .collect(),
            )
            .await;
        let (k0, k1) = (key(&rows[0]), key(&rows[1]));
        let file =
            SchemaFile::new(&site, site.limited_token(&c.name).await, &mut dbs, &c.name).await;
        let path = file.write(&["title", "views"], "");
        assert_eq!(file.sync(&path).0, 0, "{}", site.label);
        file.sql(&format!(
            "UPDATE \"{}\" SET title = 'mine' WHERE id = '{k0}'",
            c.name
        ))
        .await;
        // Directus on SQLite stores text in an integer field; on PostgreSQL no row can be
        // made that does not fit, and the case does not arise.
        let unfit = site
            .try_call(
                adapters::directus::Method::PATCH,
                &format!("/items/{}/{k0}", c.name),
                &[],
                Some(&json!({"views": "many"})),
            )
            .await;
        if let Err(e) = unfit {
            println!(
                "{}: the server refuses a value of another type ({e}); not run",
                site.label
            );
            site.cleanup().await;
            continue;
        }
        site.update(&c.name, &k1, row(json!({"title": "server edit"})))
            .await;

        for attempt in 0..2 {
            let (code, report) = file.sync(&path);
            let label = format!("{} attempt {attempt}", site.label);
            assert!(
                report["collections"][0]["error"].is_null(),
                "{label}: {report}"
            );
            assert_eq!(
                code, 3,
                "{label}: the row that does not fit is recorded: {report}"
            );
            let local = file.local().await;
            assert_eq!(
                local[&k1].1,
                json!("server edit"),
                "{label}: other rows sync"
            );
            assert_eq!(local[&k0].0, "updated", "{label}: the local change waits");
            let (_, open) = file.run(&path, &["conflicts", "list", "--json"]);
            assert_eq!(
                open.as_array().unwrap().len(),
                1,
                "{label}: recorded once: {open}"
            );
            assert_eq!(open[0]["kind"], json!("invalid_remote"), "{label}: {open}");
        }
        let untouched = &rows[0]["title"];
        assert_eq!(
            &server_row(&site, &c.name, &k0).await["title"],
            untouched,
            "{}",
            site.label
        );

        // Once the server row fits again, the local edit merges with it.
        site.update(&c.name, &k0, row(json!({"views": 7}))).await;
        let (_, report) = file.sync(&path);
        assert!(report["collections"][0]["error"].is_null(), "{report}");
        let server = server_row(&site, &c.name, &k0).await;
        assert_eq!(
            (&server["title"], &server["views"]),
            (&json!("mine"), &json!(7)),
            "{}",
            site.label
        );
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_file_changes_with_rows_pending_lose_nothing() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("evolving", &FIELDS).await;
        let other = site.collection("other", &FIELDS).await;
        let rows = site
            .insert(&c.name, vec![row(json!({"title": "a", "views": 1}))])
            .await;
        let k = key(&rows[0]);
        let file = SchemaFile::new(&site, site.admin_token(), &mut dbs, &c.name).await;
        let other_block = format!("  {}:\n    fields:\n      title: string\n", other.name);
        let both = file.write_with(&["title", "views"], "", &other_block);
        assert_eq!(file.sync(&both).0, 0, "{}", site.label);
        file.sql(&format!(
            "UPDATE \"{}\" SET title = 'mine', views = 99 WHERE id = '{k}'",
            c.name
        ))
        .await;

        // A field removed from the file: its column stays, its pending value is not sent.
        let without_views = file.write_with(&["title"], "", &other_block);
        let (code, report) = file.sync(&without_views);
        assert_eq!(code, 0, "{}: {report}", site.label);
        let server = server_row(&site, &c.name, &k).await;
        assert_eq!(
            (&server["title"], &server["views"]),
            (&json!("mine"), &json!(1)),
            "{}",
            site.label
        );
        assert_eq!(
            file.local().await[&k].2,
            json!(99),
            "{}: the column keeps its value",
            site.label
        );

        // Back in the file after a row was edited without it: the value it kept while out is
        // not sent over the server's, and the row takes the server's value.
        file.sql(&format!(
            "UPDATE \"{}\" SET title = 'again' WHERE id = '{k}'",
            c.name
        ))
        .await;
        site.update(&c.name, &k, row(json!({"views": 5}))).await;
        let both = file.write_with(&["title", "views"], "", &other_block);
        let (code, report) = file.sync(&both);
        assert_eq!(code, 0, "{}: {report}", site.label);
        let server = server_row(&site, &c.name, &k).await;
        assert_eq!(
            (&server["title"], &server["views"]),
            (&json!("again"), &json!(5)),
            "{}",
            site.label
        );
        assert_eq!(file.local().await[&k].2, json!(5), "{}", site.label);

        // The field back under another type: refused, naming file, line and field.
        let retyped = file.write_with(&["title", "views:string"], "", &other_block);
        let out = file.output(&retyped, &["sync", "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", site.label);
        let path = retyped.display().to_string();
        assert!(
            stderr.contains(&format!("{path}:11:"))
                && stderr.contains(&format!("collections.{}.fields.views", c.name)),
            "{}: {stderr}",
            site.label
        );
        assert!(
            stderr.contains("integer") && stderr.contains("string"),
            "{stderr}"
        );

        // A collection removed from the file: its table is kept and `status` says so.
        file.sql(&format!(
            "UPDATE \"{}\" SET title = 'waits' WHERE id = '{k}'",
            c.name
        ))
        .await;
        let only_other = file.write_with(&[], "", &other_block);
        let (code, status) = file.run(&only_other, &["status", "--json"]);
        assert_eq!(code, 0, "{status}");
        let removed = status["collections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["collection"] == json!(c.name))
            .unwrap_or_else(|| panic!("{}: {status}", site.label))
            .clone();
        assert_eq!(removed["removed_from_file"], json!(true), "{removed}");
        assert_eq!(
            removed["updated"],
            json!(1),
            "{}: the pending change is kept: {removed}",
            site.label
        );
        assert_eq!(file.sync(&only_other).0, 0, "{}", site.label);
        assert_eq!(
            server_row(&site, &c.name, &k).await["title"],
            json!("again"),
            "{}: not synced",
            site.label
        );
        site.cleanup().await;
    }
}
