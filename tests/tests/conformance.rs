//! Conformance of the reference server with a real Directus.
//!
//! The same sequence of requests goes, over raw HTTP, to a real Directus and to a reference
//! server started in-process, each holding an identically created collection (made with
//! `cli::remote_setup`). For every request the HTTP status, `errors[0].extensions.code`
//! and the JSON answer must agree, after normalising what legitimately differs between two
//! servers: timestamps, keys and ids the servers generate, tokens. So must the `Content-Type`,
//! and both must send a `Date`. Some behaviours deltasync builds on are also checked as facts
//! on both sides (what the cursor holds after a create and an update, identical stamps for a
//! batch update, what the activity log records).
//!
//! Differences that are deliberate, or cannot reasonably be matched, are listed in
//! [`EXCEPTIONS`] (differences in an answer) or asserted with
//! [`Conformance::known_difference`] (differences in behaviour), each with the reason; each
//! must still occur, so neither can go stale.
//!
//! Runs when `DELTASYNC_TEST_DIRECTUS` holds the URL of a Directus 12.4 (`scripts/directus up`,
//! then `eval "$(scripts/directus env)"`) and `DELTASYNC_TEST_DIRECTUS_TOKEN` an admin token
//! of it; fails when they are set and the server cannot be used. `/auth/login` is checked
//! with `DELTASYNC_TEST_DIRECTUS_EMAIL` and `DELTASYNC_TEST_DIRECTUS_PASSWORD`, by default the
//! admin that `scripts/directus` bootstraps. Without `DELTASYNC_TEST_DIRECTUS` nothing runs.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use deltasync::{Auth as RemoteAuth, CollectionConfig, DirectusClient, FieldType, Secret};
use refserver::{Clock, Options, ServerHandle};
use reqwest::Method;
use serde_json::{Value, json};

/// Index of the real Directus in per-server arrays.
const DIRECTUS: usize = 0;
/// Index of the reference server in per-server arrays.
const REFSERVER: usize = 1;

/// Known differences: `(step, path prefix, why)`. A difference is excused when it was found
/// at `step` under `path`; every entry must excuse at least one difference.
const EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "POST a body that is not JSON",
        "/errors/0/message",
        "the wording of a JSON syntax error is the parser's own (Node's JSON.parse there, \
         serde_json here); status, code and shape agree",
    ),
    (
        "POST a body that is not JSON",
        "/errors/0/extensions/reason",
        "same wording as the message, see above",
    ),
];

/// Who a request is sent as.
#[derive(Debug, Clone)]
enum Auth {
    /// The server's static admin token.
    Admin,
    /// No `Authorization` header (the public role).
    Anonymous,
    /// This bearer token, on both servers.
    Bearer(String),
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    /// Sent as is with `Content-Type: application/json`.
    Raw(String),
}

/// One request, as built for one server.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Body,
    auth: Auth,
    headers: Vec<(&'static str, String)>,
}

impl Req {
    fn new(method: Method, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Body::None,
            auth: Auth::Admin,
            headers: Vec::new(),
        }
    }

    fn get(path: impl Into<String>) -> Req {
        Req::new(Method::GET, path)
    }

    fn post(path: impl Into<String>, body: Value) -> Req {
        Req::new(Method::POST, path).json(body)
    }

    fn patch(path: impl Into<String>, body: Value) -> Req {
        Req::new(Method::PATCH, path).json(body)
    }

    fn delete(path: impl Into<String>) -> Req {
        Req::new(Method::DELETE, path)
    }

    fn q(mut self, key: &str, value: impl ToString) -> Req {
        self.query.push((key.to_owned(), value.to_string()));
        self
    }

    fn json(mut self, body: Value) -> Req {
        self.body = Body::Json(body);
        self
    }

    fn raw(mut self, body: impl Into<String>) -> Req {
        self.body = Body::Raw(body.into());
        self
    }

    fn auth(mut self, auth: Auth) -> Req {
        self.auth = auth;
        self
    }

    /// The `Idempotency-Key` deltasync sends with its writes (Directus ignores it).
    fn idempotent(mut self) -> Req {
        self.headers
            .push(("Idempotency-Key", uuid::Uuid::new_v4().to_string()));
        self
    }
}

/// An answer: the status, the headers that are compared, and the body as JSON (`Null` when
/// empty, a string when not JSON).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    /// Whether a `Date` header in HTTP format came with it (deltasync estimates clock skew and
    /// settles its pull cursor from it).
    dated: bool,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// `data` as a list of rows (one row when `data` is an object).
    fn rows(&self) -> Vec<Value> {
        match self.data() {
            Value::Array(rows) => rows.clone(),
            Value::Null => Vec::new(),
            row => vec![row.clone()],
        }
    }
}

/// One of the two servers.
#[derive(Debug)]
struct Side {
    label: &'static str,
    base: String,
    token: String,
    /// Values taken from earlier answers of this server (stamps, tokens, activity ids).
    vars: HashMap<&'static str, Value>,
}

impl Side {
    fn var(&self, name: &str) -> &Value {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{}: no value {name} captured", self.label))
    }

    fn text(&self, name: &str) -> String {
        match self.var(name) {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// How two answers are compared beyond status and error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Normalised values must be equal.
    Values,
    /// Only keys, value types and array lengths must agree (settings of the installation).
    Shape,
}

/// A difference between the servers.
#[derive(Debug, Clone)]
struct Diff {
    step: String,
    path: String,
    directus: String,
    refserver: String,
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}\n    directus:  {}\n    refserver: {}",
            self.step, self.path, self.directus, self.refserver
        )
    }
}

/// What the environment names.
#[derive(Debug)]
struct Target {
    url: String,
    token: String,
    email: String,
    password: String,
}

fn target() -> Option<Target> {
    let url = std::env::var("DELTASYNC_TEST_DIRECTUS")
        .ok()
        .filter(|u| !u.is_empty())?;
    let token = std::env::var("DELTASYNC_TEST_DIRECTUS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            panic!("DELTASYNC_TEST_DIRECTUS is set but DELTASYNC_TEST_DIRECTUS_TOKEN is not")
        });
    let or = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    Some(Target {
        url: url.trim_end_matches('/').to_owned(),
        token,
        email: or("DELTASYNC_TEST_DIRECTUS_EMAIL", "admin@example.com"),
        password: or(
            "DELTASYNC_TEST_DIRECTUS_PASSWORD",
            "deltasync-admin-password",
        ),
    })
}

