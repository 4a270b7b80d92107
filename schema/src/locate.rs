//! Positions of key paths, and error construction from them.
//!
//! This module owns the map from a dotted key path (`collections.articles.conflict`) to where
//! its key and its value start in the file, and [`Reporter`], which turns "path + message" into
//! a [`ConfigError`] with the right position. Validation runs on typed values that no longer
//! know where they came from; this is how its errors still point into the file. It must not
//! decide what is valid.

use std::collections::HashMap;

use crate::error::{ConfigError, ConfigErrorKind, NO_FILE, Position};

/// Where one key path appears in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Site {
    pub(crate) key: Option<Position>,
    pub(crate) value: Option<Position>,
}

/// Key path -> site, filled while decoding a file; empty for configurations built in code.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locations {
    sites: HashMap<String, Site>,
    /// Paths whose value was inherited from another path (a collection option taken from
    /// `defaults`): errors about them must point at the place the user actually wrote.
    origins: HashMap<String, String>,
}

impl Locations {
    pub(crate) fn record(&mut self, path: &str, site: Site) {
        self.sites.insert(path.to_owned(), site);
    }

    /// Records that the value at `path` was copied from `origin`.
    pub(crate) fn inherit(&mut self, path: &str, origin: &str) {
        if self.sites.contains_key(origin) {
            self.origins.insert(path.to_owned(), origin.to_owned());
        }
    }

    /// The path to show and its site: `path` itself when written in the file, else its origin.
    fn resolve<'a>(&'a self, path: &'a str) -> (&'a str, Site) {
        if let Some(site) = self.sites.get(path) {
            return (path, *site);
        }
        match self.origins.get(path) {
            Some(origin) => (origin, self.sites.get(origin).copied().unwrap_or_default()),
            None => (path, Site::default()),
        }
    }
}

/// Builds errors for one file (or for no file).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reporter<'a> {
    pub(crate) file: &'a str,
    pub(crate) locations: Option<&'a Locations>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: &'a str, locations: &'a Locations) -> Self {
        Reporter {
            file,
            locations: Some(locations),
        }
    }

    /// For configurations built in code: no file, no positions.
    pub(crate) fn detached() -> Self {
        Reporter {
            file: NO_FILE,
            locations: None,
        }
    }

    /// An error about the key at `path` (its name, or something missing below it).
    pub(crate) fn at_key(
        &self,
        kind: ConfigErrorKind,
        path: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.build(kind, path, message.into(), |site| site.key.or(site.value))
    }

    /// An error about the value at `path`.
    pub(crate) fn at_value(
        &self,
        kind: ConfigErrorKind,
        path: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.build(kind, path, message.into(), |site| site.value.or(site.key))
    }

    fn build(
        &self,
        kind: ConfigErrorKind,
        path: &str,
        message: String,
        pick: impl Fn(Site) -> Option<Position>,
    ) -> ConfigError {
        let (shown, site) = match self.locations {
            Some(locations) => locations.resolve(path),
            None => (path, Site::default()),
        };
        ConfigError::new(kind, self.file, pick(site), shown, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_paths_point_at_their_origin() {
        let mut locations = Locations::default();
        let site = Site {
            key: Some(Position { line: 3, column: 3 }),
            value: Some(Position {
                line: 3,
                column: 11,
            }),
        };
        locations.record("defaults.cursor", site);
        locations.inherit("collections.a.cursor", "defaults.cursor");
        let reporter = Reporter::new("f.yaml", &locations);
        let error = reporter.at_value(ConfigErrorKind::Invalid, "collections.a.cursor", "bad");
        assert_eq!(error.path(), "defaults.cursor");
        assert_eq!(error.line(), Some(3));
        assert_eq!(error.column(), Some(11));
    }

    #[test]
    fn unknown_paths_have_no_position() {
        let locations = Locations::default();
        let reporter = Reporter::new("f.yaml", &locations);
        let error = reporter.at_key(ConfigErrorKind::Invalid, "collections.a", "bad");
        assert_eq!(error.position(), None);
        assert_eq!(error.to_string(), "f.yaml: collections.a: bad");
    }
}
