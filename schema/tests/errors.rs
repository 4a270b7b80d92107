//! Every kind of mistake in a schema file gives an error with the right kind, position, key
//! path and a message that says what is allowed.

use std::path::Path;

use schema::{
    Auth, CollectionConfig, Config, ConfigError, ConfigErrorKind, FieldType, LocalConfig,
    RemoteConfig, Secret,
};

/// Variables visible to the files below; everything else is unset.
fn env(name: &str) -> Option<String> {
    match name {
        "DIRECTUS_TOKEN" => Some("secret-token".to_owned()),
        "PAGE" => Some("abc".to_owned()),
        _ => None,
    }
}

fn error(yaml: &str) -> ConfigError {
    match Config::from_yaml_str_with_env(yaml, Some(Path::new("deltasync.yaml")), env) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error,
    }
}

/// Asserts kind, position and that the message contains every one of `parts`.
#[track_caller]
fn check(error: &ConfigError, kind: ConfigErrorKind, at: Option<(u32, u32)>, parts: &[&str]) {
    let text = error.to_string();
    assert_eq!(error.kind(), kind, "{text}");
    assert_eq!(error.line().zip(error.column()), at, "{text}");
    for part in parts {
        assert!(text.contains(part), "{text:?} does not contain {part:?}");
    }
}

/// A valid head; cases append their collections (line 4 is `collections:`).
const HEAD: &str =
    "remote:\n  url: http://127.0.0.1:8055\n  token: ${DIRECTUS_TOKEN}\ncollections:\n";

fn with_head(collections: &str) -> String {
    format!("{HEAD}{collections}")
}

#[test]
fn unknown_strategy() {
    let e = error(&with_head(
        "  articles:\n    conflict: lww\n    fields:\n      title: string\n",
    ));
    check(&e, ConfigErrorKind::InvalidValue, Some((6, 15)), &[]);
    assert_eq!(
        e.to_string(),
        "deltasync.yaml:6:15: collections.articles.conflict: unknown strategy \"lww\"; \
         expected one of last_write_wins, first_write_wins, manual"
    );
    assert_eq!(e.path(), "collections.articles.conflict");
}

#[test]
fn unknown_key() {
    let e = error("remote:\n  url: http://x\n  tokn: abc\ncollections: {}\n");
    assert_eq!(
        e.to_string(),
        "deltasync.yaml:3:3: remote.tokn: unknown key; expected one of url, token, email, \
         password, timeout_seconds, max_retries"
    );
    assert_eq!(e.kind(), ConfigErrorKind::UnknownKey);
}

