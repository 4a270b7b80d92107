//! Statement building shared by the store: quoting, placeholders, type mapping, triggers.
//!
//! Owns the SQL text for SQLite and PostgreSQL. It must not execute anything; `store` does.

use chrono::{DateTime, SecondsFormat, Utc};
use engine::{Row, SyncStatus};
use schema::{CollectionConfig, FieldType, KeyType};
use sea_orm::{DbBackend, Statement, Value as SqlValue};
use serde_json::Value;

/// Quotes an identifier (names are validated by the schema crate; quoting is still applied).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL statement under construction with backend-correct placeholders.
#[derive(Debug)]
pub struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<SqlValue>,
}

impl Sql {
    pub fn new(backend: DbBackend) -> Sql {
        Sql {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    pub fn bind(&mut self, value: SqlValue) -> &mut Sql {
        self.values.push(value);
        match self.backend {
            DbBackend::Postgres => {
                let n = self.values.len();
                self.text.push_str(&format!("${n}"));
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// `a IS ?` on SQLite, `a IS NOT DISTINCT FROM ?` on PostgreSQL: equality that matches NULL.
    pub fn null_safe_eq(&mut self, column: &str, value: SqlValue) -> &mut Sql {
        let op = null_safe_eq(self.backend);
        self.push(&ident(column))
            .push(&format!(" {op} "))
            .bind(value)
    }

    /// `(?, ?, …)`: one placeholder per value, for `IN` lists and `VALUES` rows.
    pub fn bind_list(&mut self, values: impl IntoIterator<Item = SqlValue>) -> &mut Sql {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    pub fn bound(&self) -> usize {
        self.values.len()
    }

    pub fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// The sync columns every collection table carries, after the synced fields.
pub const STATUS: &str = "_sync_status";
pub const REV: &str = "_sync_rev";
pub const CHANGE_KEY: &str = "_sync_key";
pub const CHANGED_AT: &str = "_sync_changed_at";
pub const ERROR: &str = "_sync_error";

/// Column type of a field.
pub fn column_type(backend: DbBackend, kind: FieldType) -> &'static str {
    match (backend, kind) {
        (DbBackend::Postgres, FieldType::Integer | FieldType::BigInteger) => "bigint",
        (DbBackend::Postgres, FieldType::Float) => "double precision",
        (DbBackend::Postgres, FieldType::Boolean) => "boolean",
        (DbBackend::Postgres, FieldType::Json | FieldType::Csv | FieldType::Geometry) => "jsonb",
        (DbBackend::Postgres, FieldType::Uuid) => "uuid",
        (DbBackend::Postgres, FieldType::Timestamp) => "timestamptz",
        (DbBackend::Postgres, FieldType::DateTime) => "timestamp",
        (DbBackend::Postgres, FieldType::Date) => "date",
        (DbBackend::Postgres, FieldType::Time) => "time",
        // Exact decimals keep their text.
        (DbBackend::Postgres, _) => "text",
        (_, FieldType::Integer | FieldType::BigInteger) => "INTEGER",
        (_, FieldType::Float) => "REAL",
        (_, FieldType::Boolean) => "BOOLEAN",
        (_, _) => "TEXT",
    }
}

pub fn key_column_type(backend: DbBackend, key: KeyType) -> &'static str {
    match (backend, key) {
        // Not `INTEGER`: on SQLite that makes the key the rowid, which ignores a default.
        (_, KeyType::AutoIncrement) => "BIGINT",
        (_, KeyType::Integer) => column_type(backend, FieldType::Integer),
        (DbBackend::Postgres, KeyType::Uuid) => "uuid",
        _ => column_type(backend, FieldType::String),
    }
}

pub fn key_kind(key: KeyType) -> FieldType {
    match key {
        KeyType::Integer | KeyType::AutoIncrement => FieldType::Integer,
        KeyType::Uuid => FieldType::Uuid,
        KeyType::String => FieldType::String,
    }
}

/// `CREATE TABLE` for a collection.
pub fn create_table(backend: DbBackend, c: &CollectionConfig) -> String {
    let pg = backend == DbBackend::Postgres;
    let mut columns = vec![format!(
        "{} {} PRIMARY KEY NOT NULL{}",
        ident(&c.primary_key),
        key_column_type(backend, c.key_type),
        match c.key_type {
            KeyType::AutoIncrement => format!(" DEFAULT ({})", temporary_key(backend)),
            _ => String::new(),
        }
    )];
    for f in &c.fields {
        columns.push(format!(
            "{} {}",
            ident(&f.name),
            column_type(backend, f.kind)
        ));
    }
    columns.push(format!(
        "{} {}",
        ident(&c.cursor),
        column_type(backend, FieldType::Timestamp)
    ));
    let statuses = SyncStatus::ALL
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    columns.push(format!(
        "{STATUS} TEXT NOT NULL DEFAULT 'created' CHECK ({STATUS} IN ({statuses}))"
    ));
    columns.push(format!("{REV} BIGINT NOT NULL DEFAULT 0"));
    if pg {
        columns.push(format!("{CHANGE_KEY} TEXT DEFAULT gen_random_uuid()::text"));
        columns.push(format!("{CHANGED_AT} timestamptz DEFAULT now()"));
    } else {
        columns.push(format!("{CHANGE_KEY} TEXT DEFAULT ({})", sqlite_new_key()));
        columns.push(format!("{CHANGED_AT} TEXT DEFAULT ({})", sqlite_now()));
    }
    columns.push(format!("{ERROR} TEXT"));
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        ident(&c.table),
        columns.join(", ")
    )
}

/// An index on pending rows only, so finding local changes costs what they number.
pub fn create_pending_index(c: &CollectionConfig) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({}) WHERE {STATUS} <> 'synced'",
        ident(&format!("{}__sync_pending", c.table)),
        ident(&c.table),
        ident(&c.primary_key)
    )
}

fn sqlite_new_key() -> &'static str {
    "lower(hex(randomblob(16)))"
}

fn sqlite_now() -> &'static str {
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
}

