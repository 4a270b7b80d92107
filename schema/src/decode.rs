//! From a node tree to the typed model.
//!
//! This module owns the shape of the file: which keys exist where, which are required, how a
//! value of each kind is written, and how `defaults` flow into collections. It records the
//! position of every key path it reads so that later validation can point into the file. It
//! must not check cross-references, identifiers or anything else that applies equally to
//! configurations built in code: that is `validate`'s job.

use std::ops::RangeInclusive;

use crate::error::{ConfigError, ConfigErrorKind, Position};
use crate::locate::{Locations, Site};
use crate::model::{
    Auth, CollectionConfig, Config, DEFAULT_CURSOR, DEFAULT_DATABASE, DEFAULT_IDEMPOTENCY_FIELD,
    DEFAULT_MAX_RETRIES, DEFAULT_OVERLAP_SECONDS, DEFAULT_PAGE_SIZE, DEFAULT_TIMEOUT_SECONDS,
    Deletes, FieldConfig, FieldType, KeyType, LocalConfig, Merge, RemoteConfig, Secret, Strategy,
};
use crate::validate::{INTERVAL_SECONDS, MAX_RETRIES, OVERLAP_SECONDS, PAGE_SIZE, TIMEOUT_SECONDS};
use crate::yaml::{Node, Value};

pub(crate) const ROOT_KEYS: &[&str] = &["remote", "local", "defaults", "collections"];
pub(crate) const REMOTE_KEYS: &[&str] = &[
    "url",
    "token",
    "email",
    "password",
    "timeout_seconds",
    "max_retries",
];
pub(crate) const LOCAL_KEYS: &[&str] = &["database"];
pub(crate) const DEFAULTS_KEYS: &[&str] = &[
    "cursor",
    "conflict",
    "page_size",
    "overlap_seconds",
    "deletes",
];
pub(crate) const COLLECTION_KEYS: &[&str] = &[
    "table",
    "primary_key",
    "key_type",
    "idempotency_field",
    "cursor",
    "conflict",
    "merge",
    "deletes",
    "page_size",
    "overlap_seconds",
    "interval_seconds",
    "filter",
    "fields",
];
pub(crate) const FIELD_KEYS: &[&str] = &["type", "references", "read_only"];
pub(crate) const CURSOR_KEYS: &[&str] = &["updated", "created"];
pub(crate) const DELETES_KEYS: &[&str] = &["archive"];
pub(crate) const ARCHIVE_KEYS: &[&str] = &["field", "value"];

/// Keys whose values are credentials and are never shown in messages.
const SECRET_KEYS: &[&str] = &["token", "password"];

/// The dotted path of `key` below `parent`.
pub(crate) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Decodes a whole file. The returned locations cover every key path that was read.
pub(crate) fn decode(root: &Node, file: &str) -> Result<(Config, Locations), ConfigError> {
    let mut decoder = Decoder {
        file,
        locations: Locations::default(),
    };
    let config = decoder.config(root)?;
    Ok((config, decoder.locations))
}

/// One key of a mapping, with its nodes.
struct Entry<'n> {
    name: String,
    key: &'n Node,
    value: &'n Node,
}

/// The entries of one mapping, plus what is needed to report a key missing from it.
struct Entries<'n> {
    path: String,
    /// Where the mapping's own key is, for "missing required key" errors.
    anchor: Option<Position>,
    items: Vec<Entry<'n>>,
}

impl<'n> Entries<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.items.iter().find(|e| e.name == name).map(|e| e.value)
    }

    fn key_position(&self, name: &str) -> Option<Position> {
        self.items
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.key.position)
    }

    fn path_of(&self, name: &str) -> String {
        child_path(&self.path, name)
    }
}

/// Collection options that `defaults` may set, with the path they came from.
struct Inherited {
    cursor: (String, Option<String>),
    conflict: Strategy,
    page_size: u32,
    overlap_seconds: u32,
    deletes: Deletes,
    /// The options actually written under `defaults`, whose errors point there.
    written: Vec<&'static str>,
}

struct Decoder<'f> {
    file: &'f str,
    locations: Locations,
}

