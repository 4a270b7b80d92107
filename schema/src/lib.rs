//! The deltasync schema file: parse, validate and describe it.
//!
//! A schema file (by default `deltasync.yaml`) says which Directus server to talk to, where the
//! local database is, and which collections to sync into which tables with which fields and
//! options. This crate turns it into a [`Config`], or into a [`ConfigError`] precise enough to
//! fix the file from the message alone:
//!
//! ```text
//! deltasync.yaml:14:15: collections.articles.conflict: unknown strategy "lww"; expected one of last_write_wins, first_write_wins, manual
//! ```
//!
//! ```
//! let yaml = r#"
//! remote:
//!   url: http://127.0.0.1:8055/
//!   token: ${DIRECTUS_TOKEN:-admin-token}
//! collections:
//!   articles:
//!     fields:
//!       title: string
//! "#;
//! let config = schema::Config::from_yaml_str(yaml, None)?;
//! assert_eq!(config.remote.url, "http://127.0.0.1:8055");
//! assert_eq!(config.collections[0].cursor, "last_modified");
//! # Ok::<(), schema::ConfigError>(())
//! ```
//!
//! This crate owns the file format and the rules every configuration obeys (safe SQL
//! identifiers above all, since table and column names come from here). It depends on no other
//! crate of the workspace and does no I/O besides reading the one file and the environment.
//!
//! # Layout
//! - `model`: the public configuration types and their defaults.
//! - `yaml`: YAML text to a tree of nodes with positions (the only user of the YAML parser).
//! - `env`: `${NAME}` / `${NAME:-default}` substitution in string values.
//! - `decode`: node tree to model; the shape of the file, unknown and missing keys.
//! - `validate`: rules for any configuration: identifiers, ranges, relations, uniqueness.
//! - `locate`: key path to file position, so validation errors point into the file.
//! - `database`: accepted database URLs and resolution of relative SQLite paths.
//! - `file_schema`: the JSON Schema of the file for editors.
//! - `error`: [`ConfigError`] and [`ConfigErrorKind`].

mod database;
mod decode;
mod env;
mod error;
mod file_schema;
mod locate;
mod model;
mod validate;
mod yaml;

use std::path::Path;

pub use error::{ConfigError, ConfigErrorKind, NO_FILE, Position};
pub use file_schema::json_schema;
pub use model::{
    Auth, CollectionConfig, Config, DEFAULT_CURSOR, DEFAULT_DATABASE, DEFAULT_IDEMPOTENCY_FIELD,
    DEFAULT_MAX_RETRIES, DEFAULT_OVERLAP_SECONDS, DEFAULT_PAGE_SIZE, DEFAULT_PRIMARY_KEY,
    DEFAULT_TIMEOUT_SECONDS, Deletes, FieldConfig, FieldType, KeyType, LocalConfig, MAX_PAGE_SIZE,
    Merge, RemoteConfig, Secret, Strategy,
};
pub use validate::{
    MAX_IDENTIFIER_LEN, RESERVED_COLUMN_PREFIX, RESERVED_TABLE_PREFIX, is_safe_identifier,
};

/// The file name looked for when none is given.
pub const DEFAULT_FILE_NAME: &str = "deltasync.yaml";

impl Config {
    /// Reads, expands, parses and validates the schema file at `path`.
    ///
    /// Relative SQLite paths in `local.database` are resolved against the file's directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::io(&path.display().to_string(), &e))?;
        Config::from_yaml_str(&text, Some(path))
    }

    /// Parses and validates schema file text, taking `${NAME}` values from the process
    /// environment.
    ///
    /// `source` is the file the text came from: it names the file in errors (`<config>`
    /// otherwise) and anchors relative SQLite paths.
    pub fn from_yaml_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_yaml_str_with_env(text, source, |name| {
            std::env::var_os(name).and_then(|v| v.into_string().ok())
        })
    }

    /// Like [`Config::from_yaml_str`], with `${NAME}` values taken from `env` (for services
    /// that keep their settings elsewhere, and for tests).
    pub fn from_yaml_str_with_env(
        text: &str,
        source: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = source.map_or_else(|| NO_FILE.to_owned(), |p| p.display().to_string());
        let mut root = yaml::parse(text, &file)?;
        env::expand_tree(&mut root, "", &file, &env)?;
        let (mut config, locations) = decode::decode(&root, &file)?;
        validate::validate(&config, &locate::Reporter::new(&file, &locations))?;
        if let Some(source) = source {
            let dir = source.parent().unwrap_or(Path::new(""));
            config.local.database = database::resolve(&config.local.database, dir);
            config.source = Some(source.to_path_buf());
        }
        Ok(config)
    }

    /// An error about the value at key `path` (`collections.articles.fields.views`), found
    /// after loading, for example by comparing the local tables with the file: it points at
    /// the key's line in the file this configuration was loaded from, when the file still
    /// reads the same.
    pub fn error_at(
        &self,
        kind: ConfigErrorKind,
        path: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let Some(source) = &self.source else {
            return locate::Reporter::detached().at_value(kind, path, message);
        };
        let file = source.display().to_string();
        let locations = std::fs::read_to_string(source).ok().and_then(|text| {
            let mut root = yaml::parse(&text, &file).ok()?;
            let env = |name: &str| std::env::var_os(name).and_then(|v| v.into_string().ok());
            env::expand_tree(&mut root, "", &file, &env).ok()?;
            decode::decode(&root, &file)
                .ok()
                .map(|(_, locations)| locations)
        });
        let locations = locations.unwrap_or_default();
        locate::Reporter::new(&file, &locations).at_value(kind, path, message)
    }

    /// Checks a configuration built or changed in code. Errors name the key path but carry no
    /// position and show `<config>` as file name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self, &locate::Reporter::detached())
    }
}