/// Both servers, the keys the test chose, and the differences found so far.
struct Conformance {
    http: reqwest::Client,
    sides: [Side; 2],
    reference: ServerHandle,
    /// Keys chosen by the test: kept as they are when normalising (others become `<uuid>`).
    own_keys: BTreeSet<String>,
    diffs: Vec<Diff>,
    steps: Vec<String>,
}

/// A JSON value in one line, cut to a readable length.
fn show(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() > 400 {
        format!("{}…", text.chars().take(400).collect::<String>())
    } else {
        text
    }
}

/// `2026-11-22T04:20:53.393Z`: a `timestamp` as Directus writes it.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Conformance {
    async fn start(target: &Target) -> Conformance {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent("deltasync-conformance")
            .build()
            .expect("http client");
        let url = &target.url;
        let ping = http
            .get(format!("{url}/server/ping"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("DELTASYNC_TEST_DIRECTUS is set but {url} does not answer: {e}")
            });
        assert!(
            ping.status().is_success(),
            "DELTASYNC_TEST_DIRECTUS is set but {url}/server/ping answers {}",
            ping.status()
        );
        let info = http
            .get(format!("{url}/server/info"))
            .bearer_auth(&target.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}/server/info: {e}"));
        let status = info.status();
        let info: Value = info.json().await.unwrap_or(Value::Null);
        let limits = &info["data"]["queryLimit"];
        assert!(
            status.is_success() && limits.is_object(),
            "DELTASYNC_TEST_DIRECTUS_TOKEN is not an admin token of {url}: /server/info answers \
             {status} {}",
            show(&info)
        );
        // The reference server gets the same QUERY_LIMIT_MAX, so that limits compare.
        let max = limits["max"].as_i64().unwrap_or(-1);
        let reference = refserver::start(Options {
            admin_email: target.email.clone(),
            admin_password: target.password.clone(),
            query_limit_max: u32::try_from(max).ok().filter(|m| *m > 0),
            ..Default::default()
        })
        .await
        .expect("reference server starts");
        // A clock moved by hand before every request: no two requests share a millisecond,
        // as on a real server where each request takes a few.
        reference
            .state()
            .set_clock(Clock::Manual(chrono::Utc::now()));
        let sides = [
            Side {
                label: "directus",
                base: url.clone(),
                token: target.token.clone(),
                vars: HashMap::new(),
            },
            Side {
                label: "refserver",
                base: reference.url(),
                token: reference.admin_token().to_owned(),
                vars: HashMap::new(),
            },
        ];
        Conformance {
            http,
            sides,
            reference,
            own_keys: BTreeSet::new(),
            diffs: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// `n` fresh keys in ascending order, remembered as the test's own.
    fn keys(&mut self, n: usize) -> Vec<String> {
        let mut keys: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        keys.sort();
        self.own_keys.extend(keys.iter().cloned());
        keys
    }

    /// Creates `config` on both servers through `cli::remote_setup`.
    async fn create_collection(&self, config: &CollectionConfig) {
        for side in &self.sides {
            let remote = schema::RemoteConfig::new(
                side.base.clone(),
                RemoteAuth::Token(Secret::new(side.token.clone())),
            );
            let client = DirectusClient::new(&remote).expect("client");
            cli::remote_setup::create_collection(&client, config)
                .await
                .unwrap_or_else(|e| panic!("{}: cannot create {}: {e}", side.label, config.name));
        }
    }

    async fn send(&self, side: &Side, req: &Req) -> Answer {
        let mut request = self
            .http
            .request(req.method.clone(), format!("{}{}", side.base, req.path));
        if !req.query.is_empty() {
            request = request.query(&req.query);
        }
        for (name, value) in &req.headers {
            request = request.header(*name, value);
        }
        request = match &req.auth {
            Auth::Admin => request.bearer_auth(&side.token),
            Auth::Anonymous => request,
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        request = match &req.body {
            Body::None => request,
            Body::Json(v) => request.json(v),
            Body::Raw(text) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text.clone()),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {} {}: {e}", side.label, req.method, req.path));
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let dated = header(reqwest::header::DATE)
            .is_some_and(|d| chrono::DateTime::parse_from_rfc2822(&d).is_ok());
        let bytes = response.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            content_type,
            dated,
            body,
        }
    }

    /// Sends the request `build` makes for each server, and compares the answers.
    async fn step(
        &mut self,
        name: &str,
        check: Check,
        build: impl Fn(&Side) -> Req,
    ) -> [Answer; 2] {
        self.steps.push(name.to_owned());
        let real = self
            .send(&self.sides[DIRECTUS], &build(&self.sides[DIRECTUS]))
            .await;
        self.reference
            .state()
            .advance_clock(Duration::from_millis(7));
        let reference = self
            .send(&self.sides[REFSERVER], &build(&self.sides[REFSERVER]))
            .await;
        self.compare(name, check, &real, &reference);
        [real, reference]
    }

    /// The same request to both servers.
    async fn same(&mut self, name: &str, req: Req) -> [Answer; 2] {
        self.step(name, Check::Values, |_| req.clone()).await
    }

    fn diff(&mut self, step: &str, path: &str, directus: String, refserver: String) {
        self.diffs.push(Diff {
            step: step.to_owned(),
            path: path.to_owned(),
            directus,
            refserver,
        });
    }

    fn compare(&mut self, step: &str, check: Check, real: &Answer, reference: &Answer) {
        if real.status != reference.status {
            self.diff(
                step,
                "status",
                format!("{} {}", real.status, show(&real.body)),
                format!("{} {}", reference.status, show(&reference.body)),
            );
            return;
        }
        if real.content_type != reference.content_type {
            self.diff(
                step,
                "header content-type",
                format!("{:?}", real.content_type),
                format!("{:?}", reference.content_type),
            );
        }
        if !(real.dated && reference.dated) {
            self.diff(
                step,
                "header date",
                real.dated.to_string(),
                reference.dated.to_string(),
            );
        }
        if real.code() != reference.code() {
            self.diff(
                step,
                "/errors/0/extensions/code",
                format!("{:?}", real.code()),
                format!("{:?}", reference.code()),
            );
        }
        let (a, b) = (self.normalize(&real.body), self.normalize(&reference.body));
        let mut found = Vec::new();
        match check {
            Check::Values => diff_values("", &a, &b, &mut found),
            Check::Shape => diff_shapes("", &a, &b, &mut found),
        }
        for (path, x, y) in found {
            self.diff(step, &path, x, y);
        }
    }

    /// A behaviour both servers must show: `expected`, computed from each server's answers.
    fn fact(&mut self, step: &str, what: &str, expected: Value, got: [Value; 2]) {
        if got.iter().any(|g| *g != expected) {
            self.diff(
                step,
                &format!("fact: {what} (expected {})", show(&expected)),
                show(&got[DIRECTUS]),
                show(&got[REFSERVER]),
            );
        }
    }

    /// A documented difference: each server must show its own `expected` value, so the
    /// exception goes stale (and fails) when the reference server changes.
    fn known_difference(
        &mut self,
        step: &str,
        what: &str,
        why: &str,
        expected: [Value; 2],
        got: [Value; 2],
    ) {
        if got == expected {
            println!("excused: [{step}] {what}: {why}");
        } else {
            self.diff(
                step,
                &format!(
                    "known difference: {what} (expected {} on Directus, {} on the reference \
                     server; if they now agree, remove the exception)",
                    show(&expected[DIRECTUS]),
                    show(&expected[REFSERVER])
                ),
                show(&got[DIRECTUS]),
                show(&got[REFSERVER]),
            );
        }
    }

    /// Replaces what legitimately differs between two servers by placeholders.
    fn normalize(&self, v: &Value) -> Value {
        self.norm(None, v)
    }

    fn norm(&self, key: Option<&str>, v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.norm(Some(k), v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|x| self.norm(key, x)).collect()),
            // Activity, revision and field-meta ids count everything the server ever logged.
            Value::Number(n) if n.is_i64() && matches!(key, Some("id" | "revisions")) => {
                json!("<int>")
            }
            Value::String(_) if matches!(key, Some("access_token" | "refresh_token")) => {
                json!("<token>")
            }
            Value::String(s) if is_timestamp(s) => json!("<timestamp>"),
            Value::String(s) if is_uuid(s) && !self.own_keys.contains(s) => json!("<uuid>"),
            other => other.clone(),
        }
    }

    /// Removes the excused differences; panics on the rest and on exceptions gone stale.
    fn finish(mut self) {
        let mut stale = Vec::new();
        for (step, path, why) in EXCEPTIONS {
            let before = self.diffs.len();
            self.diffs
                .retain(|d| !(d.step == *step && d.path.starts_with(path)));
            if self.diffs.len() == before {
                stale.push(format!("[{step}] {path}: {why}"));
            } else {
                println!("excused: [{step}] {path}: {why}");
            }
        }
        println!(
            "{} requests compared between Directus and the reference server",
            self.steps.len()
        );
        let mut report = String::new();
        for d in &self.diffs {
            report.push_str(&format!("{d}\n"));
        }
        assert!(
            self.diffs.is_empty() && stale.is_empty(),
            "the reference server differs from Directus in {} place(s):\n{report}\
             exceptions that no longer occur (remove them): {stale:#?}",
            self.diffs.len()
        );
    }
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_values(&p, u, v, out),
                    (u, v) => out.push((p, absent(u), absent(v))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}/{i}"), u, v, out);
            }
        }
        _ if a == b => {}
        _ => out.push((path.to_owned(), show(a), show(b))),
    }
}

