//! The one error type of this crate.
//!
//! This module owns [`ConfigError`], its classification [`ConfigErrorKind`] and the message
//! layout `<file>:<line>:<column>: <key path>: <what is wrong>; <what is allowed>`. It must not
//! decide what is wrong with a configuration; parsing and validation build the messages.

use std::fmt;

/// The name shown instead of a file name when the configuration did not come from a file.
pub const NO_FILE: &str = "<config>";

/// A 1-based line and column in a schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Position {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number, counted in characters.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What kind of problem a [`ConfigError`] reports, so callers never match on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid YAML (including duplicate keys).
    Syntax,
    /// A mapping has a key this format does not know.
    UnknownKey,
    /// A value has the wrong type, an unknown spelling or is out of range.
    InvalidValue,
    /// A `${NAME}` reference names an environment variable that is not set.
    MissingEnv,
    /// A name used as an SQL identifier is not safe to use, or is reserved.
    UnsafeIdentifier,
    /// The configuration is well-formed but inconsistent: a required key is missing,
    /// options contradict each other, or a reference points nowhere.
    Invalid,
    /// The file is valid on its own but asks for a change the local tables cannot follow
    /// (a field's type changed).
    Incompatible,
}

/// A configuration problem, worded so that the file can be fixed from the message alone.
///
/// Displayed as `<file>:<line>:<column>: <key path>: <message>`; the position is left out when
/// it is unknown (configurations built in code) and the key path when the problem is not tied
/// to one key (unreadable file, YAML syntax).
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {}{message}", position_suffix(.position), path_prefix(.path))]
#[non_exhaustive]
pub struct ConfigError {
    kind: ConfigErrorKind,
    file: String,
    position: Option<Position>,
    path: String,
    message: String,
    io_kind: Option<std::io::ErrorKind>,
}

fn position_suffix(position: &Option<Position>) -> String {
    position.map(|p| format!(":{p}")).unwrap_or_default()
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl ConfigError {
    pub(crate) fn new(
        kind: ConfigErrorKind,
        file: &str,
        position: Option<Position>,
        path: &str,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            kind,
            file: file.to_owned(),
            position,
            path: path.to_owned(),
            message: message.into(),
            io_kind: None,
        }
    }

    /// The file could not be read; the OS reason is part of the message because the message
    /// must be enough on its own.
    pub(crate) fn io(file: &str, error: &std::io::Error) -> Self {
        let mut this = ConfigError::new(
            ConfigErrorKind::Io,
            file,
            None,
            "",
            format!("cannot read the configuration file: {error}"),
        );
        this.io_kind = Some(error.kind());
        this
    }

    /// The classification of this error.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The file name as shown in the message (`<config>` when there was no file).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where in the file the problem is, when known.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// The 1-based line, when known.
    pub fn line(&self) -> Option<u32> {
        self.position.map(|p| p.line)
    }

    /// The 1-based column, when known.
    pub fn column(&self) -> Option<u32> {
        self.position.map(|p| p.column)
    }

    /// The dotted key path of the offending node, e.g. `collections.articles.conflict`;
    /// empty when the problem is not tied to one key.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong and what is allowed, without file, position and path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For [`ConfigErrorKind::Io`], the kind of the underlying I/O error.
    pub fn io_error_kind(&self) -> Option<std::io::ErrorKind> {
        self.io_kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_position_path_and_message() {
        let error = ConfigError::new(
            ConfigErrorKind::InvalidValue,
            "deltasync.yaml",
            Some(Position {
                line: 14,
                column: 15,
            }),
            "collections.articles.conflict",
            "unknown strategy \"lww\"; expected one of last_write_wins, first_write_wins, manual",
        );
        assert_eq!(
            error.to_string(),
            "deltasync.yaml:14:15: collections.articles.conflict: unknown strategy \"lww\"; \
             expected one of last_write_wins, first_write_wins, manual"
        );
    }

    #[test]
    fn display_omits_unknown_position_and_empty_path() {
        let error = ConfigError::new(ConfigErrorKind::Invalid, NO_FILE, None, "", "boom");
        assert_eq!(error.to_string(), "<config>: boom");
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = ConfigError::io("x.yaml", &io);
        assert_eq!(error.kind(), ConfigErrorKind::Io);
        assert_eq!(error.io_error_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(
            error
                .to_string()
                .starts_with("x.yaml: cannot read the configuration file: ")
        );
    }
}