/// The status an application write leaves: a never-pushed row stays created, a synced row
/// that was written without a status becomes updated, anything else is as written.
fn next_status_case() -> String {
    format!(
        "CASE WHEN OLD.{STATUS} = 'created' AND NEW.{STATUS} IN ('synced', 'updated') THEN 'created' \
         WHEN NEW.{STATUS} = 'synced' THEN 'updated' ELSE NEW.{STATUS} END"
    )
}

/// A new temporary key: a random negative integer, which no server key equals, and which
/// JavaScript reads exactly (at most 2^53 - 1 in magnitude).
fn temporary_key(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "(-1 - floor(random() * 9007199254740990))::bigint",
        _ => "-1 - abs(random() % 9007199254740990)",
    }
}

/// For keys the server assigns: statements that refuse an application insert with a
/// positive key, which could be a server row's.
pub fn server_key_guard(backend: DbBackend, c: &CollectionConfig) -> Vec<String> {
    if c.key_type != KeyType::AutoIncrement {
        return Vec::new();
    }
    let table = ident(&c.table);
    let pk = ident(&c.primary_key);
    let name = ident(&format!("{}__sync_server_keys", c.table));
    let message = format!(
        "{}: the server assigns the {} of new rows; insert without it (or with a negative temporary key)",
        c.name.replace('\'', "''"),
        c.primary_key
    );
    match backend {
        DbBackend::Postgres => {
            let function = ident(&format!("_deltasync_server_keys_{}", c.table));
            vec![
                format!(
                    "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  IF NEW.{STATUS} = 'created' AND NEW.{pk} > 0 THEN
    RAISE EXCEPTION '{message}';
  END IF;
  RETURN NEW;
END
$body$"
                ),
                format!("DROP TRIGGER IF EXISTS {name} ON {table}"),
                format!(
                    "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
                ),
            ]
        }
        _ => vec![
            format!("DROP TRIGGER IF EXISTS {name}"),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW \
                 WHEN NEW.{STATUS} = 'created' AND NEW.{pk} > 0 \
                 BEGIN SELECT RAISE(ABORT, '{message}'); END"
            ),
        ],
    }
}