fn diff_shapes(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_shapes(&p, u, v, out),
                    (u, v) => out.push((p, absent(u), absent(v))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_shapes(&format!("{path}/{i}"), u, v, out);
            }
        }
        _ if kind(a) == kind(b) && !a.is_array() => {}
        _ => out.push((path.to_owned(), show(a), show(b))),
    }
}

fn absent(v: Option<&Value>) -> String {
    v.map_or_else(|| "<absent>".to_owned(), show)
}

/// `{"filter": …}` as the query parameter value deltasync sends.
fn filter(f: Value) -> String {
    f.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_server_answers_like_directus() {
    let Some(target) = target() else {
        println!(
            "conformance with a real Directus not run: DELTASYNC_TEST_DIRECTUS is not set \
             (scripts/directus up; eval \"$(scripts/directus env)\")"
        );
        return;
    };
    // The reference server answers like one version on one database: another differs in
    // ways deltasync does not depend on (server info fields, collection meta, column types),
    // which the interop run against it covers.
    let site = tests::Site::directus().await.expect("the target answers");
    let info = site.call(Method::GET, "/server/info", &[], None).await;
    let health = site.call(Method::GET, "/server/health", &[], None).await;
    let on_sqlite = health["checks"]
        .as_object()
        .is_some_and(|checks| checks.keys().any(|k| k.starts_with("sqlite3:")));
    if info["data"]["version"] != json!("12.4.0") || !on_sqlite {
        println!(
            "conformance not run: the reference server answers like Directus 12.4.0 on SQLite, \
             and {} runs {} on another database or version",
            target.url, info["data"]["version"]
        );
        return;
    }
    let mut t = Conformance::start(&target).await;
    let name = format!(
        "conformance_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    server_and_auth(&mut t, &target).await;
    let config = CollectionConfig::new(&name)
        .with_field("title", FieldType::String)
        .with_field("views", FieldType::Integer)
        .with_field("meta", FieldType::Json)
        .with_field("flag", FieldType::Boolean)
        .with_relation("owner", FieldType::Uuid, &name);
    t.create_collection(&config).await;
    schema_endpoints(&mut t, &name).await;
    let keys = t.keys(12);
    creates(&mut t, &name, &keys).await;
    updates(&mut t, &name, &keys).await;
    reads(&mut t, &name, &keys).await;
    operators(&mut t, &name, &keys).await;
    bulk(&mut t, &name).await;
    deletes(&mut t, &name, &keys).await;
    activity(&mut t, &name, &keys).await;
    errors(&mut t, &name, &keys).await;

    // The collection is this test's own; the reference server goes away with the test.
    let dropped = t
        .send(
            &t.sides[DIRECTUS],
            &Req::delete(format!("/collections/{name}")),
        )
        .await;
    assert!(
        dropped.status < 300,
        "dropping {name} on Directus: {}",
        dropped.status
    );
    t.finish();
}

/// `/server/*` and `/auth/*`.
async fn server_and_auth(t: &mut Conformance, target: &Target) {
    t.same(
        "GET /server/ping",
        Req::get("/server/ping").auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "GET /server/ping with a token that is not valid",
        Req::get("/server/ping").auth(Auth::Bearer("not-a-valid-token".into())),
    )
    .await;
    // Project settings and feature switches are the installation's: shapes only, plus the
    // limits and the version deltasync reads.
    let info = t
        .step("GET /server/info", Check::Shape, |_| {
            Req::get("/server/info")
        })
        .await;
    let limits = info.clone().map(|a| a.data()["queryLimit"].clone());
    let version = info.map(|a| a.data()["version"].clone());
    t.fact(
        "GET /server/info",
        "queryLimit equal on both",
        limits[DIRECTUS].clone(),
        limits,
    );
    t.fact("GET /server/info", "version", json!("12.4.0"), version);
    t.step("GET /server/info without a token", Check::Shape, |_| {
        Req::get("/server/info").auth(Auth::Anonymous)
    })
    .await;

    let login = json!({"email": target.email, "password": target.password, "mode": "json"});
    let session = t
        .same(
            "POST /auth/login",
            Req::post("/auth/login", login.clone()).auth(Auth::Anonymous),
        )
        .await;
    if session[DIRECTUS].status == 401 {
        panic!(
            "POST /auth/login on {} refuses {}: set DELTASYNC_TEST_DIRECTUS_EMAIL and \
             DELTASYNC_TEST_DIRECTUS_PASSWORD to an admin login of that server",
            target.url, target.email
        );
    }
    for (side, answer) in t.sides.iter_mut().zip(&session) {
        side.vars
            .insert("access", answer.data()["access_token"].clone());
        side.vars
            .insert("refresh", answer.data()["refresh_token"].clone());
    }
    let refreshed = t
        .step("POST /auth/refresh (mode json)", Check::Values, |s| {
            Req::post(
                "/auth/refresh",
                json!({"refresh_token": s.text("refresh"), "mode": "json"}),
            )
            .auth(Auth::Anonymous)
        })
        .await;
    for (side, answer) in t.sides.iter_mut().zip(&refreshed) {
        side.vars
            .insert("access", answer.data()["access_token"].clone());
    }
    t.fact(
        "POST /auth/refresh (mode json)",
        "the refresh token rotates",
        json!(true),
        [DIRECTUS, REFSERVER]
            .map(|i| json!(refreshed[i].data()["refresh_token"] != *t.sides[i].var("refresh"))),
    );
    t.step(
        "POST /auth/refresh with a used refresh token",
        Check::Values,
        |s| {
            Req::post(
                "/auth/refresh",
                json!({"refresh_token": s.text("refresh"), "mode": "json"}),
            )
            .auth(Auth::Anonymous)
        },
    )
    .await;
    t.same(
        "POST /auth/refresh without a token",
        Req::post("/auth/refresh", json!({"mode": "json"})).auth(Auth::Anonymous),
    )
    .await;
    let mut wrong = login.clone();
    wrong["password"] = json!("not the password");
    t.same(
        "POST /auth/login with a wrong password",
        Req::post("/auth/login", wrong).auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "POST /auth/login without a password",
        Req::post(
            "/auth/login",
            json!({"email": target.email, "mode": "json"}),
        )
        .auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "POST /auth/login with a static token that is not valid",
        Req::post("/auth/login", login).auth(Auth::Bearer("not-a-valid-token".into())),
    )
    .await;
}

/// `/fields/c` and `/collections/c`, for what `deltasync validate --remote` reads.
async fn schema_endpoints(t: &mut Conformance, c: &str) {
    // A single-purpose `date-updated` stamp, to compare with the cursor.
    t.same(
        "POST /fields/c (date-updated timestamp)",
        Req::post(
            format!("/fields/{c}"),
            json!({"field": "date_updated", "type": "timestamp",
                   "meta": {"special": ["date-updated"]}, "schema": {}}),
        ),
    )
    .await;
    // A boolean without `cast-boolean` (deltasync always adds it): SQLite answers 1 and 0.
    t.same(
        "POST /fields/c (boolean without cast-boolean)",
        Req::post(
            format!("/fields/{c}"),
            json!({"field": "plain_flag", "type": "boolean", "meta": {}, "schema": {}}),
        ),
    )
    .await;
    t.same("GET /fields/c", Req::get(format!("/fields/{c}")))
        .await;
    t.same(
        "GET /fields/c/last_modified",
        Req::get(format!("/fields/{c}/last_modified")),
    )
    .await;
    t.same("GET /collections/c", Req::get(format!("/collections/{c}")))
        .await;
    t.same(
        "GET /fields/<unknown collection>",
        Req::get("/fields/no_such_collection_here"),
    )
    .await;
    t.same(
        "GET /collections/<unknown collection>",
        Req::get("/collections/no_such_collection_here"),
    )
    .await;
}

/// Stamps from rows: `id -> last_modified`.
fn stamps(answer: &Answer) -> Vec<(String, Value)> {
    answer
        .rows()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["last_modified"].clone(),
            )
        })
        .collect()
}

