//! The in-memory tables: rows by primary key, ordered indexes and undo-able changes.
//!
//! Owns: row storage per collection (a `BTreeMap` from primary key to row), the insertion
//! sequence that stands in for SQLite's rowid, constraint checks (primary key, NOT NULL,
//! unique), one ordered index per date field, and transactions that roll back on error.
//! Must not: apply Directus payload rules (specials, stamps, activity) or parse queries.

use crate::cell::{self, Cell};
use crate::error::Error;
use crate::schema::{Collection, Field, FieldType};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// A primary key value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    Int(i64),
    Text(String),
}

impl Key {
    /// Parses a key from a URL segment or a string, checking it like Directus's
    /// `validateKeys`: uuid keys must be uuids, integer keys integers.
    pub(crate) fn parse(kind: FieldType, s: &str) -> Option<Key> {
        match kind {
            FieldType::Integer | FieldType::BigInteger => {
                let n: f64 = s.trim().parse().ok()?;
                (n.fract() == 0.0 && n.abs() < 9.0e15).then_some(Key::Int(n as i64))
            }
            FieldType::Uuid => cell::is_uuid(s).then(|| Key::Text(s.to_string())),
            _ => Some(Key::Text(s.to_string())),
        }
    }

    /// A key from a JSON payload value (numbers or strings).
    pub(crate) fn from_json(kind: FieldType, v: &Value) -> Option<Key> {
        match v {
            Value::String(s) => Key::parse(kind, s),
            Value::Number(n) => Key::parse(kind, &n.to_string()),
            _ => None,
        }
    }

    pub(crate) fn from_cell(c: &Cell) -> Option<Key> {
        match c {
            Cell::Int(i) => Some(Key::Int(*i)),
            Cell::Text(s) => Some(Key::Text(s.clone())),
            _ => None,
        }
    }

    pub(crate) fn to_cell(&self) -> Cell {
        match self {
            Key::Int(i) => Cell::Int(*i),
            Key::Text(s) => Cell::Text(s.clone()),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        match self {
            Key::Int(i) => json!(i),
            Key::Text(s) => json!(s),
        }
    }

    /// The key as activity rows store it (`item` is a string column).
    pub(crate) fn as_string(&self) -> String {
        match self {
            Key::Int(i) => i.to_string(),
            Key::Text(s) => s.clone(),
        }
    }

    /// The lowest key of all, for open-ended index bounds.
    fn min() -> Key {
        Key::Int(i64::MIN)
    }
}

/// A stored row: cells in field order plus its insertion sequence (kept on update, like a
/// rowid), which decides the order of rows that tie on every sort key.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub seq: u64,
    pub cells: Vec<Cell>,
}

/// Entries `(epoch ms, seq, key)` of one date field, for range scans in value order.
pub(crate) type TimeIndex = BTreeSet<(i64, u64, Key)>;

/// One collection's rows.
#[derive(Debug)]
pub(crate) struct Table {
    pub schema: Collection,
    rows: BTreeMap<Key, StoredRow>,
    next_seq: u64,
    /// Next auto-increment value; never reused, like SQLite's AUTOINCREMENT.
    next_auto: i64,
    time_indexes: Vec<(usize, TimeIndex)>,
}

