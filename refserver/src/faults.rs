//! Fault injection and request statistics.
//!
//! Owns: the queue of injected faults (what they match, how many requests they still
//! affect), the error each one answers with, and request counts per route. Must not: touch
//! data; the HTTP layer decides where in a request each fault acts.

use crate::clock;
use crate::error::{Error, InjectedFailure};
use serde_json::{Map, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// A misbehaviour to inject into the next matching requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer `status` with `extensions.code = code` before touching any data (the rate
    /// limiter's 429 `REQUESTS_EXCEEDED`, the pressure limiter's 503 `SERVICE_UNAVAILABLE`,
    /// a 500...). `retry_after` sets the `Retry-After` header in seconds.
    FailNext {
        count: u32,
        status: u16,
        code: String,
        retry_after: Option<u32>,
    },
    /// Carry out a write request (POST, PATCH, DELETE), then answer `status` instead of the
    /// real success response: a response lost after the write committed. Only requests whose
    /// real answer was a success count against `count`.
    CommitThenFail { count: u32, status: u16 },
    /// Stamp `date-created`/`date-updated` values and activity `by` earlier than the clock:
    /// a slow transaction whose stamp was taken before a concurrent reader moved on.
    BackdateWrites { count: u32, by: Duration },
}

impl Fault {
    /// 429 `REQUESTS_EXCEEDED` with `Retry-After`.
    pub fn rate_limited(count: u32, retry_after: u32) -> Fault {
        Fault::FailNext {
            count,
            status: 429,
            code: "REQUESTS_EXCEEDED".into(),
            retry_after: Some(retry_after),
        }
    }

    /// 503 `SERVICE_UNAVAILABLE` without `Retry-After`, as the pressure limiter answers.
    pub fn unavailable(count: u32) -> Fault {
        Fault::FailNext {
            count,
            status: 503,
            code: "SERVICE_UNAVAILABLE".into(),
            retry_after: None,
        }
    }

    fn count(&self) -> u32 {
        match self {
            Fault::FailNext { count, .. }
            | Fault::CommitThenFail { count, .. }
            | Fault::BackdateWrites { count, .. } => *count,
        }
    }
}

/// Which requests a fault applies to; the default matches every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultScope {
    /// HTTP method, e.g. `"PATCH"`.
    pub method: Option<String>,
    /// Path prefix, e.g. `"/items/notes"`.
    pub path_prefix: Option<String>,
}

impl FaultScope {
    /// Requests with this method.
    pub fn method(method: &str) -> Self {
        FaultScope {
            method: Some(method.to_ascii_uppercase()),
            path_prefix: None,
        }
    }