async fn creates(t: &mut Conformance, c: &str, k: &[String]) {
    let items = format!("/items/{c}");
    let step = "POST /items/c single, fields=id,last_modified,date_updated";
    let created = t
        .same(
            step,
            Req::post(
                &items,
                json!({"id": k[0], "title": "first", "views": 1, "meta": {"a": [1, 2]},
                       "flag": true, "plain_flag": true, "owner": k[11]}),
            )
            .q("fields", "id,last_modified,date_updated"),
        )
        .await;
    t.fact(
        step,
        "the cursor (date-created + date-updated) is stamped on create",
        json!(true),
        created
            .clone()
            .map(|a| json!(a.data()["last_modified"].as_str().is_some_and(is_timestamp))),
    );
    t.fact(
        step,
        "a date-updated-only field is NULL on create",
        Value::Null,
        created.clone().map(|a| a.data()["date_updated"].clone()),
    );
    for (side, answer) in t.sides.iter_mut().zip(&created) {
        side.vars
            .insert("k0_created", answer.data()["last_modified"].clone());
    }

    t.same(
        "POST /items/c single without fields",
        Req::post(
            &items,
            json!({"id": k[1], "title": "second", "views": 2, "meta": null, "flag": false}),
        ),
    )
    .await;

    let step = "POST /items/c batch, fields=id,last_modified";
    let batch = t
        .same(
            step,
            // Request order differs from key order: the answer comes back in key order.
            Req::post(
                &items,
                json!([{"id": k[4], "title": "e"}, {"id": k[2], "title": "c"},
                       {"id": k[3], "title": "d", "views": 3}]),
            )
            .q("fields", "id,last_modified")
            .idempotent(),
        )
        .await;
    t.fact(
        step,
        "a batch create answers in primary-key order",
        json!([k[2], k[3], k[4]]),
        batch
            .clone()
            .map(|a| json!(stamps(&a).into_iter().map(|(id, _)| id).collect::<Vec<_>>())),
    );

    let step = "POST /items/c stamps the cursor over a client value";
    let forced = t
        .same(
            step,
            Req::post(
                &items,
                json!({"id": k[5], "title": "f", "last_modified": "2000-01-01T00:00:00.000Z",
                       "date_updated": "2000-01-01T00:00:00.000Z"}),
            )
            .q("fields", "id,last_modified,date_updated"),
        )
        .await;
    t.fact(
        step,
        "the client's cursor value is overwritten",
        json!(true),
        forced
            .clone()
            .map(|a| json!(a.data()["last_modified"] != "2000-01-01T00:00:00.000Z")),
    );
    t.fact(
        step,
        "a date-updated-only field keeps the client's value on create",
        json!("2000-01-01T00:00:00.000Z"),
        forced.map(|a| a.data()["date_updated"].clone()),
    );

    t.same(
        "POST /items/c with an existing key",
        Req::post(&items, json!({"id": k[0], "title": "again"})),
    )
    .await;
    t.same(
        "POST /items/c batch with one existing key",
        Req::post(
            &items,
            json!([{"id": k[6], "title": "new"}, {"id": k[1], "title": "dup"}]),
        ),
    )
    .await;
    t.same(
        "GET /items/c the rolled-back batch row",
        Req::get(&items)
            .q("filter", filter(json!({"id": {"_eq": k[6]}})))
            .q("fields", "id"),
    )
    .await;
    t.same(
        "POST /items/c without a key (generated uuid)",
        Req::post(&items, json!({"title": "generated"})).q("fields", "id,title"),
    )
    .await;
    t.same(
        "POST /items/c with a key that is not a uuid",
        Req::post(&items, json!({"id": "not-a-uuid", "title": "x"})),
    )
    .await;

    // Directus on SQLite stores what the column's type affinity makes of a value: no
    // type check on write.
    t.same(
        "POST /items/c a string into an integer field",
        Req::post(&items, json!({"id": k[7], "views": "many"})).q("fields", "id,views"),
    )
    .await;
    t.same(
        "POST /items/c wrongly typed values",
        Req::post(
            &items,
            json!({"id": k[8], "views": "12", "title": 12.5, "flag": "yes",
                   "meta": "not json", "owner": "not-a-uuid"}),
        )
        .q("fields", "id,views,title,flag,meta,owner"),
    )
    .await;
    t.same(
        "POST /items/c a date that does not parse",
        Req::post(&items, json!({"id": k[9], "date_updated": "not a date"})),
    )
    .await;
    t.same(
        "POST /items/c a body over MAX_PAYLOAD_SIZE",
        Req::post(&items, json!({"id": k[9], "title": "x".repeat(1_100_000)})),
    )
    .await;
    t.same(
        "POST a body that is not JSON",
        Req::new(Method::POST, &items).raw("{not json"),
    )
    .await;
}