impl Table {
    pub(crate) fn new(schema: Collection) -> Self {
        let time_indexes = indexed_fields(&schema)
            .map(|i| (i, TimeIndex::new()))
            .collect();
        Table {
            schema,
            rows: BTreeMap::new(),
            next_seq: 1,
            next_auto: 1,
            time_indexes,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&StoredRow> {
        self.rows.get(key)
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&Key, &StoredRow)> {
        self.rows.iter()
    }

    pub(crate) fn range(
        &self,
        lo: Bound<Key>,
        hi: Bound<Key>,
    ) -> impl DoubleEndedIterator<Item = (&Key, &StoredRow)> {
        // BTreeMap::range panics on inverted bounds; an empty range is the right answer then.
        let empty = match (&lo, &hi) {
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a > b
                    || (a == b
                        && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_))))
            }
            _ => false,
        };
        let (lo, hi) = if empty {
            (Bound::Excluded(Key::min()), Bound::Included(Key::min()))
        } else {
            (lo, hi)
        };
        self.rows.range((lo, hi))
    }

    /// The ordered index of a date field, if it has one.
    pub(crate) fn time_index(&self, field: usize) -> Option<&TimeIndex> {
        self.time_indexes
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, idx)| idx)
    }

    /// Hands out the next auto-increment key.
    pub(crate) fn next_auto_key(&mut self) -> i64 {
        let k = self.next_auto;
        self.next_auto += 1;
        k
    }

    /// Adds a column; existing rows take the column default.
    pub(crate) fn add_field(&mut self, field: Field, fill: Cell) {
        let pos = self.schema.fields.len();
        let kind = field.kind;
        self.schema.fields.push(field);
        for row in self.rows.values_mut() {
            row.cells.push(fill.clone());
        }
        if kind.is_temporal() {
            let mut idx = TimeIndex::new();
            for (key, row) in &self.rows {
                if let Cell::Time(t) = row.cells[pos] {
                    idx.insert((t, row.seq, key.clone()));
                }
            }
            self.time_indexes.push((pos, idx));
        }
    }

    /// Checks NOT NULL and unique constraints for a row about to be stored under `key`.
    fn check(&self, key: &Key, cells: &[Cell]) -> Result<(), Error> {
        for (i, f) in self.schema.fields.iter().enumerate() {
            if !f.nullable && cells[i].is_null() {
                return Err(Error::NotNullViolation {
                    collection: self.schema.name.clone(),
                    field: f.name.clone(),
                });
            }
            if f.unique && !f.pk && !cells[i].is_null() {
                // A scan: unique non-key fields are rare and tables are in memory.
                let clash = self
                    .rows
                    .iter()
                    .any(|(k, r)| k != key && cell::compare(&r.cells[i], &cells[i]).is_eq());
                if clash {
                    return Err(Error::RecordNotUnique {
                        collection: self.schema.name.clone(),
                        field: f.name.clone(),
                        value: cell::to_json(f.kind, &cells[i]),
                    });
                }
            }
        }
        Ok(())
    }

    fn put(&mut self, key: Key, row: StoredRow) {
        for (f, idx) in &mut self.time_indexes {
            if let Cell::Time(t) = row.cells[*f] {
                idx.insert((t, row.seq, key.clone()));
            }
        }
        if let Key::Int(i) = key {
            self.next_auto = self.next_auto.max(i.saturating_add(1));
        }
        self.rows.insert(key, row);
    }

    fn take(&mut self, key: &Key) -> Option<StoredRow> {
        let row = self.rows.remove(key)?;
        for (f, idx) in &mut self.time_indexes {
            if let Cell::Time(t) = row.cells[*f] {
                idx.remove(&(t, row.seq, key.clone()));
            }
        }
        Some(row)
    }

    /// Inserts without activity or checks beyond constraints (used by transactions).
    fn insert(&mut self, key: Key, cells: Vec<Cell>) -> Result<(), Error> {
        if self.rows.contains_key(&key) {
            return Err(Error::RecordNotUnique {
                collection: self.schema.name.clone(),
                field: self.schema.pk_field().name.clone(),
                value: key.to_json(),
            });
        }
        self.check(&key, &cells)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.put(key, StoredRow { seq, cells });
        Ok(())
    }

    fn replace(&mut self, key: &Key, cells: Vec<Cell>) -> Result<Option<StoredRow>, Error> {
        self.check(key, &cells)?;
        let Some(old) = self.take(key) else {
            return Ok(None);
        };
        self.put(
            key.clone(),
            StoredRow {
                seq: old.seq,
                cells,
            },
        );
        Ok(Some(old))
    }

    /// Removes a row outside any transaction (a direct database delete).
    pub(crate) fn remove(&mut self, key: &Key) -> Option<StoredRow> {
        self.take(key)
    }
}

/// Date fields get an ordered index: they are the sync cursors.
fn indexed_fields(schema: &Collection) -> impl Iterator<Item = usize> + '_ {
    schema
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind.is_temporal())
        .map(|(i, _)| i)
}

enum Undo {
    Inserted(Key),
    Replaced(Key, StoredRow),
    Removed(Key, StoredRow),
}

