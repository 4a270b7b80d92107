//! A span-aware YAML node tree.
//!
//! This module owns the only contact with the YAML parser: it turns the text of a schema file
//! into a tree of [`Node`]s, each carrying the line and column it came from, and turns parser
//! failures into [`ConfigError`]s of kind `Syntax`. It must not interpret the configuration:
//! it knows nothing about keys, defaults or allowed values.
//!
//! Why a tree instead of deserializing straight into the model: serde's derived errors cannot
//! name the offending key path, list the allowed keys or keep secrets out of messages, and the
//! validation that follows parsing needs the position of every node.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::{ConfigError, ConfigErrorKind, Position};

/// One YAML node and where it starts in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) position: Option<Position>,
}

/// The content of a node after YAML 1.2 core typing of plain scalars.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// `expanded` is true when the text came out of `${...}` substitution: such text may still
    /// be read as a number or a boolean, because the variable could not be typed in the file.
    Str {
        text: String,
        expanded: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order; the parser has already rejected duplicate keys.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What a user would call this kind of value, for "expected X, found Y" messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "an empty value",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str { .. } => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses `text` into a node tree. An empty document yields a `Null` node.
pub(crate) fn parse(text: &str, file: &str) -> Result<Node, ConfigError> {
    let options = serde_saphyr::options! {
        // `yes`/`no`/`on`/`off` stay strings: YAML 1.1 booleans surprise people who name a
        // field `on` or set a value to `no`.
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(node) => Ok(node),
        Err(error) => Err(syntax_error(&error, file)),
    }
}

/// Converts a parser error into a `Syntax` error with the parser's user-facing wording.
fn syntax_error(error: &serde_saphyr::Error, file: &str) -> ConfigError {
    let message = match error.without_snippet() {
        serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
            format!("duplicate key \"{key}\"; each key may appear only once in a mapping")
        }
        other => {
            let formatter = serde_saphyr::UserMessageFormatter;
            serde_saphyr::MessageFormatter::format_message(&formatter, other).into_owned()
        }
    };
    // The parser may quote input text; keep the message on one line so it stays readable in
    // a terminal and in logs.
    let mut message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Some(hint) = quoting_hint(&message) {
        message.push_str("; ");
        message.push_str(hint);
    }
    let position = error.location().and_then(position_of);
    ConfigError::new(ConfigErrorKind::Syntax, file, position, "", message)
}

/// The usual fix for parser complaints that come from an unquoted value, such as
/// `database: sqlite::memory:` (ends with `:`) or `${X}` inside `{...}`.
fn quoting_hint(message: &str) -> Option<&'static str> {
    if message.contains("mapping values are not allowed") {
        return Some("put the value in quotes if it contains \": \" or ends with \":\"");
    }
    let flow = [
        "expected ',' or '}'",
        "expected ',' or ']'",
        "misplaced bracket",
    ];
    if flow.iter().any(|m| message.contains(m)) {
        return Some(
            "inside {...} or [...], put values containing {, }, [, ] or , in quotes \
             (also ${NAME} references)",
        );
    }
    None
}

/// Converts a parser location, which is 0 when unknown.
fn position_of(location: serde_saphyr::Location) -> Option<Position> {
    let line = u32::try_from(location.line()).ok()?;
    let column = u32::try_from(location.column()).ok()?;
    (line > 0 && column > 0).then_some(Position { line, column })
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        // `referenced` is where the node is used, which is what its key path names; for an
        // alias it is the alias, not the anchored definition.
        Ok(Node {
            value: spanned.value,
            position: position_of(spanned.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str {
            text: v.to_owned(),
            expanded: false,
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str {
            text: v,
            expanded: false,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("expected a mapping, got {other:?}"),
        }
    }

    #[test]
    fn keys_and_values_carry_positions() {
        let node = parse("remote:\n  url: http://x\n  n: 5\n", "f").expect("parses");
        let root = map(&node);
        assert_eq!(root[0].0.position, Some(Position { line: 1, column: 1 }));
        let remote = map(&root[0].1);
        assert_eq!(remote[0].0.position, Some(Position { line: 2, column: 3 }));
        assert_eq!(remote[0].1.position, Some(Position { line: 2, column: 8 }));
        assert_eq!(remote[1].1.value, Value::Int(5));
    }

    #[test]
    fn quoted_numbers_stay_strings_and_yaml11_booleans_are_text() {
        let node = parse("a: \"5\"\nb: on\nc: true\nd:\n", "f").expect("parses");
        let root = map(&node);
        assert_eq!(root[0].1.value.kind_name(), "a string");
        assert_eq!(root[1].1.value.kind_name(), "a string");
        assert_eq!(root[2].1.value, Value::Bool(true));
        assert_eq!(root[3].1.value, Value::Null);
    }

    #[test]
    fn empty_document_is_null() {
        let node = parse("", "f").expect("parses");
        assert_eq!(node.value, Value::Null);
        let node = parse("# only a comment\n", "f").expect("parses");
        assert_eq!(node.value, Value::Null);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let error = parse("a: [1, 2\nb: 3\n", "f.yaml").expect_err("fails");
        assert_eq!(error.kind(), ConfigErrorKind::Syntax);
        assert!(error.position().is_some(), "{error}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let error = parse("a: 1\na: 2\n", "f.yaml").expect_err("fails");
        assert_eq!(error.kind(), ConfigErrorKind::Syntax);
        assert_eq!(error.line(), Some(2), "{error}");
    }
}