async fn updates(t: &mut Conformance, c: &str, k: &[String]) {
    let items = format!("/items/{c}");
    let step = "PATCH /items/c/<key>, fields=id,last_modified,date_updated";
    let updated = t
        .same(
            step,
            Req::patch(
                format!("{items}/{}", k[0]),
                json!({"title": "first, edited"}),
            )
            .q("fields", "id,last_modified,date_updated"),
        )
        .await;
    t.fact(
        step,
        "the cursor moves on update",
        json!(true),
        [DIRECTUS, REFSERVER].map(|i| {
            let after = updated[i].data()["last_modified"].as_str().unwrap_or("");
            let before = t.sides[i].text("k0_created");
            json!(is_timestamp(after) && after > before.as_str())
        }),
    );
    t.fact(
        step,
        "a date-updated-only field is stamped on update",
        json!(true),
        updated
            .clone()
            .map(|a| json!(a.data()["date_updated"].as_str().is_some_and(is_timestamp))),
    );

    let step = "PATCH /items/c by keys, fields=id,last_modified";
    let batch = t
        .same(
            step,
            Req::patch(&items, json!({"keys": [k[2], k[3]], "data": {"views": 30}}))
                .q("fields", "id,last_modified"),
        )
        .await;
    t.fact(
        step,
        "a batch update stamps every row identically",
        json!(true),
        batch.map(|a| {
            let s = stamps(&a);
            json!(s.len() == 2 && s[0].1 == s[1].1 && s[0].1.is_string())
        }),
    );

    // Compare-and-set: the row's current stamp as each server has it.
    let current = t
        .same(
            "GET /items/c/<key> fields=id,last_modified",
            Req::get(format!("{items}/{}", k[1])).q("fields", "id,last_modified"),
        )
        .await;
    for (side, answer) in t.sides.iter_mut().zip(&current) {
        side.vars
            .insert("k1_stamp", answer.data()["last_modified"].clone());
    }
    let cas = |s: &Side| {
        Req::patch(
            &items,
            json!({"query": {"filter": {"_and": [{"id": {"_eq": k[1]}},
                                                 {"last_modified": {"_eq": s.var("k1_stamp")}}]},
                             "limit": -1},
                   "data": {"title": "second, edited"}}),
        )
        .q("fields", "id,last_modified")
        .idempotent()
    };
    let step = "PATCH /items/c by query matching one row (compare-and-set)";
    let swapped = t.step(step, Check::Values, cas).await;
    for (side, answer) in t.sides.iter_mut().zip(&swapped) {
        side.vars
            .insert("k1_swapped", answer.data()[0]["last_modified"].clone());
    }
    t.step(
        "PATCH /items/c by query matching no row (stale stamp)",
        Check::Values,
        cas,
    )
    .await;
    t.same(
        "PATCH /items/c by query matching no row, without fields",
        Req::patch(
            &items,
            json!({"query": {"filter": {"id": {"_eq": k[10]}}, "limit": -1},
                   "data": {"title": "nobody"}}),
        ),
    )
    .await;
    t.same(
        "PATCH /items/c batch array, fields=id,title",
        Req::patch(
            &items,
            json!([{"id": k[2], "title": "c2"}, {"id": k[3], "title": "d2"}]),
        )
        .q("fields", "id,title"),
    )
    .await;
    t.same(
        "PATCH /items/c/<key> a string into an integer field",
        Req::patch(
            format!("{items}/{}", k[7]),
            json!({"views": "x1", "flag": 1}),
        )
        .q("fields", "id,views,flag"),
    )
    .await;
    t.same(
        "PATCH /items/c/<missing key> as admin",
        Req::patch(format!("{items}/{}", k[10]), json!({"title": "ghost"})),
    )
    .await;
    t.same(
        "PATCH /items/c/<missing key> as admin, fields=id",
        Req::patch(format!("{items}/{}", k[10]), json!({"title": "ghost"})).q("fields", "id"),
    )
    .await;
    t.same(
        "PATCH /items/c/<key that is not a uuid>",
        Req::patch(format!("{items}/not-a-uuid"), json!({"title": "x"})),
    )
    .await;
    t.same(
        "PATCH /items/c without query or keys",
        Req::patch(&items, json!({"data": {"title": "x"}})),
    )
    .await;
    t.same(
        "PATCH /items/c with keys but no data",
        Req::patch(&items, json!({"keys": [k[0]]})),
    )
    .await;
}

