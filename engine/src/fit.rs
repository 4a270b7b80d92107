//! Whether a server collection, as its schema describes it, can be synced as configured
//! without losing rows.
//!
//! Owns the checks a sync makes before it first pulls a collection, and before it creates
//! integer-key rows: the cursor must see every row (a field stamped on create and on update,
//! or the two standard date fields), the server and the file must agree on who assigns keys,
//! and server-assigned keys need a unique idempotency field. Pure: the server's field list in,
//! the mismatches out (`sync` stops at the first, `validate --remote` lists them all). It must
//! not judge what it cannot lose rows over (types of ordinary fields, permissions):
//! `validate --remote` reports those itself.

use schema::{CollectionConfig, KeyType};

use crate::error::ServerMismatch;
use crate::ports::ServerField;

/// The first reason `c` cannot be synced safely against a collection with `fields`.
pub fn check(c: &CollectionConfig, fields: &[ServerField]) -> Result<(), ServerMismatch> {
    mismatches(c, fields).into_iter().next().map_or(Ok(()), Err)
}

/// Every reason `c` cannot be synced safely against a collection with `fields`: the cursor's
/// first, then the keys'.
pub fn mismatches(c: &CollectionConfig, fields: &[ServerField]) -> Vec<ServerMismatch> {
    let mismatch = |field: &str, message: String| ServerMismatch {
        collection: c.name.clone(),
        field: field.to_owned(),
        message,
    };
    let stamps: Vec<(&str, &[&str])> = match &c.cursor_created {
        None => vec![(&c.cursor, &["date-created", "date-updated"])],
        Some(created) => vec![(&c.cursor, &["date-updated"]), (created, &["date-created"])],
    };
    let mut out = Vec::new();
    for (name, specials) in stamps {
        let Some(f) = fields.iter().find(|f| f.name == name) else {
            out.push(mismatch(
                name,
                "missing on the server; the cursor must be a timestamp the server stamps"
                    .to_owned(),
            ));
            continue;
        };
        for special in specials.iter().filter(|s| !f.has_special(s)) {
            let when = if *special == "date-created" {
                "create"
            } else {
                "update"
            };
            out.push(mismatch(
                name,
                format!(
                    "not stamped on {when} (no special {special}); {}",
                    advice(c, fields)
                ),
            ));
        }
    }
    out.extend(
        keys(c, fields)
            .into_iter()
            .map(|(field, message)| mismatch(field, message)),
    );
    out
}

/// Who assigns keys must be the same on both sides: a client choosing integer keys on an
/// auto-increment collection takes numbers the server, the app or another replica also
/// takes. Keys the server assigns need the idempotency field, unique, unless the file says
/// it goes without.
fn keys<'c>(c: &'c CollectionConfig, fields: &[ServerField]) -> Vec<(&'c str, String)> {
    let pk = c.primary_key.as_str();
    let assigned = fields
        .iter()
        .find(|f| f.name == pk)
        .is_some_and(|f| f.auto_increment);
    let mut out = Vec::new();
    match c.key_type {
        KeyType::Integer if assigned => out.push((
            pk,
            "the server assigns these keys (auto-increment); use `key_type: auto_increment`, \
             or rows created here and elsewhere take the same numbers"
                .to_owned(),
        )),
        KeyType::AutoIncrement if !assigned => out.push((
            pk,
            "the server does not assign these keys (no auto-increment); use `key_type: integer`"
                .to_owned(),
        )),
        _ => {}
    }
    let Some(name) = c.idempotency_field.as_deref() else {
        return out;
    };
    let without = "or set `idempotency_field: none` to accept that a create whose answer was \
                   lost may be made twice";
    match fields.iter().find(|f| f.name == name) {
        None => out.push((
            name,
            format!(
                "missing on the server: add a unique string field {name} (`deltasync init` \
                 offers it, `scripts/directus seed` adds it), {without}"
            ),
        )),
        Some(f) if !f.unique => out.push((
            name,
            format!("not unique on the server: make it unique, {without}"),
        )),
        Some(_) => {}
    }
    out
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
        let mut table: Vec<Case> = vec![
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
        let pk = |auto_increment: bool| ServerField {
            name: "id".into(),
            kind: "integer".into(),
            primary_key: true,
            auto_increment,
            ..Default::default()
        };
        let idem = |unique: bool| ServerField {
            name: "deltasync_key".into(),
            kind: "string".into(),
            unique,
            ..Default::default()
        };
        let server_keys = CollectionConfig::new("posts")
            .with_date_cursor()
            .with_server_keys();
        let mut client_integers = CollectionConfig::new("posts").with_date_cursor();
        client_integers.key_type = KeyType::Integer;
        let mut without = server_keys.clone();
        without.idempotency_field = None;
        let with = |extra: Vec<ServerField>| stock().into_iter().chain(extra).collect::<Vec<_>>();
        table.extend([
            (
                "server keys with a unique idempotency field",
                server_keys.clone(),
                with(vec![pk(true), idem(true)]),
                None,
            ),
            (
                "client integers on an auto-increment key",
                client_integers.clone(),
                with(vec![pk(true)]),
                Some(("id", "use `key_type: auto_increment`")),
            ),
            (
                "client integers on a plain key",
                client_integers,
                with(vec![pk(false)]),
                None,
            ),
            (
                "server keys on a plain key",
                server_keys.clone(),
                with(vec![pk(false), idem(true)]),
                Some(("id", "use `key_type: integer`")),
            ),
            (
                "no idempotency field",
                server_keys.clone(),
                with(vec![pk(true)]),
                Some(("deltasync_key", "missing on the server")),
            ),
            (
                "an idempotency field that is not unique",
                server_keys,
                with(vec![pk(true), idem(false)]),
                Some(("deltasync_key", "not unique")),
            ),
            (
                "going without, said in the file",
                without,
                with(vec![pk(true)]),
                None,
            ),
        ]);
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
