//! `local.database` URLs.
//!
//! This module owns which database URL schemes are accepted and how a relative SQLite path is
//! made independent of the working directory. It must not open or create databases.

use std::path::Path;

/// The database family named by a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Sqlite,
    Postgres,
}

/// What the message lists as accepted.
pub(crate) const EXPECTED: &str =
    "sqlite://<file>, sqlite::memory: or postgres://user@host/database";

/// The scheme of `url`, if accepted. A SQLite URL must name a file (or `:memory:`), a
/// PostgreSQL URL must have something after `//`.
pub(crate) fn scheme(url: &str) -> Option<Scheme> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = sqlite_path(rest).0;
        return (!path.is_empty()).then_some(Scheme::Sqlite);
    }
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    (!rest.is_empty()).then_some(Scheme::Postgres)
}

/// Splits what follows `sqlite:` into (path, rest of URL starting at `?`), ignoring `//`.
fn sqlite_path(rest: &str) -> (&str, &str) {
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    match rest.find('?') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    }
}

/// Resolves a relative SQLite file path against `dir`, so the database sits next to the
/// schema file whatever the working directory of the process. Absolute paths, in-memory
/// databases and PostgreSQL URLs are returned unchanged.
pub(crate) fn resolve(url: &str, dir: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return url.to_owned();
    };
    let prefix = if rest.starts_with("//") {
        "sqlite://"
    } else {
        "sqlite:"
    };
    let (path, query) = sqlite_path(rest);
    if path.is_empty() || path.starts_with(":memory:") || Path::new(path).is_absolute() {
        return url.to_owned();
    }
    let joined = dir.join(path);
    // `absolute` only looks at the working directory, never at the file system, so it also
    // works for a database that does not exist yet.
    let joined = std::path::absolute(&joined).unwrap_or(joined);
    format!("{prefix}{}{query}", joined.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("sqlite://deltasync.db"), Some(Scheme::Sqlite));
        assert_eq!(scheme("sqlite:data/x.db"), Some(Scheme::Sqlite));
        assert_eq!(scheme("sqlite::memory:"), Some(Scheme::Sqlite));
        assert_eq!(scheme("postgres://u@h/db"), Some(Scheme::Postgres));
        assert_eq!(scheme("postgresql://u@h/db"), Some(Scheme::Postgres));
        assert_eq!(scheme("sqlite://"), None);
        assert_eq!(scheme("mysql://h/db"), None);
        assert_eq!(scheme("deltasync.db"), None);
    }

    #[test]
    fn relative_sqlite_paths_resolve_against_the_file_directory() {
        let dir = Path::new("/etc/app");
        assert_eq!(
            resolve("sqlite://deltasync.db", dir),
            "sqlite:///etc/app/deltasync.db"
        );
        assert_eq!(
            resolve("sqlite:data/x.db?mode=rwc", dir),
            "sqlite:/etc/app/data/x.db?mode=rwc"
        );
    }

    #[test]
    fn other_urls_are_kept() {
        let dir = Path::new("/etc/app");
        for url in [
            "sqlite:///var/x.db",
            "sqlite:/var/x.db",
            "sqlite::memory:",
            "sqlite://:memory:",
            "postgres://u@h/db",
        ] {
            assert_eq!(resolve(url, dir), url);
        }
    }

    #[test]
    fn a_relative_directory_becomes_absolute() {
        let resolved = resolve("sqlite://x.db", Path::new("conf"));
        let path = resolved.trim_start_matches("sqlite://");
        assert!(Path::new(path).is_absolute(), "{resolved}");
        assert!(path.ends_with("conf/x.db"), "{resolved}");
    }
}