async fn reads(t: &mut Conformance, c: &str, k: &[String]) {
    let items = format!("/items/{c}");
    let own = json!({"id": {"_in": k}});
    t.same("GET /items/c/<key>", Req::get(format!("{items}/{}", k[0])))
        .await;
    t.same(
        "GET /items/c/<missing key>",
        Req::get(format!("{items}/{}", k[10])),
    )
    .await;
    t.same(
        "GET /items/c/<key that is not a uuid>",
        Req::get(format!("{items}/not-a-uuid")),
    )
    .await;
    // Pull pages: rows stamped at or after the compare-and-set, in cursor order.
    for (step, op, offset) in [
        ("GET /items/c _gte cursor page 1", "_gte", 0),
        ("GET /items/c _gte cursor page 2", "_gte", 2),
        ("GET /items/c _gt cursor", "_gt", 0),
    ] {
        t.step(step, Check::Values, |s| {
            Req::get(&items)
                .q(
                    "filter",
                    filter(json!({"last_modified": {op: s.var("k1_swapped")}})),
                )
                .q("sort", "last_modified,id")
                .q("fields", "id,last_modified,title")
                .q("limit", 2)
                .q("offset", offset)
        })
        .await;
    }
    t.same(
        "GET /items/c _nnull cursor with meta",
        Req::get(&items)
            .q(
                "filter",
                filter(json!({"_and": [{"last_modified": {"_nnull": true}}, own]})),
            )
            .q("sort", "id")
            .q("fields", "id")
            .q("meta", "total_count,filter_count")
            .q("limit", 3),
    )
    .await;
    t.same(
        "GET /items/c _in keys (read back)",
        Req::get(&items)
            .q(
                "filter",
                filter(json!({"id": {"_in": [k[3], k[0], k[10]]}})),
            )
            .q("sort", "id")
            .q("fields", "id,last_modified,title,views,meta,flag,owner")
            .q("limit", 3)
            .q("offset", 0),
    )
    .await;
    t.same(
        "GET /items/c _gt on the uuid key",
        Req::get(&items)
            .q("filter", filter(json!({"id": {"_gt": k[0]}})))
            .q("fields", "id"),
    )
    .await;
    t.same(
        "GET /items/c limit=-1",
        Req::get(&items)
            .q("filter", filter(own.clone()))
            .q("sort", "-id")
            .q("fields", "id")
            .q("limit", -1),
    )
    .await;
    let max = t.reference.state().options().query_limit_max;
    match max {
        Some(max) => {
            t.same(
                "GET /items/c limit above QUERY_LIMIT_MAX",
                Req::get(&items)
                    .q("fields", "id")
                    .q("limit", u64::from(max) + 1),
            )
            .await;
        }
        None => {
            println!(
                "Directus reports no QUERY_LIMIT_MAX (queryLimit.max = -1): a limit far above \
                 the default page size is compared instead of one above the maximum"
            );
            t.same(
                "GET /items/c limit far above the default page size",
                Req::get(&items)
                    .q("filter", filter(own.clone()))
                    .q("sort", "id")
                    .q("fields", "id")
                    .q("limit", 100_000),
            )
            .await;
        }
    }
    t.same("GET /items/c limit=-2", Req::get(&items).q("limit", -2))
        .await;
    t.same("GET /items/c limit=abc", Req::get(&items).q("limit", "abc"))
        .await;
    t.same("GET /items/c offset=-1", Req::get(&items).q("offset", -1))
        .await;
    t.same(
        "GET /items/c filter on the cursor with _eq",
        Req::get(&items)
            .q(
                "filter",
                filter(
                    json!({"_and": [{"last_modified": {"_eq": "2000-01-01T00:00:00.000Z"}}, own]}),
                ),
            )
            .q("fields", "id"),
    )
    .await;
}

