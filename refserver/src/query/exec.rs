//! Running a checked query over a table.
//!
//! Owns: choosing how to find the rows (primary-key lookups, key-ordered scans, the ordered
//! index of a date field for cursor pages, or a full scan and sort), applying offset and
//! limit, counting for `meta`, and rendering rows. Must not: validate queries or change data.

use super::Plan;
use super::filter::{Filter, Test};
use crate::cell::{self, Cell};
use crate::schema::Collection;
use crate::store::{Key, StoredRow, Table};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::ops::Bound;

/// One page of matching rows.
#[derive(Debug)]
pub(crate) struct Page<'t> {
    pub rows: Vec<&'t StoredRow>,
    pub total_count: Option<usize>,
    pub filter_count: Option<usize>,
}

/// Runs a plan. The common sync page — a range on a date field, sorted by that field — walks
/// the field's ordered index; key lookups and key-ordered scans use the primary key; anything
/// else filters every row and sorts.
pub(crate) fn execute<'t>(table: &'t Table, plan: &Plan) -> Page<'t> {
    let schema = &table.schema;
    let matching = |r: &&'t StoredRow| plan.filter.matches(schema, &r.cells);
    let rows = if let Some(keys) = key_lookup(table, &plan.filter) {
        let hits = keys
            .iter()
            .filter_map(|k| table.get(k))
            .filter(matching)
            .collect();
        sorted_window(hits, plan)
    } else if plan.sort.len() == 1 && plan.sort[0].0 == schema.pk {
        key_ordered(table, plan)
    } else if let Some(rows) = index_ordered(table, plan) {
        rows
    } else {
        let hits = table.iter().map(|(_, r)| r).filter(matching).collect();
        sorted_window(hits, plan)
    };
    let filter_count = plan.filter_count.then(|| match plan.filter {
        Filter::True => table.len(),
        _ => table.iter().map(|(_, r)| r).filter(matching).count(),
    });
    Page {
        rows,
        total_count: plan.total_count.then(|| table.len()),
        filter_count,
    }
}

fn sorted_window<'t>(mut hits: Vec<&'t StoredRow>, plan: &Plan) -> Vec<&'t StoredRow> {
    hits.sort_by(|a, b| compare_rows(a, b, &plan.sort));
    window(hits.into_iter(), plan)
}

fn window<'t>(rows: impl Iterator<Item = &'t StoredRow>, plan: &Plan) -> Vec<&'t StoredRow> {
    let rows = rows.skip(plan.offset);
    match plan.limit {
        Some(l) => rows.take(l).collect(),
        None => rows.collect(),
    }
}

/// Orders rows by the requested keys; rows equal on all of them keep insertion order.
fn compare_rows(a: &StoredRow, b: &StoredRow, sort: &[(usize, bool)]) -> Ordering {
    for (field, desc) in sort {
        let ord = cell::compare(&a.cells[*field], &b.cells[*field]);
        let ord = if *desc { ord.reverse() } else { ord };
        if ord.is_ne() {
            return ord;
        }
    }
    a.seq.cmp(&b.seq)
}

/// Keys named by a top-level `pk _eq` / `pk _in` condition.
/// The keys a filter pins: a top-level key equality or `_in`, or an `_or` whose every
/// branch pins keys (as a batch of compare-and-set updates does).
fn key_lookup(table: &Table, filter: &Filter) -> Option<Vec<Key>> {
    let pk = table.schema.pk;
    filter.conjuncts().into_iter().find_map(|c| match c {
        Filter::Cond(f, Test::Cmp(Ordering::Equal, true, v)) if *f == pk => {
            Some(Key::from_cell(v).into_iter().collect())
        }
        Filter::Cond(f, Test::In(list)) if *f == pk => {
            Some(list.iter().filter_map(Key::from_cell).collect())
        }
        Filter::Or(branches) => {
            let mut keys = Vec::new();
            for branch in branches {
                keys.extend(key_lookup(table, branch)?);
            }
            keys.sort();
            keys.dedup();
            Some(keys)
        }
        _ => None,
    })
}

