//! Whether a server collection, as its schema describes it, can be synced as configured
//! without losing rows.
//!
//! Owns the checks a sync makes before it first pulls a collection: the cursor must see every
//! row (a field stamped on create and on update, or the two standard date fields). Pure: the
//! server's field list in, the first mismatch out. It must not judge what it cannot lose rows
//! over (types of ordinary fields, permissions): `deltasync validate --remote` reports those.

use schema::CollectionConfig;

use crate::error::ServerMismatch;
use crate::ports::ServerField;

/// The first reason `c` cannot be synced safely against a collection with `fields`.
pub fn check(c: &CollectionConfig, fields: &[ServerField]) -> Result<(), ServerMismatch> {
    let mismatch = |field: &str, message: String| ServerMismatch {
        collection: c.name.clone(),
        field: field.to_owned(),
        message,
    };
    let find = |name: &str| fields.iter().find(|f| f.name == name);
    let stamped = |name: &str, special: &str, when: &str| match find(name) {
        None => Err(mismatch(
            name,
            "missing on the server; the cursor must be a timestamp the server stamps".to_owned(),
        )),
        Some(f) if !f.has_special(special) => Err(mismatch(
            name,
            format!(
                "not stamped on {when} (no special {special}); {}",
                advice(c, fields)
            ),
        )),
        Some(_) => Ok(()),
    };
    match &c.cursor_created {
        None => {
            stamped(&c.cursor, "date-created", "create")?;
            stamped(&c.cursor, "date-updated", "update")
        }
        Some(created) => {
            stamped(&c.cursor, "date-updated", "update")?;
            stamped(created, "date-created", "create")
        }
    }
}

/// What to configure instead, from what the server has.
fn advice(c: &CollectionConfig, fields: &[ServerField]) -> String {
    let with = |special: &str| fields.iter().find(|f| f.has_special(special));
    let both = fields
        .iter()
        .find(|f| f.has_special("date-created") && f.has_special("date-updated"));
    match (both, with("date-updated"), with("date-created")) {
        (Some(f), _, _) => format!("use `cursor: {}`", f.name),
        (None, Some(updated), Some(created)) => format!(
            "use `cursor: {{updated: {}, created: {}}}`",
            updated.name, created.name
        ),
        _ => format!(
            "rows would be missed; give {} the standard date fields (date_created and \
             date_updated) and use `cursor: {{updated: date_updated, created: date_created}}`",
            c.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, specials: &[&str]) -> ServerField {
        ServerField {
            name: name.into(),
            kind: "timestamp".into(),
            specials: specials.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn stock() -> Vec<ServerField> {
        vec![
            field("date_created", &["date-created"]),
            field("date_updated", &["date-updated"]),
        ]
    }

    /// A configuration, the server's fields, and the field named and the advice given when
    /// refused.
    type Case = (
        &'static str,
        CollectionConfig,
        Vec<ServerField>,
        Option<(&'static str, &'static str)>,
    );

    #[test]
    fn golden() {
        let single = |cursor: &str| {
            let mut c = CollectionConfig::new("posts");
            c.cursor = cursor.into();
            c
        };
        let dates = CollectionConfig::new("posts").with_date_cursor();
        let mut swapped = dates.clone();
        (swapped.cursor, swapped.cursor_created) =
            ("date_created".into(), Some("date_updated".into()));
        let both = vec![field("last_modified", &["date-created", "date-updated"])];
        let table: Vec<Case> = vec![
            (
                "a field stamped on both",
                single("last_modified"),
                both.clone(),
                None,
            ),
            ("the standard date fields", dates.clone(), stock(), None),
            (
                "date_updated alone misses rows never updated",
                single("date_updated"),
                stock(),
                Some((
                    "date_updated",
                    "use `cursor: {updated: date_updated, created: date_created}`",
                )),
            ),
            (
                "date_created alone misses updates",
                single("date_created"),
                stock(),
                Some(("date_created", "use `cursor: {updated: date_updated")),
            ),
            (
                "the two fields swapped",
                swapped,
                stock(),
                Some(("date_created", "not stamped on update")),
            ),
            (
                "a missing cursor",
                single("last_modified"),
                stock(),
                Some(("last_modified", "missing on the server")),
            ),
            (
                "a missing created field",
                dates.clone(),
                vec![field("date_updated", &["date-updated"])],
                Some(("date_created", "missing on the server")),
            ),
            (
                "a created field without its special",
                dates,
                vec![
                    field("date_updated", &["date-updated"]),
                    field("date_created", &[]),
                ],
                Some(("date_created", "give posts the standard date fields")),
            ),
        ];
        for (case, c, fields, expected) in table {
            let got = check(&c, &fields).err();
            match (got, expected) {
                (None, None) => {}
                (Some(m), Some((field, says))) => {
                    assert_eq!(m.field, field, "{case}");
                    assert!(m.message.contains(says), "{case}: {}", m.message);
                    assert_eq!(m.collection, "posts");
                }
                (got, expected) => panic!("{case}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