impl Decoder<'_> {
    fn config(&mut self, root: &Node) -> Result<Config, ConfigError> {
        if root.value == Value::Null {
            return Err(self.error(
                ConfigErrorKind::Invalid,
                None,
                "",
                "the file is empty; expected a mapping with the keys remote and collections \
                 (and optionally local and defaults)",
            ));
        }
        if !matches!(root.value, Value::Map(_)) {
            return Err(self.error(
                ConfigErrorKind::InvalidValue,
                root.position,
                "",
                format!(
                    "expected a mapping with the keys remote and collections at the top level, \
                     found {}",
                    root.value.kind_name()
                ),
            ));
        }
        let top = self.mapping(root, "", None, Some(ROOT_KEYS))?;
        let remote = self.required(&top, "remote", "the Directus server: url and credentials")?;
        let remote = self.remote(&top, remote)?;
        let local = match top.get("local") {
            Some(node) => self.local(&top, node)?,
            None => LocalConfig::default(),
        };
        let defaults = match top.get("defaults") {
            Some(node) => self.defaults(&top, node)?,
            None => Inherited::builtin(),
        };
        let collections = self.required(
            &top,
            "collections",
            "a mapping from Directus collection name to its table and fields",
        )?;
        let collections = self.collections(&top, collections, &defaults)?;
        Ok(Config {
            source: None,
            remote,
            local,
            collections,
        })
    }

    fn remote(&mut self, parent: &Entries<'_>, node: &Node) -> Result<RemoteConfig, ConfigError> {
        let map = self.mapping(
            node,
            "remote",
            parent.key_position("remote"),
            Some(REMOTE_KEYS),
        )?;
        let url_node = self.required(
            &map,
            "url",
            "the Directus base URL, e.g. http://127.0.0.1:8055",
        )?;
        let url = self.string(url_node, "remote.url")?;
        let auth = self.auth(&map)?;
        let timeout_seconds = match map.get("timeout_seconds") {
            Some(n) => self.integer(n, "remote.timeout_seconds", &TIMEOUT_SECONDS)?,
            None => DEFAULT_TIMEOUT_SECONDS,
        };
        let max_retries = match map.get("max_retries") {
            Some(n) => self.integer(n, "remote.max_retries", &MAX_RETRIES)?,
            None => DEFAULT_MAX_RETRIES,
        };
        Ok(RemoteConfig {
            // Paths are appended to the base URL; a trailing slash would double them.
            url: url.trim_end_matches('/').to_owned(),
            auth,
            timeout_seconds,
            max_retries,
        })
    }

    fn auth(&self, remote: &Entries<'_>) -> Result<Auth, ConfigError> {
        let token = remote.get("token");
        let email = remote.get("email");
        let password = remote.get("password");
        match (token, email, password) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(self.error(
                ConfigErrorKind::Invalid,
                remote.key_position("token"),
                "remote",
                "both token and email/password are set; use either token, or email and password",
            )),
            (Some(token), None, None) => Ok(Auth::Token(Secret::new(
                self.string(token, "remote.token")?,
            ))),
            (None, Some(email), Some(password)) => Ok(Auth::Login {
                email: self.string(email, "remote.email")?,
                password: Secret::new(self.string(password, "remote.password")?),
            }),
            (None, None, Some(_)) => Err(self.error(
                ConfigErrorKind::Invalid,
                remote.key_position("password"),
                "remote",
                "password is set without email; set both email and password, or use token",
            )),
            (None, Some(_), None) => Err(self.error(
                ConfigErrorKind::Invalid,
                remote.key_position("email"),
                "remote",
                "email is set without password; set both email and password, or use token",
            )),
            (None, None, None) => Err(self.error(
                ConfigErrorKind::Invalid,
                remote.anchor,
                "remote",
                "no credentials; set token (a static Directus token), or email and password",
            )),
        }
    }

    fn local(&mut self, parent: &Entries<'_>, node: &Node) -> Result<LocalConfig, ConfigError> {
        let map = self.mapping(
            node,
            "local",
            parent.key_position("local"),
            Some(LOCAL_KEYS),
        )?;
        let database = match map.get("database") {
            Some(n) => self.string(n, "local.database")?,
            None => DEFAULT_DATABASE.to_owned(),
        };
        Ok(LocalConfig { database })
    }

    fn defaults(&mut self, parent: &Entries<'_>, node: &Node) -> Result<Inherited, ConfigError> {
        let anchor = parent.key_position("defaults");
        let map = self.mapping(node, "defaults", anchor, Some(DEFAULTS_KEYS))?;
        let mut inherited = Inherited::builtin();
        inherited.written = DEFAULTS_KEYS
            .iter()
            .copied()
            .filter(|key| map.get(key).is_some())
            .collect();
        if let Some(n) = map.get("cursor") {
            inherited.cursor = self.cursor(n, "defaults.cursor")?;
        }
        if let Some(n) = map.get("conflict") {
            inherited.conflict = self.strategy(n, "defaults.conflict")?;
        }
        if let Some(n) = map.get("page_size") {
            inherited.page_size = self.integer(n, "defaults.page_size", &PAGE_SIZE)?;
        }
        if let Some(n) = map.get("overlap_seconds") {
            inherited.overlap_seconds =
                self.integer(n, "defaults.overlap_seconds", &OVERLAP_SECONDS)?;
        }
        if let Some(n) = map.get("deletes") {
            inherited.deletes = self.deletes(n, "defaults.deletes")?;
        }
        Ok(inherited)
    }

    fn collections(
        &mut self,
        parent: &Entries<'_>,
        node: &Node,
        defaults: &Inherited,
    ) -> Result<Vec<CollectionConfig>, ConfigError> {
        let anchor = parent.key_position("collections");
        let map = self.mapping(node, "collections", anchor, None)?;
        if map.items.is_empty() {
            return Err(self.error(
                ConfigErrorKind::Invalid,
                anchor,
                "collections",
                "no collections; configure at least one, e.g. `articles: {fields: {title: string}}`",
            ));
        }
        map.items
            .iter()
            .map(|entry| self.collection(entry, defaults))
            .collect()
    }

    fn collection(
        &mut self,
        entry: &Entry<'_>,
        defaults: &Inherited,
    ) -> Result<CollectionConfig, ConfigError> {
        let path = child_path("collections", &entry.name);
        let map = self.mapping(
            entry.value,
            &path,
            entry.key.position,
            Some(COLLECTION_KEYS),
        )?;
        let mut c = CollectionConfig::new(entry.name.clone());
        defaults.apply(&mut c, &path, &mut self.locations);
        if let Some(n) = map.get("table") {
            c.table = self.string(n, &map.path_of("table"))?;
        }
        if let Some(n) = map.get("primary_key") {
            c.primary_key = self.string(n, &map.path_of("primary_key"))?;
        }
        if let Some(n) = map.get("key_type") {
            c.key_type = self.key_type(n, &map.path_of("key_type"))?;
        }
        if c.key_type == KeyType::AutoIncrement {
            c.idempotency_field = Some(DEFAULT_IDEMPOTENCY_FIELD.to_owned());
        }
        if let Some(n) = map.get("idempotency_field") {
            let path = map.path_of("idempotency_field");
            c.idempotency_field = match self.string(n, &path)? {
                none if none == "none" => None,
                field => Some(field),
            };
        }
        if let Some(n) = map.get("cursor") {
            (c.cursor, c.cursor_created) = self.cursor(n, &map.path_of("cursor"))?;
        }
        if let Some(n) = map.get("conflict") {
            c.conflict = self.strategy(n, &map.path_of("conflict"))?;
        }
        if let Some(n) = map.get("merge") {
            c.merge = self.spelled(
                n,
                &map.path_of("merge"),
                "merge",
                Merge::from_name,
                &Merge::expected(),
            )?;
        }
        if let Some(n) = map.get("deletes") {
            c.deletes = self.deletes(n, &map.path_of("deletes"))?;
        }
        if let Some(n) = map.get("page_size") {
            c.page_size = self.integer(n, &map.path_of("page_size"), &PAGE_SIZE)?;
        }
        if let Some(n) = map.get("overlap_seconds") {
            c.overlap_seconds =
                self.integer(n, &map.path_of("overlap_seconds"), &OVERLAP_SECONDS)?;
        }
        if let Some(n) = map.get("interval_seconds") {
            let path = map.path_of("interval_seconds");
            c.interval_seconds = Some(self.integer(n, &path, &INTERVAL_SECONDS)?);
        }
        if let Some(n) = map.get("filter") {
            c.filter = self.filter(n, &map.path_of("filter"))?;
        }
        let fields = self.required(&map, "fields", "a mapping from field name to its type")?;
        c.fields = self.fields(&map, fields)?;
        Ok(c)
    }

    fn fields(
        &mut self,
        collection: &Entries<'_>,
        node: &Node,
    ) -> Result<Vec<FieldConfig>, ConfigError> {
        let path = collection.path_of("fields");
        let anchor = collection.key_position("fields");
        let map = self.mapping(node, &path, anchor, None)?;
        if map.items.is_empty() {
            return Err(self.error(
                ConfigErrorKind::Invalid,
                anchor,
                &path,
                "no fields; list at least one field besides the primary key and the cursor, \
                 e.g. `title: string`",
            ));
        }
        map.items
            .iter()
            .map(|entry| self.field(&map, entry))
            .collect()
    }

    fn field(
        &mut self,
        parent: &Entries<'_>,
        entry: &Entry<'_>,
    ) -> Result<FieldConfig, ConfigError> {
        let path = parent.path_of(&entry.name);
        let (kind, references, read_only) = match &entry.value.value {
            Value::Map(_) => {
                let map = self.mapping(entry.value, &path, entry.key.position, Some(FIELD_KEYS))?;
                let kind =
                    self.required(&map, "type", &format!("one of {}", FieldType::expected()))?;
                let kind = self.field_type(kind, &map.path_of("type"))?;
                let references = match map.get("references") {
                    Some(n) => Some(self.string(n, &map.path_of("references"))?),
                    None => None,
                };
                let read_only = match map.get("read_only") {
                    Some(n) => self.boolean(n, &map.path_of("read_only"))?,
                    None => false,
                };
                (kind, references, read_only)
            }
            Value::Str { .. } => (self.field_type(entry.value, &path)?, None, false),
            other => {
                return Err(self.error(
                    ConfigErrorKind::InvalidValue,
                    entry.value.position,
                    &path,
                    format!(
                        "expected a field type or a mapping {{type, references, read_only}}, found {}; \
                         types are {}",
                        other.kind_name(),
                        FieldType::expected()
                    ),
                ));
            }
        };
        Ok(FieldConfig {
            name: entry.name.clone(),
            kind,
            references,
            read_only,
        })
    }

    /// A cursor: one field stamped on create and update, or `{updated, created}`.
    fn cursor(&mut self, node: &Node, path: &str) -> Result<(String, Option<String>), ConfigError> {
        if !matches!(node.value, Value::Map(_)) {
            return Ok((self.string(node, path)?, None));
        }
        let map = self.mapping(node, path, node.position, Some(CURSOR_KEYS))?;
        let updated = self.required(
            &map,
            "updated",
            "the field stamped on update, e.g. date_updated",
        )?;
        let updated = self.string(updated, &map.path_of("updated"))?;
        let created = self.required(
            &map,
            "created",
            "the field stamped on create, e.g. date_created",
        )?;
        let created = self.string(created, &map.path_of("created"))?;
        Ok((updated, Some(created)))
    }

    fn boolean(&self, node: &Node, path: &str) -> Result<bool, ConfigError> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            Value::Str {
                text,
                expanded: true,
            } if text == "true" || text == "false" => Ok(text == "true"),
            other => Err(self.error(
                ConfigErrorKind::InvalidValue,
                node.position,
                path,
                format!("expected true or false, found {}", other.kind_name()),
            )),
        }
    }

    fn deletes(&mut self, node: &Node, path: &str) -> Result<Deletes, ConfigError> {
        match &node.value {
            Value::Str { text, .. } if text == "activity" => Ok(Deletes::Activity),
            Value::Str { text, .. } if text == "none" => Ok(Deletes::None),
            Value::Map(_) => {
                let map = self.mapping(node, path, node.position, Some(DELETES_KEYS))?;
                let archive = self.required(&map, "archive", "{field: <name>, value: <value>}")?;
                self.archive(&map, archive)
            }
            other => Err(self.error(
                ConfigErrorKind::InvalidValue,
                node.position,
                path,
                format!(
                    "unknown deletes mode {}; expected {}, or {{archive: {{field: <name>, \
                     value: <value>}}}}",
                    self.shown(other, path),
                    Deletes::PLAIN.join(" or "),
                ),
            )),
        }
    }

    fn archive(&mut self, parent: &Entries<'_>, node: &Node) -> Result<Deletes, ConfigError> {
        let path = parent.path_of("archive");
        let map = self.mapping(
            node,
            &path,
            parent.key_position("archive"),
            Some(ARCHIVE_KEYS),
        )?;
        let field = self.required(&map, "field", "the name of the archive field, e.g. status")?;
        let field = self.string(field, &map.path_of("field"))?;
        let value = self.required(&map, "value", "the value that marks a row archived")?;
        let value = self.json(value, &map.path_of("value"))?;
        Ok(Deletes::Archive { field, value })
    }

    fn filter(
        &mut self,
        node: &Node,
        path: &str,
    ) -> Result<Option<serde_json::Value>, ConfigError> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Map(_) => Ok(Some(self.json(node, path)?)),
            other => Err(self.type_error(node, path, "a Directus filter object", other)),
        }
    }

    /// Any YAML value as JSON. Substituted text stays a string: inside a filter there is no
    /// expected type to read it as.
    fn json(&mut self, node: &Node, path: &str) -> Result<serde_json::Value, ConfigError> {
        use serde_json::Value as J;
        Ok(match &node.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => self.json_integer(node, path, *i)?,
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => J::Number(n),
                None => return Err(self.type_error(node, path, "a finite number", &node.value)),
            },
            Value::Str { text, .. } => J::String(text.clone()),
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    out.push(self.json(item, &format!("{path}[{index}]"))?);
                }
                J::Array(out)
            }
            Value::Map(_) => {
                let map = self.mapping(node, path, node.position, None)?;
                let mut out = serde_json::Map::new();
                for entry in &map.items {
                    let value = self.json(entry.value, &map.path_of(&entry.name))?;
                    out.insert(entry.name.clone(), value);
                }
                J::Object(out)
            }
        })
    }

    fn json_integer(
        &self,
        node: &Node,
        path: &str,
        value: i128,
    ) -> Result<serde_json::Value, ConfigError> {
        if let Ok(v) = i64::try_from(value) {
            return Ok(v.into());
        }
        match u64::try_from(value) {
            Ok(v) => Ok(v.into()),
            Err(_) => Err(self.error(
                ConfigErrorKind::InvalidValue,
                node.position,
                path,
                "integer out of range; expected a 64-bit integer",
            )),
        }
    }

    // ---- scalars -------------------------------------------------------------------------

    fn string(&self, node: &Node, path: &str) -> Result<String, ConfigError> {
        match &node.value {
            Value::Str { text, .. } => Ok(text.clone()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => Err(self.error(
                ConfigErrorKind::InvalidValue,
                node.position,
                path,
                format!(
                    "expected a string, found {}; put the value in quotes if it is meant as text",
                    node.value.kind_name()
                ),
            )),
            other => Err(self.type_error(node, path, "a string", other)),
        }
    }

    /// An unsigned integer in `range`. Substituted text is read as an integer: `${PAGE:-500}`
    /// is how a number comes from the environment.
    fn integer<T: TryFrom<u64>>(
        &self,
        node: &Node,
        path: &str,
        range: &RangeInclusive<u64>,
    ) -> Result<T, ConfigError> {
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        let value: i128 = match &node.value {
            Value::Int(i) => *i,
            Value::Str {
                text,
                expanded: true,
            } => match text.trim().parse::<i128>() {
                Ok(i) => i,
                Err(_) => return Err(self.type_error(node, path, &expected, &node.value)),
            },
            other => return Err(self.type_error(node, path, &expected, other)),
        };
        let in_range = u64::try_from(value)
            .ok()
            .filter(|v| range.contains(v))
            .and_then(|v| T::try_from(v).ok());
        in_range.ok_or_else(|| {
            self.error(
                ConfigErrorKind::InvalidValue,
                node.position,
                path,
                format!("{value} is out of range; expected {expected}"),
            )
        })
    }

    fn strategy(&self, node: &Node, path: &str) -> Result<Strategy, ConfigError> {
        self.spelled(
            node,
            path,
            "strategy",
            Strategy::from_name,
            &Strategy::expected(),
        )
    }

    fn key_type(&self, node: &Node, path: &str) -> Result<KeyType, ConfigError> {
        self.spelled(
            node,
            path,
            "key type",
            KeyType::from_name,
            &KeyType::expected(),
        )
    }

    fn field_type(&self, node: &Node, path: &str) -> Result<FieldType, ConfigError> {
        self.spelled(
            node,
            path,
            "type",
            FieldType::from_name,
            &FieldType::expected(),
        )
    }

    /// A value from a closed set of spellings.
    fn spelled<T>(
        &self,
        node: &Node,
        path: &str,
        what: &str,
        lookup: fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<T, ConfigError> {
        let unknown = || {
            self.error(
                ConfigErrorKind::InvalidValue,
                node.position,
                path,
                format!(
                    "unknown {what} {}; expected one of {expected}",
                    self.shown(&node.value, path)
                ),
            )
        };
        match &node.value {
            Value::Str { text, .. } => lookup(text).ok_or_else(unknown),
            Value::Null | Value::Seq(_) | Value::Map(_) => {
                Err(self.type_error(node, path, &format!("one of {expected}"), &node.value))
            }
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => Err(unknown()),
        }
    }

    // ---- structure -----------------------------------------------------------------------

    /// The entries of a mapping node, recording their positions. With `allowed`, any other key
    /// is an error; without, keys are free (collection names, field names, filter keys).
    /// An empty value (`defaults:` with nothing below) counts as an empty mapping.
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        anchor: Option<Position>,
        allowed: Option<&[&str]>,
    ) -> Result<Entries<'n>, ConfigError> {
        let pairs: &[(Node, Node)] = match &node.value {
            Value::Map(pairs) => pairs,
            Value::Null => &[],
            other => return Err(self.type_error(node, path, "a mapping", other)),
        };
        let mut items = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let name = self.key_name(key, path)?;
            let child = child_path(path, &name);
            if let Some(allowed) = allowed
                && !allowed.contains(&name.as_str())
            {
                return Err(self.error(
                    ConfigErrorKind::UnknownKey,
                    key.position,
                    &child,
                    format!("unknown key; expected one of {}", allowed.join(", ")),
                ));
            }
            let site = Site {
                key: key.position,
                value: value.position,
            };
            self.locations.record(&child, site);
            items.push(Entry { name, key, value });
        }
        Ok(Entries {
            path: path.to_owned(),
            anchor,
            items,
        })
    }

    fn key_name(&self, key: &Node, path: &str) -> Result<String, ConfigError> {
        match &key.value {
            Value::Str { text, .. } => Ok(text.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(self.error(
                ConfigErrorKind::InvalidValue,
                key.position,
                path,
                format!("expected a name as key, found {}", other.kind_name()),
            )),
        }
    }

    /// The value of a required key, or an error placed at the mapping's own key.
    fn required<'n>(
        &self,
        map: &Entries<'n>,
        name: &str,
        what: &str,
    ) -> Result<&'n Node, ConfigError> {
        match map.get(name) {
            Some(node) => Ok(node),
            None => Err(self.error(
                ConfigErrorKind::Invalid,
                map.anchor,
                &map.path_of(name),
                format!("missing required key; expected {what}"),
            )),
        }
    }

    // ---- messages ------------------------------------------------------------------------

    fn type_error(&self, node: &Node, path: &str, expected: &str, found: &Value) -> ConfigError {
        self.error(
            ConfigErrorKind::InvalidValue,
            node.position,
            path,
            format!("expected {expected}, found {}", self.shown(found, path)),
        )
    }

    /// A found value for a message; credentials are never shown.
    fn shown(&self, value: &Value, path: &str) -> String {
        let secret = SECRET_KEYS
            .iter()
            .any(|k| path.rsplit('.').next() == Some(*k));
        match value {
            Value::Str { text, .. } if !secret => format!("\"{}\"", text.escape_debug()),
            Value::Int(i) if !secret => i.to_string(),
            Value::Bool(b) if !secret => b.to_string(),
            other => other.kind_name().to_owned(),
        }
    }

    fn error(
        &self,
        kind: ConfigErrorKind,
        position: Option<Position>,
        path: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(kind, self.file, position, path, message)
    }
}

impl Inherited {
    fn builtin() -> Self {
        Inherited {
            cursor: (DEFAULT_CURSOR.to_owned(), None),
            conflict: Strategy::LastWriteWins,
            page_size: DEFAULT_PAGE_SIZE,
            overlap_seconds: DEFAULT_OVERLAP_SECONDS,
            deletes: Deletes::Activity,
            written: Vec::new(),
        }
    }

    /// Copies the defaults into a new collection and remembers where they were written.
    fn apply(&self, c: &mut CollectionConfig, path: &str, locations: &mut Locations) {
        (c.cursor, c.cursor_created) = self.cursor.clone();
        c.conflict = self.conflict;
        c.page_size = self.page_size;
        c.overlap_seconds = self.overlap_seconds;
        c.deletes = self.deletes.clone();
        for key in &self.written {
            let origin = child_path("defaults", key);
            locations.inherit(&child_path(path, key), &origin);
            if *key == "deletes" {
                for sub in ["archive", "archive.field", "archive.value"] {
                    locations.inherit(
                        &format!("{path}.deletes.{sub}"),
                        &format!("defaults.deletes.{sub}"),
                    );
                }
            }
        }
    }
}