/// Walks the primary key in order, narrowed by top-level key ranges.
fn key_ordered<'t>(table: &'t Table, plan: &Plan) -> Vec<&'t StoredRow> {
    let pk = table.schema.pk;
    let (mut lo, mut hi) = (Bound::Unbounded, Bound::Unbounded);
    for c in plan.filter.conjuncts() {
        if let Filter::Cond(f, Test::Cmp(ord, or_equal, v)) = c
            && *f == pk
            && let Some(k) = Key::from_cell(v)
        {
            let bound = if *or_equal {
                Bound::Included(k)
            } else {
                Bound::Excluded(k)
            };
            match ord {
                Ordering::Greater => lo = tighter(lo, bound, Ordering::Greater),
                Ordering::Less => hi = tighter(hi, bound, Ordering::Less),
                Ordering::Equal => {}
            }
        }
    }
    let matching = |(_, r): &(&Key, &StoredRow)| plan.filter.matches(&table.schema, &r.cells);
    let range = table.range(lo, hi);
    if plan.sort[0].1 {
        window(range.rev().filter(matching).map(|(_, r)| r), plan)
    } else {
        window(range.filter(matching).map(|(_, r)| r), plan)
    }
}

/// Of two bounds on the same side (`Greater` for lower bounds), the one that admits less.
fn tighter<T: Ord>(a: Bound<T>, b: Bound<T>, side: Ordering) -> Bound<T> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
                Ordering::Equal => b,
                ord if ord == side => a,
                _ => b,
            }
        }
    }
}

/// Uses the ordered index of the first sort field when a top-level condition on it excludes
/// NULL (so the index, which holds only values, covers every match).
fn index_ordered<'t>(table: &'t Table, plan: &Plan) -> Option<Vec<&'t StoredRow>> {
    let (field, desc) = *plan.sort.first()?;
    let index = table.time_index(field)?;
    let mut usable = false;
    let (mut lo, mut hi): (Bound<i64>, Bound<i64>) = (Bound::Unbounded, Bound::Unbounded);
    for c in plan.filter.conjuncts() {
        let Filter::Cond(f, test) = c else { continue };
        if *f != field {
            continue;
        }
        match test {
            Test::Cmp(ord, or_equal, Cell::Time(t)) => {
                usable = true;
                let b = if *or_equal {
                    Bound::Included(*t)
                } else {
                    Bound::Excluded(*t)
                };
                match ord {
                    Ordering::Greater => lo = tighter(lo, b, Ordering::Greater),
                    Ordering::Less => hi = tighter(hi, b, Ordering::Less),
                    Ordering::Equal => {
                        lo = tighter(lo, Bound::Included(*t), Ordering::Greater);
                        hi = tighter(hi, Bound::Included(*t), Ordering::Less);
                    }
                }
            }
            Test::NotNull | Test::Neq(_) | Test::In(_) | Test::Between(..) | Test::Cmp(..) => {
                usable = true;
            }
            _ => {}
        }
    }
    if !usable {
        return None;
    }
    let start = match lo {
        Bound::Included(t) => Bound::Included((t, 0, Key::Int(i64::MIN))),
        Bound::Excluded(t) => Bound::Included((t.saturating_add(1), 0, Key::Int(i64::MIN))),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match hi {
        Bound::Included(t) => Bound::Excluded((t.saturating_add(1), 0, Key::Int(i64::MIN))),
        Bound::Excluded(t) => Bound::Excluded((t, 0, Key::Int(i64::MIN))),
        Bound::Unbounded => Bound::Unbounded,
    };
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
        (&start, &end)
        && a >= b
    {
        return Some(Vec::new());
    }
    // Conditions that are all bounds on this field are fully answered by the range.
    let covered = plan
        .filter
        .conjuncts()
        .iter()
        .all(|c| matches!(c, Filter::Cond(f, Test::Cmp(_, _, Cell::Time(_))) if *f == field));
    let entries = index.range((start, end));
    let entries: Box<dyn Iterator<Item = &(i64, u64, Key)>> = if desc {
        Box::new(entries.rev())
    } else {
        Box::new(entries)
    };
    Some(walk_groups(table, plan, entries, covered))
}

