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
            "  {}:\n    key_type: auto_increment\n    idempotency_field: none\n    cursor: date_updated\n    fields:\n      title: string\n",
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
            "  {}:\n    key_type: auto_increment\n    idempotency_field: none\n    cursor: {{updated: date_updated, created: date_created}}\n    fields:\n      title: string\n      date_created: timestamp\n",
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

/// Adds the idempotency field to a stock collection, as `scripts/directus seed` does.
async fn add_idempotency_field(site: &Site, collection: &str) {
    let field = cli::remote_setup::idempotency_field("deltasync_key");
    site.call(
        adapters::directus::Method::POST,
        &format!("/fields/{collection}"),
        &[],
        Some(&field),
    )
    .await;
    // Directus may answer the next request from a schema that predates the field.
    site.until_listed(collection, &["deltasync_key"]).await;
}

/// A replica's schema: a stock parent collection and a child with a many-to-one to it, keys
/// assigned by the server.
fn server_key_schema(parents: &str, children: &str) -> String {
    let common = "    key_type: auto_increment\n    cursor: {updated: date_updated, created: date_created}\n";
    format!(
        "  {parents}:\n{common}    fields:\n      title: string\n  {children}:\n{common}    fields:\n      title: string\n      parent: {{type: integer, references: {parents}}}\n"
    )
}