/// More rows than a page: default page size, and by-query writes without `"limit": -1`.
async fn bulk(t: &mut Conformance, c: &str) {
    let items = format!("/items/{c}");
    let keys = t.keys(105);
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| json!({"id": k, "title": "bulk"}))
        .collect();
    let step = "POST /items/c batch of 105 rows";
    let created = t
        .same(
            step,
            Req::post(&items, json!(rows)).q("fields", "id,last_modified"),
        )
        .await;
    t.known_difference(
        step,
        "distinct cursor stamps in a batch create",
        "Directus reads the clock for each row it creates, so a batch gets as many stamps as \
         milliseconds went by; the reference server stamps a request once, from the clock tests \
         set by hand. Either way stamps follow the creation order, and deltasync must cope with \
         both (ties and no ties)",
        [json!("more than one"), json!(1)],
        created.map(|a| {
            let distinct: BTreeSet<String> =
                stamps(&a).into_iter().map(|(_, t)| t.to_string()).collect();
            match distinct.len() {
                n if n > 1 => json!("more than one"),
                n => json!(n),
            }
        }),
    );
    let bulk = json!({"title": {"_eq": "bulk"}});
    t.same(
        "GET /items/c without limit (default page size)",
        Req::get(&items)
            .q("filter", filter(bulk.clone()))
            .q("sort", "id")
            .q("fields", "id"),
    )
    .await;
    t.same(
        "PATCH /items/c by query without limit",
        Req::patch(
            &items,
            json!({"query": {"filter": bulk}, "data": {"views": 1}}),
        )
        .q("fields", "id"),
    )
    .await;
    let step = "PATCH /items/c by query with limit -1";
    let all = t
        .same(
            step,
            Req::patch(
                &items,
                json!({"query": {"filter": bulk, "limit": -1}, "data": {"views": 2}}),
            )
            .q("fields", "id,last_modified"),
        )
        .await;
    t.fact(
        step,
        "an update by query stamps every row identically",
        json!(true),
        all.map(|a| {
            let s = stamps(&a);
            json!(s.len() == 105 && s.iter().all(|(_, t)| *t == s[0].1))
        }),
    );
    let left = Req::get(&items)
        .q("filter", filter(bulk.clone()))
        .q("sort", "id")
        .q("fields", "id,views")
        .q("limit", -1);
    t.same(
        "DELETE /items/c by query without limit",
        Req::delete(&items).json(json!({"query": {"filter": bulk}})),
    )
    .await;
    t.same(
        "GET /items/c what a delete by query without limit left",
        left.clone(),
    )
    .await;
    t.same(
        "DELETE /items/c by query with limit -1",
        Req::delete(&items).json(json!({"query": {"filter": bulk, "limit": -1}})),
    )
    .await;
    t.same(
        "GET /items/c what a delete by query with limit -1 left",
        left,
    )
    .await;
}

/// Which filter operators each field type accepts (the others are 400 `INVALID_QUERY`).
async fn operators(t: &mut Conformance, c: &str, k: &[String]) {
    let items = format!("/items/{c}");
    const OPERATORS: [&str; 27] = [
        "_eq",
        "_neq",
        "_lt",
        "_lte",
        "_gt",
        "_gte",
        "_in",
        "_nin",
        "_null",
        "_nnull",
        "_contains",
        "_ncontains",
        "_icontains",
        "_nicontains",
        "_starts_with",
        "_nstarts_with",
        "_istarts_with",
        "_nistarts_with",
        "_ends_with",
        "_nends_with",
        "_iends_with",
        "_niends_with",
        "_between",
        "_nbetween",
        "_empty",
        "_nempty",
        "_regex",
    ];
    for (field, value) in [
        ("id", json!(k[0])),
        ("last_modified", json!("2000-01-01T00:00:00.000Z")),
        ("title", json!("a")),
        ("views", json!(1)),
        ("meta", json!("a")),
        ("flag", json!(true)),
        ("owner", json!(k[11])),
    ] {
        for op in OPERATORS {
            let arg = match op {
                "_in" | "_nin" | "_between" | "_nbetween" => json!([value, value]),
                "_null" | "_nnull" | "_empty" | "_nempty" => json!(true),
                _ => value.clone(),
            };
            let mut condition = serde_json::Map::new();
            condition.insert(op.to_owned(), arg);
            t.same(
                &format!("GET /items/c filter {field} {op}"),
                Req::get(&items)
                    // Rows with generated keys would sort differently on each server.
                    .q(
                        "filter",
                        filter(json!({"_and": [{ field: condition }, {"id": {"_in": k}}]})),
                    )
                    .q("fields", "id")
                    .q("limit", 1),
            )
            .await;
        }
    }
}

async fn deletes(t: &mut Conformance, c: &str, k: &[String]) {
    let items = format!("/items/{c}");
    // The delete cursor: the latest activity id of the collection before the deletes.
    let latest = t
        .same(
            "GET /activity latest id of the collection",
            Req::get("/activity")
                .q("filter", filter(json!({"collection": {"_eq": c}})))
                .q("sort", "-id")
                .q("fields", "id")
                .q("limit", 1),
        )
        .await;
    for (side, answer) in t.sides.iter_mut().zip(&latest) {
        side.vars
            .insert("before_deletes", answer.data()[0]["id"].clone());
    }
    t.same(
        "DELETE /items/c/<missing key> as admin",
        Req::delete(format!("{items}/{}", k[10])),
    )
    .await;
    t.same(
        "DELETE /items/c/<key>",
        Req::delete(format!("{items}/{}", k[5])),
    )
    .await;
    t.same(
        "DELETE /items/c/<key that is not a uuid>",
        Req::delete(format!("{items}/not-a-uuid")),
    )
    .await;
    t.same(
        "DELETE /items/c keys array",
        Req::delete(&items).json(json!([k[4]])),
    )
    .await;
    t.same(
        "DELETE /items/c by query",
        Req::delete(&items).json(json!({"query": {"filter": {"_or": [
            {"_and": [{"id": {"_eq": k[3]}}, {"last_modified": {"_eq": "2000-01-01T00:00:00.000Z"}}]},
            {"id": {"_eq": k[2]}}]}, "limit": -1}}))
            .idempotent(),
    )
    .await;
    t.same(
        "DELETE /items/c by query matching no row",
        Req::delete(&items).json(json!({"query": {"filter": {"id": {"_eq": k[10]}}, "limit": -1}})),
    )
    .await;
    t.same(
        "DELETE /items/c {keys}",
        Req::delete(&items).json(json!({"keys": [k[8]]})),
    )
    .await;
    t.same(
        "DELETE /items/c without query or keys",
        Req::delete(&items).json(json!({})),
    )
    .await;
    t.same(
        "GET /items/c/<deleted key>",
        Req::get(format!("{items}/{}", k[5])),
    )
    .await;
    t.same(
        "GET /items/c what the deletes left",
        Req::get(&items)
            .q("filter", filter(json!({"id": {"_in": k}})))
            .q("sort", "id")
            .q("fields", "id"),
    )
    .await;
}