/// Collects matching rows in index order, one equal-value group at a time (each group
/// sorted by the remaining keys), until the page is full and its last group complete.
/// When the index range alone decides the filter (`covered`), groups that end before the
/// offset are counted from the index without reading their rows.
fn walk_groups<'t>(
    table: &'t Table,
    plan: &Plan,
    entries: impl Iterator<Item = &'t (i64, u64, Key)>,
    covered: bool,
) -> Vec<&'t StoredRow> {
    let want = plan.limit.map(|l| plan.offset + l);
    let mut walk = GroupWalk {
        table,
        plan,
        covered,
        skipped: 0,
        out: Vec::new(),
        group: Vec::new(),
    };
    let mut current: Option<i64> = None;
    for (t, _, key) in entries {
        if current != Some(*t) {
            walk.flush();
            if want.is_some_and(|w| walk.skipped + walk.out.len() >= w) {
                break;
            }
            current = Some(*t);
        }
        walk.group.push(key);
    }
    walk.flush();
    let skip = plan.offset.saturating_sub(walk.skipped);
    walk.out
        .into_iter()
        .skip(skip)
        .take(plan.limit.unwrap_or(usize::MAX))
        .collect()
}

/// State of [`walk_groups`]: rows before the window that were only counted, the rows kept
/// from there on, and the keys of the group being read.
struct GroupWalk<'t, 'p> {
    table: &'t Table,
    plan: &'p Plan,
    covered: bool,
    skipped: usize,
    out: Vec<&'t StoredRow>,
    group: Vec<&'t Key>,
}

impl<'t> GroupWalk<'t, '_> {
    fn flush(&mut self) {
        let keys = std::mem::take(&mut self.group);
        if self.covered && self.out.is_empty() && self.skipped + keys.len() <= self.plan.offset {
            self.skipped += keys.len();
            return;
        }
        let schema = &self.table.schema;
        let mut rows: Vec<&'t StoredRow> = keys
            .into_iter()
            .filter_map(|k| self.table.get(k))
            .filter(|r| self.covered || self.plan.filter.matches(schema, &r.cells))
            .collect();
        rows.sort_by(|a, b| compare_rows(a, b, &self.plan.sort));
        self.out.append(&mut rows);
    }
}

/// A row as the API returns it: the selected fields (all by default) in order.
pub(crate) fn render_row(schema: &Collection, select: Option<&[usize]>, row: &StoredRow) -> Value {
    let mut out = Map::new();
    let mut put = |i: usize| {
        let f = &schema.fields[i];
        let value = match &row.cells[i] {
            // SQLite has no booleans: without `cast-boolean` Directus hands out 1 and 0.
            Cell::Bool(b) if !f.has_special("cast-boolean") => Value::from(i64::from(*b)),
            c => cell::to_json(f.kind, c),
        };
        out.insert(f.name.clone(), value);
    };
    match select {
        Some(fields) => fields.iter().copied().for_each(&mut put),
        None => (0..schema.fields.len()).for_each(&mut put),
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighter_bound_wins() {
        let b = tighter(Bound::Included(3), Bound::Excluded(3), Ordering::Greater);
        assert_eq!(b, Bound::Excluded(3));
        let b = tighter(Bound::Included(5), Bound::Included(3), Ordering::Greater);
        assert_eq!(b, Bound::Included(5));
        let b = tighter(Bound::Included(5), Bound::Included(3), Ordering::Less);
        assert_eq!(b, Bound::Included(3));
    }
}