/// PostgreSQL only: statements that (re)create the trigger that tells listeners on
/// [`NOTICE_CHANNEL`](crate::watch::NOTICE_CHANNEL) of each application write to `c`: an
/// insert of a pending row, or an update that stamped a new change time (the sync's own
/// writes never do). Notices are sent at commit, once per transaction and collection.
pub fn write_notice_trigger(backend: DbBackend, c: &CollectionConfig) -> Vec<String> {
    if backend != DbBackend::Postgres {
        return Vec::new();
    }
    let table = ident(&c.table);
    let collection = c.name.replace('\'', "''");
    let function = ident(&format!("_deltasync_notice_{}", c.table));
    let name = ident(&format!("{}__sync_write_notice", c.table));
    let channel = crate::watch::NOTICE_CHANNEL;
    vec![
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  IF NEW.{STATUS} <> 'synced' AND (TG_OP = 'INSERT' OR NEW.{CHANGED_AT} IS DISTINCT FROM OLD.{CHANGED_AT}) THEN
    PERFORM pg_notify('{channel}', '{collection}');
  END IF;
  RETURN NULL;
END
$body$"
        ),
        format!("DROP TRIGGER IF EXISTS {name} ON {table}"),
        format!(
            "CREATE TRIGGER {name} AFTER INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
        ),
    ]
}

fn trigger_name(c: &CollectionConfig) -> String {
    ident(&format!("{}__sync_local_write", c.table))
}

/// Statements that (re)create the trigger that keeps the bookkeeping of application writes:
/// an update that does not itself bump `_sync_rev` is an application write, so the trigger
/// bumps the revision, issues a new change key, stamps the change time, clears a
/// quarantine error, fixes the status, and keeps the synced version as the base snapshot.
pub fn local_write_trigger(backend: DbBackend, c: &CollectionConfig) -> Vec<String> {
    let table = ident(&c.table);
    let pk = ident(&c.primary_key);
    let collection = c.name.replace('\'', "''");
    match backend {
        DbBackend::Postgres => {
            let function = ident(&format!("_deltasync_write_{}", c.table));
            let snapshot = snapshot_pairs(c);
            vec![
                format!(
                    "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  IF NEW.{REV} = OLD.{REV} THEN
    IF OLD.{STATUS} = 'synced' THEN
      INSERT INTO \"_deltasync_base\" (collection, key, data)
        VALUES ('{collection}', OLD.{pk}::text, jsonb_build_object({snapshot})::text)
        ON CONFLICT (collection, key) DO UPDATE SET data = EXCLUDED.data;
    END IF;
    NEW.{STATUS} := {status};
    NEW.{REV} := OLD.{REV} + 1;
    NEW.{CHANGE_KEY} := gen_random_uuid()::text;
    NEW.{CHANGED_AT} := now();
    NEW.{ERROR} := NULL;
  END IF;
  RETURN NEW;
END
$body$",
                    status = next_status_case()
                ),
                format!("DROP TRIGGER IF EXISTS {} ON {table}", trigger_name(c)),
                format!(
                    "CREATE TRIGGER {} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()",
                    trigger_name(c)
                ),
            ]
        }
        _ => {
            let snapshot = snapshot_pairs(c);
            vec![
                format!("DROP TRIGGER IF EXISTS {}", trigger_name(c)),
                format!(
                    "CREATE TRIGGER {name} AFTER UPDATE ON {table} FOR EACH ROW WHEN NEW.{REV} = OLD.{REV}
BEGIN
  INSERT OR REPLACE INTO \"_deltasync_base\" (collection, key, data)
    SELECT '{collection}', OLD.{pk}, json_object({snapshot}) WHERE OLD.{STATUS} = 'synced';
  UPDATE {table} SET {STATUS} = {status}, {REV} = OLD.{REV} + 1,
    {CHANGE_KEY} = {key}, {CHANGED_AT} = {now}, {ERROR} = NULL
  WHERE {pk} = NEW.{pk};
END",
                    name = trigger_name(c),
                    status = next_status_case(),
                    key = sqlite_new_key(),
                    now = sqlite_now(),
                ),
            ]
        }
    }
}