impl Project {
    /// One value of the local database.
    async fn value<T: sea_orm::TryGetable>(&self, query: &str) -> T {
        let db = Database::connect(self.database.as_str()).await.unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                query,
            ))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{query}: no row"));
        db.close().await.unwrap();
        row.try_get_by_index(0).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_creates_of_two_replicas_and_the_app_all_land_once_with_their_children() {
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let title = [("title", deltasync::FieldType::String)];
        let parents = site.stock_collection("parents", &title).await;
        let children = site
            .stock_collection(
                "children",
                &[
                    ("title", deltasync::FieldType::String),
                    ("parent", deltasync::FieldType::Integer),
                ],
            )
            .await;
        for c in [&parents, &children] {
            add_idempotency_field(&site, &c.name).await;
        }
        let (p, ch) = (parents.name.as_str(), children.name.as_str());
        let a = Project::new(&site, &mut dbs).await;
        let b = Project::new(&site, &mut dbs).await;
        let (file_a, file_b) = (
            a.write(&server_key_schema(p, ch)),
            b.write(&server_key_schema(p, ch)),
        );
        for (project, file) in [(&a, &file_a), (&b, &file_b)] {
            let (code, report) = project.sync(file);
            assert_eq!(code, 0, "{label}: {report}");
        }

        // Offline: A creates a parent and its child, B a parent, the app a parent.
        a.sql(&format!("INSERT INTO \"{p}\" (title) VALUES ('from a')"))
            .await;
        let temporary: i64 = a
            .value(&format!("SELECT id FROM \"{p}\" WHERE title = 'from a'"))
            .await;
        assert!(
            temporary < 0,
            "{label}: a temporary key is negative, got {temporary}"
        );
        a.sql(&format!(
            "INSERT INTO \"{ch}\" (title, parent) VALUES ('child of a', {temporary})"
        ))
        .await;
        b.sql(&format!("INSERT INTO \"{p}\" (title) VALUES ('from b')"))
            .await;
        let refused = Database::connect(a.database.as_str())
            .await
            .unwrap()
            .execute_unprepared(&format!(
                "INSERT INTO \"{p}\" (id, title) VALUES (7, 'taken')"
            ))
            .await;
        assert!(
            refused.is_err(),
            "{label}: a positive key inserted here is refused"
        );
        site.insert(p, vec![row(json!({"title": "from the app"}))])
            .await;

        // B's create lands but its answer is lost: the server holds the row with B's
        // idempotency key while B still holds it under its temporary key.
        let replica_b: String = b.value("SELECT id FROM \"_deltasync_replica\"").await;
        let temporary_b: i64 = b
            .value(&format!("SELECT id FROM \"{p}\" WHERE title = 'from b'"))
            .await;
        site.insert(
            p,
            vec![row(
                json!({"title": "from b", "deltasync_key": format!("{replica_b}:{temporary_b}")}),
            )],
        )
        .await;

        for (project, file) in [(&a, &file_a), (&b, &file_b), (&a, &file_a), (&b, &file_b)] {
            let (code, report) = project.sync(file);
            assert_eq!(code, 0, "{label}: {report}");
        }

        let server = site.rows(p).await;
        let mut titles: Vec<&str> = server
            .iter()
            .map(|r| r["title"].as_str().unwrap())
            .collect();
        titles.sort();
        assert_eq!(
            titles,
            ["from a", "from b", "from the app"],
            "{label}: each create once"
        );
        let id_of = |title: &str| id(server.iter().find(|r| r["title"] == json!(title)).unwrap());
        let server_children = site.rows(ch).await;
        assert_eq!(server_children.len(), 1, "{label}");
        assert_eq!(
            server_children[0]["parent"],
            json!(id_of("from a")),
            "{label}: the child points at its parent"
        );
        for project in [&a, &b] {
            let local = project.local(p).await;
            let mut expected: Vec<(i64, (String, Value))> = server
                .iter()
                .map(|r| (id(r), ("synced".to_owned(), r["title"].clone())))
                .collect();
            expected.sort_by_key(|(k, _)| *k);
            assert_eq!(
                local.into_iter().collect::<Vec<_>>(),
                expected,
                "{label}: every replica holds the server's keys"
            );
            let parent: i64 = project.value(&format!("SELECT parent FROM \"{ch}\"")).await;
            assert_eq!(parent, id_of("from a"), "{label}");
        }
        let mapped: String = a
            .value(&format!("SELECT server_key FROM \"_deltasync_key_map\" WHERE collection = '{p}' AND temporary_key = '{temporary}'"))
            .await;
        assert_eq!(
            mapped,
            id_of("from a").to_string(),
            "{label}: the key map tells the move"
        );
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_types_of_stock_collections_are_pulled_and_pushed_exactly() {
    use deltasync::FieldType as T;
    let types = [
        ("big", T::BigInteger),
        ("price", T::Decimal),
        ("starts", T::DateTime),
        ("day", T::Date),
        ("at", T::Time),
        ("tags", T::Csv),
        ("secret", T::Hash),
    ];
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let c = site.stock_collection("typed", &types).await;
        let created = site
            .insert(
                &c.name,
                vec![row(json!({"big": "4294967297", "price": "12.5", "starts": "2026-01-02T03:04:05",
                    "day": "2026-01-02", "at": "03:04:05", "tags": ["a", "b"], "secret": "hunter2"}))],
            )
            .await;
        let key = id(&created[0]);
        let hash = created[0]["secret"].clone();
        assert_ne!(hash, json!("hunter2"), "{label}: the server keeps a hash");
        let project = Project::new(&site, &mut dbs).await;
        let fields: String = types
            .iter()
            .map(|(name, kind)| format!("      {name}: {kind}\n"))
            .collect();
        let file = project.write(&format!(
            "  {}:\n    key_type: auto_increment\n    idempotency_field: none\n    cursor: {{updated: date_updated, created: date_created}}\n    fields:\n{fields}",
            c.name
        ));
        let (code, report) = project.sync(&file);
        assert_eq!(code, 0, "{label}: {report}");
        let local = |column: &str| format!("SELECT CAST({column} AS TEXT) FROM \"{}\"", c.name);
        let big: String = project.value(&local("big")).await;
        assert_eq!(big, "4294967297", "{label}: a 64-bit integer");
        let day: String = project.value(&local("day")).await;
        assert_eq!(day, "2026-01-02", "{label}");
        let secret: String = project.value(&local("secret")).await;
        assert_eq!(json!(secret), hash, "{label}: the hash is pulled as it is");

        project
            .sql(&format!(
                "UPDATE \"{}\" SET big = 8589934593, price = '0.125', day = '2027-03-04', at = '23:59:58', \
                 tags = '[\"x\",\"y\"]', secret = 'changed here'",
                c.name
            ))
            .await;
        let (code, report) = project.sync(&file);
        assert_eq!(code, 0, "{label}: {report}");
        let server = site.rows(&c.name).await;
        let server = server.iter().find(|r| id(r) == key).unwrap();
        assert_eq!(
            deltasync::engine_decode::normalize(T::BigInteger, &server["big"]),
            json!(8589934593_i64),
            "{label}"
        );
        assert_eq!(server["day"], json!("2027-03-04"), "{label}");
        assert_eq!(server["at"], json!("23:59:58"), "{label}");
        assert_eq!(server["tags"], json!(["x", "y"]), "{label}");
        assert_eq!(
            server["secret"], hash,
            "{label}: a hash field is never pushed"
        );
        let price = deltasync::engine_decode::normalize(T::Decimal, &server["price"]);
        assert!(
            price.as_str().unwrap().starts_with("0.125"),
            "{label}: {price}"
        );
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_sync_takes_a_stock_server_to_a_synced_database_with_no_hand_edits() {
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let name = [("name", deltasync::FieldType::String)];
        let categories = site.stock_collection("categories", &name).await;
        let articles = site
            .stock_collection(
                "articles",
                &[
                    ("title", deltasync::FieldType::String),
                    ("category", deltasync::FieldType::Integer),
                ],
            )
            .await;
        let (cat, art) = (categories.name.as_str(), articles.name.as_str());
        site.relate(&json!({"collection": art, "field": "category", "related_collection": cat}))
            .await;
        let parent = site.insert(cat, vec![row(json!({"name": "news"}))]).await;
        let first = site
            .insert(
                art,
                vec![row(json!({"title": "first", "category": id(&parent[0])}))],
            )
            .await;
        // A many-to-many between them, through a junction without date fields.
        let junction = site.junction(art, cat).await;
        let (left, right) = (format!("{art}_id"), format!("{cat}_id"));
        site.insert(
            &junction,
            vec![row(json!({&left: id(&first[0]), &right: id(&parent[0])}))],
        )
        .await;

        let project = Project::new(&site, &mut dbs).await;
        let file = project.dir.path().join("shop.yaml");
        let mut init = vec![
            "init".to_owned(),
            cat.to_owned(),
            art.to_owned(),
            junction.clone(),
            "--add-fields".to_owned(),
        ];
        let postgres = project.database.starts_with("postgres");
        if postgres {
            init.extend(["--database".to_owned(), project.database.clone()]);
        }
        let run = |args: &[String]| {
            Command::new(env!("CARGO_BIN_EXE_deltasync"))
                .env("DIRECTUS_URL", &project.url)
                .env("DIRECTUS_TOKEN", &project.token)
                .arg("-c")
                .arg(&file)
                .args(args)
                .output()
                .unwrap()
        };
        let out = run(&init);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{label}: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("${DIRECTUS_TOKEN}") && !text.contains(&project.token),
            "{label}: {text}"
        );
        assert!(
            text.contains(&format!("references: {cat}")),
            "{label}: {text}"
        );
        assert!(
            text.contains(&format!("{left}: {{type: integer, references: {art}}}")),
            "{label}: {text}"
        );
        assert!(
            said.contains("added")
                && said.contains("deltasync_key")
                && said.contains("date_created"),
            "{label}: {said}"
        );
        assert_eq!(
            run(&init).status.code(),
            Some(2),
            "{label}: an existing file is kept"
        );

        let validated = run(&["validate".into(), "--remote".into()]);
        assert_eq!(
            validated.status.code(),
            Some(0),
            "{label}: {}",
            String::from_utf8_lossy(&validated.stdout)
        );
        let synced = run(&["sync".into()]);
        assert_eq!(
            synced.status.code(),
            Some(0),
            "{label}: {}",
            String::from_utf8_lossy(&synced.stdout)
        );

        // The local database sits beside the schema file unless one was given.
        let local = if postgres {
            project.database.clone()
        } else {
            format!("sqlite://{}", project.dir.path().join("shop.db").display())
        };
        let db = Database::connect(local.as_str()).await.unwrap();
        let count = |sql: String| {
            let db = &db;
            async move {
                let row = db
                    .query_one_raw(sea_orm::Statement::from_string(
                        db.get_database_backend(),
                        sql,
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get_by_index::<i64>(0).unwrap()
            }
        };
        assert_eq!(
            count(format!(
                "SELECT COUNT(*) FROM \"{art}\" WHERE _sync_status = 'synced'"
            ))
            .await,
            1,
            "{label}"
        );
        db.execute_unprepared(&format!("INSERT INTO \"{cat}\" (name) VALUES ('offline')"))
            .await
            .unwrap();
        let temporary = count(format!("SELECT id FROM \"{cat}\" WHERE name = 'offline'")).await;
        db.execute_unprepared(&format!(
            "INSERT INTO \"{art}\" (title, category) VALUES ('second', {temporary})"
        ))
        .await
        .unwrap();
        assert_eq!(
            count(format!(
                "SELECT COUNT(*) FROM \"{junction}\" WHERE _sync_status = 'synced'"
            ))
            .await,
            1,
            "{label}: the junction row made before its date fields is pulled"
        );
        let second = count(format!("SELECT id FROM \"{art}\" WHERE title = 'second'")).await;
        db.execute_unprepared(&format!(
            "INSERT INTO \"{junction}\" ({left}, {right}) VALUES ({second}, {temporary})"
        ))
        .await
        .unwrap();
        db.close().await.unwrap();
        let synced = run(&["sync".into()]);
        assert_eq!(
            synced.status.code(),
            Some(0),
            "{label}: {}",
            String::from_utf8_lossy(&synced.stdout)
        );
        let server_categories = site.rows(cat).await;
        let offline = server_categories
            .iter()
            .find(|r| r["name"] == json!("offline"))
            .unwrap();
        let second = site
            .rows(art)
            .await
            .into_iter()
            .find(|r| r["title"] == json!("second"))
            .unwrap();
        assert_eq!(second["category"], json!(id(offline)), "{label}");
        let links = site.rows(&junction).await;
        assert!(
            links
                .iter()
                .any(|l| l[&left] == json!(id(&second)) && l[&right] == json!(id(offline))),
            "{label}: the offline link points at both server keys: {links:?}"
        );
        site.cleanup().await;
    }
}