    /// Narrows to paths starting with `prefix`.
    pub fn path(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

#[derive(Debug)]
struct Rule {
    id: u64,
    fault: Fault,
    scope: FaultScope,
    left: u32,
}

/// What the injected faults do to one request.
#[derive(Debug, Default)]
pub(crate) struct Armed {
    /// Answer with this error and do nothing else.
    pub fail: Option<Error>,
    /// Rule id and status to answer with if the real response succeeds.
    pub commit_then_fail: Option<(u64, u16)>,
    pub backdate: Option<Duration>,
}

/// The pending faults.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    rules: Vec<Rule>,
    next_id: u64,
}

impl FaultBook {
    pub(crate) fn add(&mut self, fault: Fault, scope: FaultScope) {
        self.next_id += 1;
        let left = fault.count();
        if left > 0 {
            self.rules.push(Rule {
                id: self.next_id,
                fault,
                scope,
                left,
            });
        }
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn pending(&self) -> usize {
        self.rules.len()
    }

    /// Decides what the faults do to a request. A `FailNext` is consumed here; a
    /// `CommitThenFail` only once its request succeeded (see [`FaultBook::consume`]).
    pub(crate) fn arm(&mut self, method: &str, path: &str, now_ms: i64) -> Armed {
        let mut armed = Armed::default();
        let is_write = matches!(method, "POST" | "PATCH" | "DELETE");
        for rule in self
            .rules
            .iter_mut()
            .filter(|r| r.scope.matches(method, path))
        {
            match &rule.fault {
                Fault::FailNext {
                    status,
                    code,
                    retry_after,
                    ..
                } if armed.fail.is_none() => {
                    rule.left -= 1;
                    armed.fail = Some(injected_error(*status, code, *retry_after, now_ms));
                    break;
                }
                Fault::CommitThenFail { status, .. }
                    if is_write && armed.commit_then_fail.is_none() =>
                {
                    armed.commit_then_fail = Some((rule.id, *status));
                }
                Fault::BackdateWrites { by, .. } if is_write && armed.backdate.is_none() => {
                    rule.left -= 1;
                    armed.backdate = Some(*by);
                }
                _ => {}
            }
        }
        self.rules.retain(|r| r.left > 0);
        armed
    }

    /// Uses up one request of a `CommitThenFail` rule; false if it is already used up.
    pub(crate) fn consume(&mut self, id: u64) -> bool {
        let Some(rule) = self.rules.iter_mut().find(|r| r.id == id) else {
            return false;
        };
        rule.left -= 1;
        self.rules.retain(|r| r.left > 0);
        true
    }
}

/// The error body a fault answers with, shaped like the Directus error for its code.
pub(crate) fn injected_error(
    status: u16,
    code: &str,
    retry_after: Option<u32>,
    now_ms: i64,
) -> Error {
    let mut extensions = Map::new();
    let message = match code {
        "REQUESTS_EXCEEDED" => {
            let secs = retry_after.unwrap_or(0);
            extensions.insert("limit".into(), json!(50));
            let reset = clock::format_timestamp(now_ms + i64::from(secs) * 1000);
            extensions.insert("reset".into(), json!(reset));
            format!(
                "Too many requests, retry after {}.",
                human_ms(u64::from(secs) * 1000)
            )
        }
        "SERVICE_UNAVAILABLE" => {
            extensions.insert("service".into(), json!("api"));
            extensions.insert("reason".into(), json!("Under pressure"));
            "Service \"api\" is unavailable. Under pressure.".to_string()
        }
        "INTERNAL_SERVER_ERROR" => "An unexpected error occurred.".to_string(),
        other => format!("Injected failure ({other})."),
    };
    Error::Injected(Box::new(InjectedFailure {
        status,
        code: code.into(),
        message,
        extensions,
        retry_after,
    }))
}

/// The code Directus would send with a status, for faults that give only a status.
pub(crate) fn code_for_status(status: u16) -> &'static str {
    match status {
        429 => "REQUESTS_EXCEEDED",
        503 => "SERVICE_UNAVAILABLE",
        _ => "INTERNAL_SERVER_ERROR",
    }
}

/// The `ms` package's short format ("1s", "2m", "500ms").
fn human_ms(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms >= size {
            return format!("{}{unit}", (ms as f64 / size as f64).round() as u64);
        }
    }
    format!("{ms}ms")
}

/// Requests seen, by method and route pattern (e.g. `("GET", "/items/{collection}")`;
/// requests matching no route count under `"<unmatched>"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: u64,
    pub by_route: BTreeMap<(String, String), u64>,
}

impl Stats {
    /// Requests seen for a method and route pattern.
    pub fn count(&self, method: &str, route: &str) -> u64 {
        self.by_route
            .get(&(method.to_string(), route.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn record(&mut self, method: &str, route: &str) {
        self.total += 1;
        *self
            .by_route
            .entry((method.to_string(), route.to_string()))
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_is_used_up_in_order() {
        let mut book = FaultBook::default();
        book.add(Fault::rate_limited(2, 3), FaultScope::method("GET"));
        assert!(book.arm("POST", "/items/a", 0).fail.is_none());
        let e = book.arm("GET", "/items/a", 0).fail.unwrap();
        assert_eq!(e.code(), "REQUESTS_EXCEEDED");
        assert_eq!(e.to_string(), "Too many requests, retry after 3s.");
        assert!(book.arm("GET", "/x", 0).fail.is_some());
        assert!(book.arm("GET", "/x", 0).fail.is_none());
        assert_eq!(book.pending(), 0);
    }

    #[test]
    fn commit_then_fail_counts_only_consumed_requests() {
        let mut book = FaultBook::default();
        book.add(
            Fault::CommitThenFail {
                count: 1,
                status: 503,
            },
            FaultScope::default().path("/items"),
        );
        let (id, status) = book.arm("PATCH", "/items/a", 0).commit_then_fail.unwrap();
        assert_eq!(status, 503);
        assert!(book.consume(id));
        assert!(!book.consume(id));
        assert_eq!(human_ms(0), "0ms");
    }
}