/// Adds `field` with the row's current value to the base snapshots of `c` that lack it.
pub fn snapshot_field_backfill(backend: DbBackend, c: &CollectionConfig, field: &str) -> String {
    let collection = c.name.replace('\'', "''");
    let (table, pk, column) = (ident(&c.table), ident(&c.primary_key), ident(field));
    match backend {
        DbBackend::Postgres => format!(
            "UPDATE \"_deltasync_base\" AS b SET data = (b.data::jsonb || jsonb_build_object('{field}', t.{column}))::text \
             FROM {table} AS t WHERE b.collection = '{collection}' AND t.{pk}::text = b.key \
             AND NOT (b.data::jsonb ? '{field}')"
        ),
        _ => format!(
            "UPDATE \"_deltasync_base\" SET data = json_set(data, '$.{field}', \
             (SELECT t.{column} FROM {table} AS t WHERE CAST(t.{pk} AS TEXT) = \"_deltasync_base\".key)) \
             WHERE collection = '{collection}' AND json_type(data, '$.{field}') IS NULL"
        ),
    }
}

/// Converts a JSON value to the SQL value stored for a field of type `kind`.
pub fn to_sql(backend: DbBackend, kind: FieldType, value: &Value) -> Result<SqlValue, String> {
    let pg = backend == DbBackend::Postgres;
    let null = || match (pg, kind) {
        (_, FieldType::Integer | FieldType::BigInteger) => SqlValue::BigInt(None),
        (_, FieldType::Float) => SqlValue::Double(None),
        (_, FieldType::Boolean) => SqlValue::Bool(None),
        (true, FieldType::Json | FieldType::Csv | FieldType::Geometry) => SqlValue::Json(None),
        (true, FieldType::Uuid) => SqlValue::Uuid(None),
        (true, FieldType::Timestamp) => SqlValue::ChronoDateTimeUtc(None),
        (true, FieldType::DateTime) => SqlValue::ChronoDateTime(None),
        (true, FieldType::Date) => SqlValue::ChronoDate(None),
        (true, FieldType::Time) => SqlValue::ChronoTime(None),
        _ => SqlValue::String(None),
    };
    if value.is_null() {
        return Ok(null());
    }
    let normalized = engine::decode::normalized(kind, value);
    let value = normalized.as_ref().unwrap_or(value);
    engine::decode::check_value(kind, value)?;
    let text = || value.as_str().map(str::to_owned);
    Ok(match (pg, kind) {
        (_, FieldType::Integer | FieldType::BigInteger) => SqlValue::BigInt(value.as_i64()),
        (_, FieldType::Float) => SqlValue::Double(value.as_f64()),
        (_, FieldType::Boolean) => SqlValue::Bool(value.as_bool()),
        (true, FieldType::Json | FieldType::Csv | FieldType::Geometry) => {
            SqlValue::Json(Some(Box::new(value.clone())))
        }
        (false, FieldType::Json | FieldType::Csv | FieldType::Geometry) => {
            SqlValue::String(Some(value.to_string()))
        }
        (true, FieldType::Uuid) => SqlValue::Uuid(value.as_str().and_then(|s| s.parse().ok())),
        (true, FieldType::Timestamp) => SqlValue::ChronoDateTimeUtc(parse_time(value)),
        (false, FieldType::Timestamp) => SqlValue::String(
            parse_time(value).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        ),
        (true, FieldType::DateTime) => {
            SqlValue::ChronoDateTime(value.as_str().and_then(engine::decode::naive_date_time))
        }
        (true, FieldType::Date) => SqlValue::ChronoDate(
            value
                .as_str()
                .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()),
        ),
        (true, FieldType::Time) => {
            SqlValue::ChronoTime(value.as_str().and_then(engine::decode::naive_time))
        }
        _ => SqlValue::String(text()),
    })
}