/// A set of changes to one table that is either kept whole or undone whole.
pub(crate) struct Txn<'a> {
    pub table: &'a mut Table,
    undo: Vec<Undo>,
    saved_auto: i64,
}

impl<'a> Txn<'a> {
    pub(crate) fn begin(table: &'a mut Table) -> Self {
        let saved_auto = table.next_auto;
        Txn {
            table,
            undo: Vec::new(),
            saved_auto,
        }
    }

    pub(crate) fn insert(&mut self, key: Key, cells: Vec<Cell>) -> Result<(), Error> {
        self.table.insert(key.clone(), cells)?;
        self.undo.push(Undo::Inserted(key));
        Ok(())
    }

    /// Replaces the row under `key`; returns false when there is none.
    pub(crate) fn replace(&mut self, key: &Key, cells: Vec<Cell>) -> Result<bool, Error> {
        match self.table.replace(key, cells)? {
            Some(old) => {
                self.undo.push(Undo::Replaced(key.clone(), old));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub(crate) fn remove(&mut self, key: &Key) -> bool {
        match self.table.take(key) {
            Some(old) => {
                self.undo.push(Undo::Removed(key.clone(), old));
                true
            }
            None => false,
        }
    }

    /// Undoes every change, newest first, and restores the auto-increment counter.
    pub(crate) fn rollback(mut self) {
        while let Some(step) = self.undo.pop() {
            match step {
                Undo::Inserted(key) => {
                    self.table.take(&key);
                }
                Undo::Replaced(key, old) | Undo::Removed(key, old) => {
                    self.table.take(&key);
                    self.table.put(key, old);
                }
            }
        }
        self.table.next_auto = self.saved_auto;
    }

    /// Runs `work`; keeps its changes when it succeeds and undoes them when it fails.
    pub(crate) fn run<T>(
        table: &'a mut Table,
        work: impl FnOnce(&mut Txn<'a>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut txn = Txn::begin(table);
        match work(&mut txn) {
            Ok(v) => Ok(v),
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{CollectionDef, FieldDef};

    fn table() -> Table {
        let def = CollectionDef::new("t")
            .field(FieldDef::new("name", FieldType::String).unique())
            .field(FieldDef::sync_timestamp("ts"));
        Table::new(Collection::compile(&def, &mut 0).unwrap())
    }

    #[test]
    fn rollback_restores_rows_indexes_and_counter() {
        let mut t = table();
        let k = Key::Int(t.next_auto_key());
        Txn::run(&mut t, |x| {
            x.insert(
                k.clone(),
                vec![k.to_cell(), Cell::Text("a".into()), Cell::Time(5)],
            )
        })
        .unwrap();
        let err = Txn::run(&mut t, |x| {
            let k2 = Key::Int(x.table.next_auto_key());
            x.insert(
                k2.clone(),
                vec![k2.to_cell(), Cell::Text("b".into()), Cell::Time(6)],
            )?;
            x.replace(&k, vec![k.to_cell(), Cell::Text("c".into()), Cell::Time(7)])?;
            x.insert(k.clone(), vec![k.to_cell(), Cell::Null, Cell::Null])
        });
        assert!(matches!(err, Err(Error::RecordNotUnique { .. })));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&k).unwrap().cells[1], Cell::Text("a".into()));
        assert_eq!(t.time_index(2).unwrap().len(), 1);
        assert_eq!(t.next_auto_key(), 2);
    }

    #[test]
    fn unique_field_is_enforced() {
        let mut t = table();
        Txn::run(&mut t, |x| {
            x.insert(
                Key::Int(1),
                vec![Cell::Int(1), Cell::Text("a".into()), Cell::Null],
            )
        })
        .unwrap();
        let err = Txn::run(&mut t, |x| {
            x.insert(
                Key::Int(2),
                vec![Cell::Int(2), Cell::Text("a".into()), Cell::Null],
            )
        });
        assert!(matches!(err, Err(Error::RecordNotUnique { field, .. }) if field == "name"));
    }

    #[test]
    fn keys_are_validated_like_directus() {
        assert_eq!(Key::parse(FieldType::Integer, "12"), Some(Key::Int(12)));
        assert_eq!(Key::parse(FieldType::Integer, "x"), None);
        assert_eq!(Key::parse(FieldType::Uuid, "nope"), None);
    }
}