async fn activity(t: &mut Conformance, c: &str, k: &[String]) {
    t.step(
        "GET /activity deletes after the cursor",
        Check::Values,
        |s| {
            Req::get("/activity")
                .q(
                    "filter",
                    filter(json!({"_and": [{"collection": {"_eq": c}},
                                           {"action": {"_eq": "delete"}},
                                           {"id": {"_gt": s.var("before_deletes")}}]})),
                )
                .q("sort", "id")
                .q("fields", "id,item,timestamp")
                .q("limit", 100)
        },
    )
    .await;
    t.same(
        "GET /activity delete time of a key",
        Req::get("/activity")
            .q(
                "filter",
                filter(json!({"_and": [{"collection": {"_eq": c}},
                                       {"action": {"_eq": "delete"}},
                                       {"item": {"_eq": k[5]}}]})),
            )
            .q("sort", "-id")
            .q("fields", "id,timestamp")
            .q("limit", 1),
    )
    .await;
    // Whole entries of a create, an update and a delete.
    for (step, key) in [
        ("GET /activity entries of a created and updated row", &k[0]),
        ("GET /activity entries of a created and deleted row", &k[5]),
        (
            "GET /activity entries of a missing row patched and deleted",
            &k[10],
        ),
    ] {
        t.same(
            step,
            Req::get("/activity")
                .q(
                    "filter",
                    filter(json!({"_and": [{"collection": {"_eq": c}}, {"item": {"_eq": key}}]})),
                )
                .q("sort", "id"),
        )
        .await;
    }
    t.same(
        "GET /activity updates of a batch",
        Req::get("/activity")
            .q(
                "filter",
                filter(
                    json!({"collection": {"_eq": c}, "action": {"_eq": "update"},
                              "item": {"_in": [k[2], k[3]]}}),
                ),
            )
            .q("sort", "-id")
            .q("fields", "action,item,collection")
            .q("limit", 10),
    )
    .await;
}

async fn errors(t: &mut Conformance, c: &str, k: &[String]) {
    let items = format!("/items/{c}");
    t.step(
        "GET /items/c/<key> with an access token from /auth/refresh",
        Check::Values,
        |s| {
            Req::get(format!("{items}/{}", k[0]))
                .q("fields", "id,title")
                .auth(Auth::Bearer(s.text("access")))
        },
    )
    .await;
    t.same(
        "GET /items/c with a static token that is not valid",
        Req::get(&items).auth(Auth::Bearer("not-a-valid-token".into())),
    )
    .await;
    // A JWT from Directus's issuer that this server never signed.
    let foreign = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IjhhN2MzNGEwLWY1NWUtNDA3NS1hMDkxLWZkYmU1ZDk5MmFjZCIsInJvbGUiOm51bGwsImFwcF9hY2Nlc3MiOnRydWUsImFkbWluX2FjY2VzcyI6dHJ1ZSwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjQxMDAwMDAwMDAsImlzcyI6ImRpcmVjdHVzIn0.c2lnbmVkIGJ5IG5vYm9keQ";
    t.same(
        "GET /items/c with a JWT not issued by this server",
        Req::get(&items).auth(Auth::Bearer(foreign.into())),
    )
    .await;
    t.same(
        "GET /items/c without a token",
        Req::get(&items).auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "POST /items/c without a token",
        Req::post(&items, json!({"title": "x"})).auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "PATCH /items/c by query without a token",
        Req::patch(
            &items,
            json!({"query": {"limit": -1}, "data": {"title": "x"}}),
        )
        .auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "DELETE /items/c/<key> without a token",
        Req::delete(format!("{items}/{}", uuid::Uuid::new_v4())).auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "GET /activity without a token",
        Req::get("/activity").auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "GET /fields/c without a token",
        Req::get(format!("/fields/{c}")).auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "GET /collections/c without a token",
        Req::get(format!("/collections/{c}")).auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "GET /collections without a token",
        Req::get("/collections").auth(Auth::Anonymous),
    )
    .await;
    t.same(
        "GET /items/<unknown collection>",
        Req::get("/items/no_such_collection_here"),
    )
    .await;
    t.same(
        "POST /items/<unknown collection>",
        Req::post("/items/no_such_collection_here", json!({"a": 1})),
    )
    .await;
    t.same(
        "GET /items/c filter that is not JSON",
        Req::get(&items).q("filter", "{not json"),
    )
    .await;
    t.same(
        "GET /items/c unknown filter operator",
        Req::get(&items).q("filter", filter(json!({"title": {"_bogus": 1}}))),
    )
    .await;
    t.same(
        "GET /items/c a number filter that is not a number",
        Req::get(&items).q("filter", filter(json!({"views": {"_eq": "abc"}}))),
    )
    .await;
    t.same(
        "GET /items/c unknown field in fields",
        Req::get(&items).q("fields", "id,no_such_field"),
    )
    .await;
    t.same(
        "GET /items/c unknown field in sort",
        Req::get(&items).q("sort", "no_such_field"),
    )
    .await;
    t.same(
        "GET /items/c unknown meta",
        Req::get(&items).q("meta", "bogus"),
    )
    .await;
    t.same("GET /no/such/route", Req::get("/no/such/route"))
        .await;
}