/// A value in PostgreSQL's text input form, for the `text[]` arrays that bulk statements
/// bind and cast back per column; `None` for NULL. Only the kinds [`to_sql`] makes.
pub fn pg_text(value: SqlValue) -> Result<Option<String>, String> {
    Ok(match value {
        SqlValue::Bool(b) => b.map(|b| b.to_string()),
        SqlValue::Int(n) => n.map(|n| n.to_string()),
        SqlValue::BigInt(n) => n.map(|n| n.to_string()),
        SqlValue::Float(f) => f.map(|f| f.to_string()),
        SqlValue::Double(f) => f.map(|f| f.to_string()),
        SqlValue::String(s) => s,
        SqlValue::Json(v) => v.map(|v| v.to_string()),
        SqlValue::Uuid(u) => u.map(|u| u.to_string()),
        SqlValue::ChronoDateTimeUtc(t) => t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        SqlValue::ChronoDateTime(t) => t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        SqlValue::ChronoDate(d) => d.map(|d| d.format("%Y-%m-%d").to_string()),
        SqlValue::ChronoTime(t) => t.map(|t| t.format("%H:%M:%S%.f").to_string()),
        other => return Err(format!("no text form for {other:?}")),
    })
}

/// The most bound data in one statement that writes pulled rows from unnested arrays: a
/// page of rows goes in one, and a statement stays a bounded buffer. This needs the socket's
/// Nagle algorithm off (see `nodelay`): with it on, each statement larger than one piece of
/// the socket waits 40 ms for the server's delayed acknowledgement, whatever its size.
pub const PG_ROWS_BYTES: usize = 4_000_000;

/// The most bound data in one statement that matches rows against a list of keys
/// (`= ANY(…)`, a join on the unnested list). The list is bound as text and cast, which
/// PostgreSQL does not fold into a constant: where the planner scans the table, it casts the
/// whole list again for every row. Short lists keep that cheap, and keep the planner on the
/// key's index; a list of 20,000 keys against a table of 20,000 rows ran for minutes.
const PG_KEY_LIST_BYTES: usize = 12_000;

/// Splits items of the given byte costs into consecutive runs of at most `budget` bytes (an
/// item larger than that goes alone).
pub fn pg_runs(
    costs: impl IntoIterator<Item = usize>,
    budget: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes, mut end) = (0, 0, 0);
    for (i, cost) in costs.into_iter().enumerate() {
        if i > start && bytes + cost > budget {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += cost;
        end = i + 1;
    }
    if start < end {
        out.push(start..end);
    }
    out
}

/// The operator of an equality that matches NULL: `IS` on SQLite, `IS NOT DISTINCT FROM` on
/// PostgreSQL.
pub fn null_safe_eq(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "IS NOT DISTINCT FROM",
        _ => "IS",
    }
}

/// `items` in runs that one statement keyed by them takes: under the bind limit on SQLite,
/// where an item binds `columns` values; under [`PG_KEY_LIST_BYTES`] on PostgreSQL, where an
/// item binds `bytes(item)` bytes.
pub fn statement_chunks<T>(
    backend: DbBackend,
    items: &[T],
    columns: usize,
    bytes: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    if backend != DbBackend::Postgres {
        return items.chunks(rows_per_statement(backend, columns)).collect();
    }
    pg_runs(items.iter().map(bytes), PG_KEY_LIST_BYTES)
        .into_iter()
        .map(|run| &items[run])
        .collect()
}

/// The bytes a bound text value costs: its text and a length word.
pub fn bound_text(text: &str) -> usize {
    text.len() + 4
}

/// `keys` in runs that one lookup statement takes (see [`statement_chunks`]).
pub fn key_chunks(backend: DbBackend, keys: &[engine::Key]) -> Vec<&[engine::Key]> {
    statement_chunks(backend, keys, 1, |key| bound_text(key))
}

