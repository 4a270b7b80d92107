//! Valid schema files load into the expected model: defaults, inheritance, environment
//! substitution, database paths, the shipped examples and the JSON Schema.

use std::path::{Path, PathBuf};

use schema::{
    Auth, CollectionConfig, Config, Deletes, FieldConfig, FieldType, KeyType, LocalConfig,
    RemoteConfig, Secret, Strategy,
};
use serde_json::json;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(yaml: &str) -> Config {
    match Config::from_yaml_str_with_env(yaml, None, no_env) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    }
}

const FULL: &str = r#"
remote:
  url: http://127.0.0.1:8055/
  token: ${DIRECTUS_TOKEN}
  timeout_seconds: 15
  max_retries: 2
local:
  database: "sqlite::memory:"
defaults:
  cursor: stamp
  conflict: first_write_wins
  page_size: 200
  overlap_seconds: 5
  deletes: none
collections:
  authors:
    fields:
      name: string
      email: string
  articles:
    table: posts
    primary_key: uid
    key_type: string
    cursor: last_modified
    conflict: manual
    deletes: {archive: {field: status, value: archived}}
    page_size: 500
    overlap_seconds: 10
    interval_seconds: 300
    filter: {status: {_neq: draft}, views: {_gte: 3}}
    fields:
      title: string
      body: text
      views: integer
      score: float
      published: boolean
      meta: json
      status: string
      author: {type: uuid, references: authors}
      published_at: timestamp
"#;

fn expected_full() -> Config {
    let authors = CollectionConfig {
        cursor: "stamp".into(),
        conflict: Strategy::FirstWriteWins,
        page_size: 200,
        overlap_seconds: 5,
        deletes: Deletes::None,
        ..CollectionConfig::new("authors")
    }
    .with_field("name", FieldType::String)
    .with_field("email", FieldType::String);
    let articles = CollectionConfig {
        table: "posts".into(),
        primary_key: "uid".into(),
        key_type: KeyType::String,
        conflict: Strategy::Manual,
        deletes: Deletes::Archive {
            field: "status".into(),
            value: json!("archived"),
        },
        page_size: 500,
        interval_seconds: Some(300),
        filter: Some(json!({"status": {"_neq": "draft"}, "views": {"_gte": 3}})),
        ..CollectionConfig::new("articles")
    }
    .with_field("title", FieldType::String)
    .with_field("body", FieldType::Text)
    .with_field("views", FieldType::Integer)
    .with_field("score", FieldType::Float)
    .with_field("published", FieldType::Boolean)
    .with_field("meta", FieldType::Json)
    .with_field("status", FieldType::String)
    .with_relation("author", FieldType::Uuid, "authors")
    .with_field("published_at", FieldType::Timestamp);
    Config {
        source: None,
        remote: RemoteConfig {
            url: "http://127.0.0.1:8055".into(),
            auth: Auth::Token(Secret::new("tok")),
            timeout_seconds: 15,
            max_retries: 2,
        },
        local: LocalConfig {
            database: "sqlite::memory:".into(),
        },
        collections: vec![authors, articles],
    }
}