#[test]
fn unknown_key_in_a_collection_and_at_the_top() {
    let e = error(&with_head(
        "  articles:\n    feilds:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnknownKey,
        Some((6, 5)),
        &[
            "collections.articles.feilds: unknown key; expected one of table,",
            "fields",
        ],
    );
    let e = error(&format!(
        "{HEAD}  a:\n    fields: {{x: string}}\ncolections: {{}}\n"
    ));
    check(
        &e,
        ConfigErrorKind::UnknownKey,
        Some((7, 1)),
        &["colections: unknown key; expected one of remote, local, defaults, collections"],
    );
}

#[test]
fn unknown_field_type() {
    let e = error(&with_head(
        "  articles:\n    fields:\n      title: string\n      views: int\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((8, 14)),
        &[
            "deltasync.yaml:8:14: collections.articles.fields.views: unknown type \"int\"; \
             expected one of string, text, integer, float, boolean, json, uuid, timestamp",
        ],
    );
    let e = error(&with_head(
        "  articles:\n    fields:\n      author: {type: uid, references: articles}\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((7, 22)),
        &["collections.articles.fields.author.type: unknown type \"uid\""],
    );
}

#[test]
fn missing_environment_variable() {
    let e = error("remote:\n  url: http://x\n  token: ${MISSING_TOKEN}\ncollections: {}\n");
    check(
        &e,
        ConfigErrorKind::MissingEnv,
        Some((3, 10)),
        &["deltasync.yaml:3:10: remote.token: environment variable MISSING_TOKEN is not set"],
    );
}

#[test]
fn malformed_reference_does_not_echo_a_password() {
    let e = error(
        "remote:\n  url: http://x\n  email: a@b.c\n  password: \"p4ss${word\"\ncollections: {}\n",
    );
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((4, 13)),
        &[
            "remote.password: malformed variable reference",
            "${NAME:-default}",
        ],
    );
    assert!(!e.to_string().contains("p4ss"), "{e}");
}

#[test]
fn unsafe_collection_name() {
    let e = error(&with_head(
        "  my-table:\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((5, 3)),
        &[
            "deltasync.yaml:5:3: collections.my-table: \"my-table\" is not a safe SQL \
             identifier; use letters, digits and _ (starting with a letter or _), at most 63 \
             characters",
        ],
    );
}

#[test]
fn unsafe_table_field_and_key_names() {
    let e = error(&with_head(
        "  articles:\n    table: \"drop table x\"\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((6, 12)),
        &["collections.articles.table: \"drop table x\" is not a safe SQL identifier"],
    );
    let e = error(&with_head(
        "  articles:\n    fields:\n      \"ti tle\": string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((7, 7)),
        &["collections.articles.fields.ti tle: \"ti tle\" is not a safe SQL identifier"],
    );
    let long = "a".repeat(64);
    let e = error(&with_head(&format!(
        "  articles:\n    primary_key: {long}\n    fields:\n      title: string\n"
    )));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((6, 18)),
        &["collections.articles.primary_key:", "at most 63 characters"],
    );
    let e = error(&with_head(
        "  articles:\n    cursor: 1stamp\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((6, 13)),
        &["collections.articles.cursor: \"1stamp\" is not a safe SQL identifier"],
    );
}

#[test]
fn reserved_names() {
    let e = error(&with_head(
        "  articles:\n    fields:\n      _sync_status: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((7, 7)),
        &[
            "collections.articles.fields._sync_status: \"_sync_status\" is reserved",
            "_sync",
        ],
    );
    let e = error(&with_head(
        "  articles:\n    table: _deltasync_articles\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((6, 12)),
        &[
            "collections.articles.table: \"_deltasync_articles\" is reserved",
            "_deltasync",
        ],
    );
}

#[test]
fn wrong_type() {
    let e = error(&with_head(
        "  articles:\n    page_size: abc\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((6, 16)),
        &["collections.articles.page_size: expected an integer from 1 to 10000, found \"abc\""],
    );
    let e = error(&with_head(
        "  articles:\n    table: 12\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((6, 12)),
        &[
            "collections.articles.table: expected a string, found an integer; put the value in quotes",
        ],
    );
    let e = error(&with_head("  articles:\n    fields: [title]\n"));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((6, 13)),
        &["collections.articles.fields: expected a mapping, found a list"],
    );
}

#[test]
fn page_size_out_of_range() {
    let e = error(&with_head(
        "  articles:\n    page_size: 20000\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((6, 16)),
        &[
            "collections.articles.page_size: 20000 is out of range; expected an integer from 1 to 10000",
        ],
    );
    let e = error(&format!(
        "defaults:\n  page_size: 0\n{HEAD}  articles:\n    fields:\n      title: string\n"
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((2, 14)),
        &["defaults.page_size: 0 is out of range"],
    );
}

#[test]
fn interval_out_of_range() {
    for (written, column) in [("0", 23), ("86401", 23), ("-5", 23)] {
        let e = error(&with_head(&format!(
            "  articles:\n    interval_seconds: {written}\n    fields:\n      title: string\n"
        )));
        check(
            &e,
            ConfigErrorKind::InvalidValue,
            Some((6, column)),
            &[&format!(
                "collections.articles.interval_seconds: {written} is out of range; expected an integer from 1 to 86400"
            )],
        );
    }
}

#[test]
fn substituted_number_that_is_not_a_number() {
    let e = error(&with_head(
        "  articles:\n    page_size: ${PAGE}\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((6, 16)),
        &["collections.articles.page_size: expected an integer from 1 to 10000, found \"abc\""],
    );
}

#[test]
fn missing_required_keys() {
    let e = error("remote:\n  token: x\ncollections: {}\n");
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((1, 1)),
        &["deltasync.yaml:1:1: remote.url: missing required key; expected the Directus base URL"],
    );
    let e = error("remote:\n  url: http://x\n  token: x\n");
    check(
        &e,
        ConfigErrorKind::Invalid,
        None,
        &["deltasync.yaml: collections: missing required key; expected a mapping"],
    );
    let e = error(&with_head("  articles:\n    table: posts\n"));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((5, 3)),
        &["collections.articles.fields: missing required key; expected a mapping from field name"],
    );
    let e = error(&with_head("  articles:\n    fields: {}\n"));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((6, 5)),
        &["collections.articles.fields: no fields; list at least one field"],
    );
    let e = error(HEAD);
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((4, 1)),
        &["collections: no collections; configure at least one"],
    );
    let e = error(&with_head(
        "  articles:\n    fields:\n      author: {references: authors}\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((7, 7)),
        &["collections.articles.fields.author.type: missing required key; expected one of string,"],
    );
}

#[test]
fn empty_file() {
    let e = error("# nothing yet\n");
    check(
        &e,
        ConfigErrorKind::Invalid,
        None,
        &[
            "deltasync.yaml: the file is empty; expected a mapping with the keys remote and collections",
        ],
    );
    let e = error("- a\n- b\n");
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((1, 1)),
        &["expected a mapping with the keys remote and collections at the top level, found a list"],
    );
}

#[test]
fn credentials_must_be_token_or_email_and_password() {
    let both =
        "remote:\n  url: http://x\n  token: t\n  email: a@b.c\n  password: p\ncollections: {}\n";
    check(
        &error(both),
        ConfigErrorKind::Invalid,
        Some((3, 3)),
        &["remote: both token and email/password are set; use either token, or email and password"],
    );
    let neither = "remote:\n  url: http://x\ncollections: {}\n";
    check(
        &error(neither),
        ConfigErrorKind::Invalid,
        Some((1, 1)),
        &["remote: no credentials; set token"],
    );
    let password_only = "remote:\n  url: http://x\n  password: p\ncollections: {}\n";
    check(
        &error(password_only),
        ConfigErrorKind::Invalid,
        Some((3, 3)),
        &["remote: password is set without email; set both email and password, or use token"],
    );
    let email_only = "remote:\n  url: http://x\n  email: a@b.c\ncollections: {}\n";
    check(
        &error(email_only),
        ConfigErrorKind::Invalid,
        Some((3, 3)),
        &["remote: email is set without password"],
    );
}

#[test]
fn secrets_are_never_shown() {
    let e = error("remote:\n  url: http://x\n  token: 123456789\ncollections: {}\n");
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((3, 10)),
        &["remote.token: expected a string, found an integer; put the value in quotes"],
    );
    assert!(!e.to_string().contains("123456789"), "{e}");
    let e = error("remote:\n  url: http://x\n  token: [s3cret]\ncollections: {}\n");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let e =
        error("remote:\n  url: http://x\n  token: ''\ncollections: {a: {fields: {b: string}}}\n");
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((3, 10)),
        &["remote.token: empty value"],
    );
}

#[test]
fn bad_urls() {
    let e = error("remote:\n  url: ftp://x\n  token: t\ncollections: {a: {fields: {b: string}}}\n");
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((2, 8)),
        &["remote.url: \"ftp://x\" is not an http(s) URL; expected e.g. http://127.0.0.1:8055"],
    );
    let e = error(
        "remote: {url: http://x, token: t}\nlocal:\n  database: mysql://root:hunter2@db/x\n\
         collections: {a: {fields: {b: string}}}\n",
    );
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((3, 13)),
        &["local.database: unsupported database URL \"mysql:...\"; expected sqlite://<file>"],
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn references_must_name_a_configured_collection() {
    let e = error(&with_head(
        "  articles:\n    fields:\n      author: {type: uuid, references: writers}\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((7, 40)),
        &[
            "collections.articles.fields.author.references: unknown collection \"writers\"; \
             expected one of the configured collections: articles",
        ],
    );
}

#[test]
fn relation_type_must_match_the_key_type() {
    let e = error(&with_head(
        "  authors:\n    key_type: integer\n    fields: {name: string}\n  articles:\n    \
         fields:\n      author: {type: uuid, references: authors}\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((10, 22)),
        &[
            "collections.articles.fields.author.type: type uuid does not match the key type of \
           collection authors (integer); expected type integer",
        ],
    );
}

#[test]
fn primary_key_and_cursor_stay_out_of_fields() {
    let e = error(&with_head(
        "  articles:\n    fields:\n      title: string\n      id: uuid\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((8, 7)),
        &[
            "collections.articles.fields.id: \"id\" is the primary key (primary_key); it is always \
           synced, remove it from fields",
        ],
    );
    let e = error(&with_head(
        "  articles:\n    cursor: stamp\n    fields:\n      stamp: timestamp\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((8, 7)),
        &["collections.articles.fields.stamp: \"stamp\" is the cursor field (cursor)"],
    );
    let e = error(&with_head(
        "  articles:\n    cursor: id\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((6, 13)),
        &["collections.articles.cursor: the cursor \"id\" is also the primary key"],
    );
}

#[test]
fn duplicate_table_names() {
    let e = error(&with_head(
        "  authors:\n    fields: {name: string}\n  writers:\n    table: Authors\n    \
         fields: {name: string}\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((8, 12)),
        &["collections.writers.table: table \"Authors\" is already used by collection authors"],
    );
    let e = error(&with_head(
        "  people:\n    table: authors\n    fields: {name: string}\n  authors:\n    \
         fields: {name: string}\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((8, 3)),
        &["collections.authors: table \"authors\" is already used by collection people"],
    );
}

#[test]
fn duplicate_field_names_differing_in_case() {
    let e = error(&with_head(
        "  articles:\n    fields:\n      title: string\n      Title: text\n",
    ));
    check(
        &e,
        ConfigErrorKind::Invalid,
        Some((8, 7)),
        &["collections.articles.fields.Title: duplicate field"],
    );
}

#[test]
fn yaml_syntax_errors() {
    let e = error("remote: [1, 2\ncollections: {}\n");
    assert_eq!(e.kind(), ConfigErrorKind::Syntax, "{e}");
    assert!(e.line().is_some(), "{e}");
    assert!(e.to_string().starts_with("deltasync.yaml:"), "{e}");
    let e = error("remote: {url: http://x, token: t}\nlocal:\n  database: sqlite::memory:\n");
    check(
        &e,
        ConfigErrorKind::Syntax,
        Some((3, 27)),
        &["put the value in quotes"],
    );
    let e = error("remote: {url: http://x, token: ${T:-a}}\n");
    check(
        &e,
        ConfigErrorKind::Syntax,
        Some((1, 33)),
        &["also ${NAME} references"],
    );
    let e = error("remote: {url: http://x, token: t}\nremote: {url: http://y, token: t}\n");
    check(
        &e,
        ConfigErrorKind::Syntax,
        Some((2, 1)),
        &["deltasync.yaml:2:1: duplicate key \"remote\"; each key may appear only once"],
    );
}

#[test]
fn deletes_modes() {
    let e = error(&with_head(
        "  articles:\n    deletes: soft\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((6, 14)),
        &[
            "collections.articles.deletes: unknown deletes mode \"soft\"; expected activity or none, \
           or {archive: {field: <name>, value: <value>}}",
        ],
    );
    let e = error(&with_head(
        "  articles:\n    deletes: {archive: {field: status, valu: x}}\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnknownKey,
        Some((6, 40)),
        &["collections.articles.deletes.archive.valu: unknown key; expected one of field, value"],
    );
    let e = error(&with_head(
        "  articles:\n    deletes: {archive: {field: my-status, value: x}}\n    fields:\n      \
         title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((6, 32)),
        &["collections.articles.deletes.archive.field: \"my-status\" is not a safe SQL identifier"],
    );
}

#[test]
fn errors_in_inherited_defaults_point_at_defaults() {
    let e = error(&format!(
        "defaults:\n  cursor: last-modified\n{HEAD}  articles:\n    fields:\n      title: string\n"
    ));
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        Some((2, 11)),
        &["deltasync.yaml:2:11: defaults.cursor: \"last-modified\" is not a safe SQL identifier"],
    );
}

#[test]
fn filter_must_be_a_mapping() {
    let e = error(&with_head(
        "  articles:\n    filter: [status]\n    fields:\n      title: string\n",
    ));
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        Some((6, 13)),
        &["collections.articles.filter: expected a Directus filter object, found a list"],
    );
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.yaml");
    let e = Config::load(&path).expect_err("missing file");
    assert_eq!(e.kind(), ConfigErrorKind::Io);
    assert_eq!(e.io_error_kind(), Some(std::io::ErrorKind::NotFound));
    assert!(
        e.to_string()
            .contains("missing.yaml: cannot read the configuration file"),
        "{e}"
    );
}

#[test]
fn errors_without_a_file_use_a_placeholder_name() {
    let e = Config::from_yaml_str("remote: {}\n", None).expect_err("invalid");
    assert!(
        e.to_string()
            .starts_with("<config>:1:1: remote.url: missing required key"),
        "{e}"
    );
}

fn code_config() -> Config {
    Config {
        source: None,
        remote: RemoteConfig::new("http://127.0.0.1:8055", Auth::Token(Secret::new("t"))),
        local: LocalConfig::default(),
        collections: vec![
            CollectionConfig::new("authors").with_field("name", FieldType::String),
            CollectionConfig::new("articles")
                .with_field("title", FieldType::String)
                .with_relation("author", FieldType::Uuid, "authors"),
        ],
    }
}

#[test]
fn validate_accepts_a_good_config_built_in_code() {
    assert!(code_config().validate().is_ok());
}

#[test]
fn validate_reports_without_positions() {
    let mut config = code_config();
    config.collections[1].table = "bad table".to_owned();
    let e = config.validate().expect_err("invalid");
    check(
        &e,
        ConfigErrorKind::UnsafeIdentifier,
        None,
        &["<config>: collections.articles.table: \"bad table\" is not a safe SQL identifier"],
    );

    let mut config = code_config();
    config.collections[1].page_size = 0;
    let e = config.validate().expect_err("invalid");
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        None,
        &["<config>: collections.articles.page_size: 0 is out of range"],
    );

    let mut config = code_config();
    config
        .collections
        .push(CollectionConfig::new("authors").with_field("x", FieldType::Json));
    let e = config.validate().expect_err("invalid");
    check(
        &e,
        ConfigErrorKind::Invalid,
        None,
        &["collections.authors: duplicate collection"],
    );

    let mut config = code_config();
    config.collections[0].fields.clear();
    let e = config.validate().expect_err("invalid");
    check(
        &e,
        ConfigErrorKind::Invalid,
        None,
        &["collections.authors.fields: no fields"],
    );

    let mut config = code_config();
    config.collections[1].filter = Some(serde_json::json!("status"));
    let e = config.validate().expect_err("invalid");
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        None,
        &["collections.articles.filter: expected"],
    );

    let mut config = code_config();
    config.local.database = "oracle://x".to_owned();
    let e = config.validate().expect_err("invalid");
    check(
        &e,
        ConfigErrorKind::InvalidValue,
        None,
        &["local.database: unsupported"],
    );
}