/// `texts` as one PostgreSQL array literal (`{"a","b\"c",NULL}`), bound as text and cast
/// with `::text[]`: one column of a bulk statement. (The driver's own arrays cannot hold a
/// NULL.)
pub fn text_array(texts: Vec<Option<String>>) -> SqlValue {
    let mut literal =
        String::with_capacity(2 + texts.iter().flatten().map(|t| t.len() + 3).sum::<usize>());
    literal.push('{');
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        match text {
            None => literal.push_str("NULL"),
            Some(text) => {
                literal.push('"');
                for ch in text.chars() {
                    if ch == '"' || ch == '\\' {
                        literal.push('\\');
                    }
                    literal.push(ch);
                }
                literal.push('"');
            }
        }
    }
    literal.push('}');
    SqlValue::String(Some(literal))
}

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Reads column `index` of a result row as the JSON value of a field of type `kind`.
pub fn from_sql(
    backend: DbBackend,
    row: &sea_orm::QueryResult,
    index: usize,
    kind: FieldType,
) -> Result<Value, sea_orm::DbErr> {
    let pg = backend == DbBackend::Postgres;
    Ok(match (pg, kind) {
        (_, FieldType::Integer | FieldType::BigInteger) => row
            .try_get_by_index::<Option<i64>>(index)?
            .map_or(Value::Null, Value::from),
        (_, FieldType::Float) => row
            .try_get_by_index::<Option<f64>>(index)?
            .map_or(Value::Null, Value::from),
        (_, FieldType::Boolean) => row
            .try_get_by_index::<Option<bool>>(index)?
            .map_or(Value::Null, Value::from),
        (true, FieldType::Json) => row
            .try_get_by_index::<Option<Value>>(index)?
            .unwrap_or(Value::Null),
        (true, FieldType::Uuid) => row
            .try_get_by_index::<Option<uuid::Uuid>>(index)?
            .map_or(Value::Null, |u| Value::from(u.to_string())),
        (true, FieldType::Timestamp) => row
            .try_get_by_index::<Option<DateTime<Utc>>>(index)?
            .map_or(Value::Null, |t| {
                Value::from(t.to_rfc3339_opts(SecondsFormat::Millis, true))
            }),
        (false, FieldType::Json | FieldType::Csv | FieldType::Geometry) => row
            .try_get_by_index::<Option<String>>(index)?
            .map_or(Value::Null, |s| {
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            }),
        (true, FieldType::Csv | FieldType::Geometry) => row
            .try_get_by_index::<Option<Value>>(index)?
            .unwrap_or(Value::Null),
        (true, FieldType::DateTime) => row
            .try_get_by_index::<Option<chrono::NaiveDateTime>>(index)?
            .map_or(Value::Null, |t| {
                Value::from(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
            }),
        (true, FieldType::Date) => row
            .try_get_by_index::<Option<chrono::NaiveDate>>(index)?
            .map_or(Value::Null, |d| {
                Value::from(d.format("%Y-%m-%d").to_string())
            }),
        (true, FieldType::Time) => row
            .try_get_by_index::<Option<chrono::NaiveTime>>(index)?
            .map_or(Value::Null, |t| {
                Value::from(t.format("%H:%M:%S%.f").to_string())
            }),
        _ => row
            .try_get_by_index::<Option<String>>(index)?
            .map_or(Value::Null, Value::from),
    })
}

/// The `'name', OLD.column` pairs of a base snapshot: the synced fields, and the cursor, which
/// tells the server version the snapshot is of.
fn snapshot_pairs(c: &CollectionConfig) -> String {
    let mut columns: Vec<&str> = c.fields.iter().map(|f| f.name.as_str()).collect();
    if !columns.contains(&c.cursor.as_str()) {
        columns.push(&c.cursor);
    }
    columns
        .iter()
        .map(|name| format!("'{}', OLD.{}", name, ident(name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Normalizes a base snapshot written by a trigger (SQLite stores booleans as 0/1 and JSON
/// fields as text) into the types of the configured fields.
pub fn normalize_snapshot(c: &CollectionConfig, snapshot: Value) -> Row {
    let mut object = match snapshot {
        Value::Object(o) => o,
        _ => Row::new(),
    };
    let mut row = Row::new();
    for f in &c.fields {
        let value = object.remove(&f.name).unwrap_or(Value::Null);
        let value = match (f.kind, value) {
            (FieldType::Boolean, Value::Number(n)) => Value::Bool(n.as_i64() != Some(0)),
            (FieldType::Json | FieldType::Csv | FieldType::Geometry, Value::String(s)) => {
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            }
            (FieldType::Timestamp, Value::String(s)) => DateTime::parse_from_rfc3339(&s)
                .map(|t| {
                    Value::from(
                        t.with_timezone(&Utc)
                            .to_rfc3339_opts(SecondsFormat::Millis, true),
                    )
                })
                .unwrap_or(Value::String(s)),
            (_, v) => v,
        };
        row.insert(f.name.clone(), value);
    }
    row
}

/// How many rows fit in one multi-row statement within the backend's bind-parameter limit.
pub fn rows_per_statement(backend: DbBackend, columns: usize) -> usize {
    let limit = match backend {
        DbBackend::Postgres => 65_535,
        _ => 32_766,
    };
    (limit / columns.max(1)).clamp(1, 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let mut q = Sql::new(DbBackend::Postgres);
        q.push("SELECT ")
            .bind(SqlValue::from(1))
            .push(", ")
            .bind(SqlValue::from(2));
        assert_eq!(q.build().sql, "SELECT $1, $2");
        let mut q = Sql::new(DbBackend::Sqlite);
        q.push("SELECT ").bind(SqlValue::from(1));
        assert_eq!(q.build().sql, "SELECT ?");
    }

    #[test]
    fn a_bound_list_numbers_on_from_what_came_before() {
        let mut q = Sql::new(DbBackend::Postgres);
        q.push("WHERE a = ")
            .bind(SqlValue::from(0))
            .push(" AND b IN ");
        q.bind_list([1, 2, 3].map(SqlValue::from));
        assert_eq!(q.bound(), 4);
        assert_eq!(q.build().sql, "WHERE a = $1 AND b IN ($2, $3, $4)");
        let mut q = Sql::new(DbBackend::Sqlite);
        q.bind_list([1, 2].map(SqlValue::from));
        assert_eq!(q.build().sql, "(?, ?)");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn key_lists_for_postgresql_stay_small_and_keep_every_key() {
        let keys: Vec<engine::Key> = (0..1_000).map(|i| format!("{i:036}")).collect();
        let chunks = key_chunks(DbBackend::Postgres, &keys);
        assert!(chunks.len() > 1);
        assert!(
            chunks
                .iter()
                .all(|c| c.iter().map(|k| k.len() + 4).sum::<usize>() <= PG_KEY_LIST_BYTES)
        );
        assert_eq!(chunks.concat(), keys);
        assert!(key_chunks(DbBackend::Postgres, &[]).is_empty());
        // One key longer than the budget still goes, alone.
        let long = vec!["x".repeat(PG_KEY_LIST_BYTES + 1)];
        assert_eq!(key_chunks(DbBackend::Postgres, &long), vec![&long[..]]);
        assert_eq!(key_chunks(DbBackend::Sqlite, &keys).len(), 1);
    }

    #[test]
    fn text_arrays_quote_every_element_and_keep_nulls() {
        let literal = |texts: Vec<Option<&str>>| {
            text_array(texts.into_iter().map(|t| t.map(str::to_owned)).collect())
        };
        let cases = [
            (vec![], "{}"),
            (vec![Some("a"), None, Some("")], r#"{"a",NULL,""}"#),
            (vec![Some(r#"say "hi""#)], r#"{"say \"hi\""}"#),
            (vec![Some(r"C:\dir"), Some("{,}")], r#"{"C:\\dir","{,}"}"#),
            (vec![Some("NULL")], r#"{"NULL"}"#),
        ];
        for (texts, expected) in cases {
            assert_eq!(
                literal(texts.clone()),
                SqlValue::String(Some(expected.to_owned())),
                "{texts:?}"
            );
        }
    }

    #[test]
    fn bind_limits() {
        assert_eq!(rows_per_statement(DbBackend::Sqlite, 10), 1_000);
        assert_eq!(rows_per_statement(DbBackend::Sqlite, 100), 327);
    }

    #[test]
    fn bad_values_are_refused_with_the_expected_type() {
        let err = to_sql(DbBackend::Sqlite, FieldType::Integer, &Value::from("x")).unwrap_err();
        assert!(err.contains("expected integer"), "{err}");
    }
}