#[test]
fn full_file_parses_into_the_model() {
    let env = |name: &str| (name == "DIRECTUS_TOKEN").then(|| "tok".to_owned());
    let config = Config::from_yaml_str_with_env(FULL, None, env).expect("valid");
    assert_eq!(config, expected_full());
    assert_eq!(
        config.collection("articles").map(|c| c.table.as_str()),
        Some("posts")
    );
    assert_eq!(
        config
            .collection("articles")
            .and_then(|c| c.field("author")),
        Some(&FieldConfig {
            name: "author".into(),
            kind: FieldType::Uuid,
            references: Some("authors".into()),
            read_only: false,
        })
    );
    assert!(config.validate().is_ok());
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let config = parse(
        "remote:\n  url: http://x\n  email: a@b.c\n  password: pw\ncollections:\n  \
         notes:\n    fields:\n      text: text\n",
    );
    let expected = Config {
        source: None,
        remote: RemoteConfig::new(
            "http://x",
            Auth::Login {
                email: "a@b.c".into(),
                password: Secret::new("pw"),
            },
        ),
        local: LocalConfig::default(),
        collections: vec![CollectionConfig::new("notes").with_field("text", FieldType::Text)],
    };
    assert_eq!(config, expected);
    let notes = &config.collections[0];
    assert_eq!(config.remote.timeout_seconds, 30);
    assert_eq!(config.remote.max_retries, 5);
    assert_eq!(config.local.database, "sqlite://deltasync.db");
    assert_eq!(notes.table, "notes");
    assert_eq!(notes.primary_key, "id");
    assert_eq!(notes.key_type, KeyType::Uuid);
    assert_eq!(notes.cursor, "last_modified");
    assert_eq!(notes.conflict, Strategy::LastWriteWins);
    assert_eq!(notes.deletes, Deletes::Activity);
    assert_eq!(notes.page_size, 2500);
    assert_eq!(notes.overlap_seconds, 10);
    assert_eq!(notes.filter, None);
}

#[test]
fn collections_keep_file_order() {
    let config = parse(
        "remote: {url: http://x, token: t}\ncollections:\n  zeta: {fields: {a: string}}\n  \
         alpha: {fields: {a: string}}\n  mid: {fields: {a: string}}\n",
    );
    let names: Vec<&str> = config.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
}

#[test]
fn environment_substitution() {
    let env = |name: &str| match name {
        "HOST" => Some("cms.example.com".to_owned()),
        "PAGE" => Some("250".to_owned()),
        "TOKEN" => Some("12345".to_owned()),
        _ => None,
    };
    let yaml = "remote:\n  url: https://${HOST}\n  token: ${TOKEN}\n  timeout_seconds: \
                ${TIMEOUT:-45}\ncollections:\n  a:\n    page_size: ${PAGE}\n    conflict: \
                ${CONFLICT:-manual}\n    filter: {year: {_gte: \"${YEAR:-2020}\"}}\n    fields:\n      \
                b: string\n";
    let config = Config::from_yaml_str_with_env(yaml, None, env).expect("valid");
    assert_eq!(config.remote.url, "https://cms.example.com");
    // A token that looks like a number stays text.
    assert_eq!(config.remote.auth, Auth::Token(Secret::new("12345")));
    assert_eq!(config.remote.timeout_seconds, 45);
    let a = &config.collections[0];
    assert_eq!(a.page_size, 250);
    assert_eq!(a.conflict, Strategy::Manual);
    // Inside a filter there is no type to read substituted text as: it stays a string.
    assert_eq!(a.filter, Some(json!({"year": {"_gte": "2020"}})));
}

#[test]
fn process_environment_is_used_by_default() {
    // PATH is set for every test process; its value must come through unchanged.
    let Ok(path) = std::env::var("PATH") else {
        return;
    };
    let yaml =
        "remote: {url: http://x, token: \"${PATH}\"}\ncollections: {a: {fields: {b: json}}}\n";
    let config = Config::from_yaml_str(yaml, None).expect("valid");
    assert_eq!(config.remote.auth, Auth::Token(Secret::new(path)));
}

#[test]
fn relative_sqlite_paths_resolve_next_to_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("deltasync.yaml");
    let body = "remote: {url: http://x, token: t}\ncollections: {a: {fields: {b: string}}}\n";
    std::fs::write(
        &file,
        format!("local:\n  database: sqlite:data/x.db\n{body}"),
    )
    .expect("write");
    let config = Config::load(&file).expect("valid");
    assert_eq!(config.source.as_deref(), Some(file.as_path()));
    let expected = format!("sqlite:{}", dir.path().join("data/x.db").display());
    assert_eq!(config.local.database, expected);

    // The default database lands next to the file too.
    std::fs::write(&file, body).expect("write");
    let config = Config::load(&file).expect("valid");
    let expected = format!("sqlite://{}", dir.path().join("deltasync.db").display());
    assert_eq!(config.local.database, expected);

    for kept in [
        "sqlite::memory:",
        "sqlite:///var/lib/x.db",
        "postgres://u@h/db",
    ] {
        std::fs::write(&file, format!("local:\n  database: \"{kept}\"\n{body}")).expect("write");
        let config = Config::load(&file).expect("valid");
        assert_eq!(config.local.database, kept);
    }
}

