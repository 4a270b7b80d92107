//! `${NAME}` and `${NAME:-default}` substitution in string scalars.
//!
//! This module owns the substitution syntax and walks a parsed node tree to apply it to every
//! string value (never to keys). It must not read the process environment itself: the caller
//! passes a lookup, so tests and embedding services can supply their own variables. It must
//! never put a substituted value into an error message.

use crate::error::{ConfigError, ConfigErrorKind};
use crate::yaml::{Node, Value};

/// Looks up one variable; `None` when unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// `${NAME}` without a default and `NAME` is unset.
    Missing(String),
    /// `${` not followed by a valid name and `}` or `:-default}`.
    Malformed,
}

/// Expands every reference in `text`; `Ok(None)` when `text` contains no reference.
///
/// `$${` stands for a literal `${`. In `${NAME:-default}` the default is used when the variable
/// is unset or empty, like in a POSIX shell; the default itself is taken literally.
pub(crate) fn expand(text: &str, lookup: Lookup<'_>) -> Result<Option<String>, Problem> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let escaped = rest[..start].ends_with('$');
        if escaped {
            // Drop the escaping `$` and keep `${` literally.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(Problem::Malformed)?;
        out.push_str(&resolve(&after[..end], lookup)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Resolves the inside of one `${...}`.
fn resolve(inner: &str, lookup: Lookup<'_>) -> Result<String, Problem> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if !is_variable_name(name) {
        return Err(Problem::Malformed);
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(Problem::Missing(name.to_owned())),
    }
}

/// Shell-style names: a letter or `_`, then letters, digits and `_`.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands all string values of `node` in place. `path` is the key path of `node`.
pub(crate) fn expand_tree(
    node: &mut Node,
    path: &str,
    file: &str,
    lookup: Lookup<'_>,
) -> Result<(), ConfigError> {
    match &mut node.value {
        Value::Str { text, expanded } => match expand(text, lookup) {
            Ok(Some(value)) => {
                *text = value;
                *expanded = true;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(problem) => Err(env_error(problem, node.position, path, file)),
        },
        Value::Seq(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{path}[{index}]"), file, lookup)?;
            }
            Ok(())
        }
        Value::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                let child = crate::decode::child_path(path, &key_text(key));
                expand_tree(value, &child, file, lookup)?;
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => Ok(()),
    }
}

/// A key as it appears in a key path; non-string keys are shown in YAML form.
fn key_text(key: &Node) -> String {
    match &key.value {
        Value::Str { text, .. } => text.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => "null".to_owned(),
        Value::Seq(_) | Value::Map(_) => "?".to_owned(),
    }
}

fn env_error(
    problem: Problem,
    position: Option<crate::error::Position>,
    path: &str,
    file: &str,
) -> ConfigError {
    match problem {
        Problem::Missing(name) => ConfigError::new(
            ConfigErrorKind::MissingEnv,
            file,
            position,
            path,
            format!(
                "environment variable {name} is not set; set it, or write ${{{name}:-default}} \
                 to give a default"
            ),
        ),
        Problem::Malformed => ConfigError::new(
            ConfigErrorKind::InvalidValue,
            file,
            position,
            path,
            "malformed variable reference; write ${NAME} or ${NAME:-default} \
             (NAME: letters, digits and _), or $${ for a literal ${",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<Option<String>, Problem> {
        expand(text, &env)
    }

    #[test]
    fn plain_text_is_untouched() {
        assert_eq!(run("hello $HOME and $ sign"), Ok(None));
    }

    #[test]
    fn variables_and_defaults_expand() {
        assert_eq!(run("${TOKEN}"), Ok(Some("abc".into())));
        assert_eq!(run("x-${TOKEN}-y"), Ok(Some("x-abc-y".into())));
        assert_eq!(run("${UNSET:-dflt}"), Ok(Some("dflt".into())));
        assert_eq!(run("${EMPTY:-dflt}"), Ok(Some("dflt".into())));
        assert_eq!(run("${EMPTY}"), Ok(Some(String::new())));
        assert_eq!(run("${UNSET:-}"), Ok(Some(String::new())));
        assert_eq!(run("${TOKEN:-dflt}"), Ok(Some("abc".into())));
        assert_eq!(run("${UNSET:-a:-b}"), Ok(Some("a:-b".into())));
    }

    #[test]
    fn escaped_reference_is_literal() {
        assert_eq!(run("$${TOKEN}"), Ok(Some("${TOKEN}".into())));
    }

    #[test]
    fn problems_are_reported() {
        assert_eq!(run("${UNSET}"), Err(Problem::Missing("UNSET".into())));
        assert_eq!(run("${TOKEN"), Err(Problem::Malformed));
        assert_eq!(run("${1X}"), Err(Problem::Malformed));
        assert_eq!(run("${}"), Err(Problem::Malformed));
    }
}