#[test]
fn without_a_file_paths_are_kept() {
    let config = parse(
        "remote: {url: http://x, token: t}\nlocal: {database: sqlite://rel.db}\n\
         collections: {a: {fields: {b: string}}}\n",
    );
    assert_eq!(config.local.database, "sqlite://rel.db");
    assert_eq!(config.source, None);
}

#[test]
fn credentials_do_not_leak_through_debug_or_serialization() {
    let config = parse(
        "remote: {url: http://x, email: a@b.c, password: hunter2}\n\
         collections: {a: {fields: {b: string}}}\n",
    );
    assert!(!format!("{config:?}").contains("hunter2"));
    let value = serde_json::to_value(&config).expect("serializes");
    assert!(!value.to_string().contains("hunter2"));
    assert_eq!(value["remote"]["auth"]["login"]["password"], json!("***"));
    assert_eq!(
        value["collections"][0]["fields"][0],
        json!({"name": "b", "type": "string"})
    );
    assert_eq!(
        value["collections"][0]["conflict"],
        json!("last_write_wins")
    );
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn shipped_examples_parse() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples directory") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        if let Err(error) = Config::from_yaml_str_with_env(&text, Some(&path), no_env) {
            panic!("{error}");
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected at least two examples, found {seen}");
}

#[test]
fn example_files_say_what_they_promise() {
    let sqlite = Config::from_yaml_str_with_env(
        &std::fs::read_to_string(examples_dir().join("deltasync.yaml")).expect("readable"),
        None,
        no_env,
    )
    .expect("valid");
    assert_eq!(sqlite.remote.url, "http://127.0.0.1:8055");
    assert!(matches!(sqlite.remote.auth, Auth::Token(_)));
    assert!(sqlite.local.database.starts_with("sqlite:"));
    let articles = sqlite.collection("articles").expect("articles");
    let author = articles.field("author").expect("author field");
    assert_eq!(author.references.as_deref(), Some("authors"));

    let postgres = Config::from_yaml_str_with_env(
        &std::fs::read_to_string(examples_dir().join("postgres.yaml")).expect("readable"),
        None,
        no_env,
    )
    .expect("valid");
    assert!(postgres.local.database.starts_with("postgres://"));
    assert!(matches!(postgres.remote.auth, Auth::Login { .. }));
    assert_eq!(postgres.collections.len(), 2);
}

#[test]
fn documented_example_parses() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = std::fs::read_to_string(doc).expect("docs/configuration.md");
    let start = text.find("```yaml\nremote:").expect("a complete example") + "```yaml\n".len();
    let length = text[start..].find("```").expect("end of the example");
    let env = |name: &str| (name == "DIRECTUS_TOKEN").then(|| "t".to_owned());
    let config = Config::from_yaml_str_with_env(&text[start..start + length], None, env);
    let config = config.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.collections.len(), 2);
}

#[test]
fn json_schema_describes_the_file() {
    let schema = schema::json_schema();
    assert!(schema.is_object());
    let properties = &schema["properties"];
    assert!(properties.get("collections").is_some());
    assert!(properties.get("remote").is_some());
    assert_eq!(schema["required"], json!(["remote", "collections"]));
    let text = schema.to_string();
    assert!(text.contains("\"description\""));
    assert!(text.contains("date-created"));
}
