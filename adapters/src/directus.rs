//! The Directus REST client: requests, authentication, retries and error classification.
//!
//! Owns everything HTTP: reqwest, headers, the error body of Directus, backoff. It implements
//! [`engine::ports::Remote`] and must not make sync decisions. Secrets never reach logs or
//! error messages: tokens live in [`schema::Secret`], whose `Debug` prints `***`.
//!
//! A login session is renewed by one request at a time. Directus rotates refresh tokens, so
//! of several refreshes with the same token only the first succeeds; and the engine has
//! several requests in flight, which all meet an expired access token together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use engine::cursor::PageRequest;
use engine::error::{RemoteError, RemoteErrorKind};
use engine::ports::{
    Action, DeleteActivity, DeletePage, FilteredRows, Permissions, RawPage, Remote, ServerField,
};
use engine::{Error as EngineError, Key, Row, Stamp};
pub use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use schema::{Auth, CollectionConfig, RemoteConfig, Secret};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::query::{self, ListQuery};

/// Answers at least this large are parsed off the caller's thread.
const PARSE_APART_BYTES: usize = 64 * 1024;

/// A Directus server, as the engine's [`Remote`].
#[derive(Debug)]
pub struct DirectusClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// Held across login and refresh requests, so that requests arriving meanwhile wait
    /// for the new token instead of starting a renewal of their own.
    session: Mutex<Session>,
    max_retries: u32,
    min_backoff: Duration,
    /// Server clock minus local clock, in milliseconds, from the latest `Date` header.
    skew_ms: AtomicI64,
    /// Requests sent, retries included, by the HTTP status of their answer (`error` when no
    /// answer came), for metrics.
    answers: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Tokens of a login session (unused with a static token).
#[derive(Debug, Default)]
struct Session {
    access: Option<Secret>,
    refresh: Option<Secret>,
}

/// A failed attempt, kept with what retrying needs to know.
#[derive(Debug)]
struct Attempt {
    error: RemoteError,
    retry_after: Option<Duration>,
}

impl From<RemoteError> for Attempt {
    /// A failure before the request was sent (getting a token), with no server hint.
    fn from(error: RemoteError) -> Attempt {
        Attempt {
            error,
            retry_after: None,
        }
    }
}

/// A successful response.
#[derive(Debug)]
struct Answer {
    body: Value,
    date: Option<DateTime<Utc>>,
}

impl DirectusClient {
    pub fn new(config: &RemoteConfig) -> Result<DirectusClient, crate::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .gzip(true)
            .user_agent(concat!("deltasync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Http(e.to_string()))?;
        Ok(DirectusClient {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            auth: config.auth.clone(),
            session: Mutex::new(Session::default()),
            max_retries: config.max_retries,
            min_backoff: Duration::from_millis(200),
            skew_ms: AtomicI64::new(0),
            answers: Default::default(),
        })
    }

    /// Shortens the first backoff step (tests use a few milliseconds).
    pub fn with_min_backoff(mut self, delay: Duration) -> DirectusClient {
        self.min_backoff = delay;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request, retrying transient failures with exponential backoff and jitter,
    /// honouring `Retry-After`, and refreshing an expired login once.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, RemoteError> {
        self.send(method, path, query, body, idempotency_key)
            .await
            .map(|a| a.body)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, RemoteError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(self.max_retries as usize)
            .with_jitter();
        let attempt = || async {
            let token = self.token().await.map_err(Attempt::from)?;
            match self
                .attempt(&token, &method, path, query, body, idempotency_key)
                .await
            {
                Err(a)
                    if a.error.code.as_deref() == Some("TOKEN_EXPIRED") && self.can_refresh() =>
                {
                    let token = self.renew(&token).await.map_err(Attempt::from)?;
                    self.attempt(&token, &method, path, query, body, idempotency_key)
                        .await
                }
                other => other,
            }
        };
        attempt
            .retry(backoff)
            .when(|a: &Attempt| a.error.kind.is_transient())
            .adjust(|a: &Attempt, next| next.map(|d| a.retry_after.unwrap_or(d)))
            .notify(|a: &Attempt, after: Duration| {
                warn!(%method, path, error = %a.error, retry_in_ms = after.as_millis() as u64, "request failed, retrying");
            })
            .await
            .map_err(|a| a.error)
    }

    async fn attempt(
        &self,
        token: &Secret,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Attempt> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(key) = idempotency_key {
            // Directus ignores it; proxies and logs can still correlate retries by it.
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        debug!(%method, path, "request");
        let sent = request.send().await;
        self.count_answer(sent.as_ref().ok().map(|r| r.status()));
        let response = sent.map_err(|e| Attempt {
            error: RemoteError::new(RemoteErrorKind::Unreachable, transport_message(e)),
            retry_after: None,
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let date = self.observe_date(&headers);
        let bytes = response.bytes().await.map_err(|e| Attempt {
            error: RemoteError::new(RemoteErrorKind::Unreachable, transport_message(e)),
            retry_after: None,
        })?;
        if status.is_success() {
            let parsed = if bytes.is_empty() {
                Ok(Value::Null)
            } else if bytes.len() < PARSE_APART_BYTES {
                serde_json::from_slice(&bytes)
            } else {
                // A page of a large pull: parsed on a thread of its own, beside the writing
                // of the page before.
                tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            };
            let body = parsed.map_err(|e| Attempt {
                error: RemoteError::new(
                    RemoteErrorKind::Protocol,
                    format!("{method} {path}: response is not JSON: {e}"),
                ),
                retry_after: None,
            })?;
            return Ok(Answer { body, date });
        }
        Err(Attempt {
            error: classify(status, &bytes, method, path),
            retry_after: retry_after(&headers),
        })
    }

    fn count_answer(&self, status: Option<StatusCode>) {
        let label = status.map_or_else(|| "error".to_owned(), |s| s.as_u16().to_string());
        *self
            .answers
            .lock()
            .expect("answer counts")
            .entry(label)
            .or_default() += 1;
    }

    /// Requests sent so far, retries included, by the HTTP status of their answer (`error`
    /// when the connection failed).
    pub fn answer_counts(&self) -> Vec<(String, u64)> {
        let counts = self.answers.lock().expect("answer counts");
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn observe_date(&self, headers: &HeaderMap) -> Option<DateTime<Utc>> {
        let text = headers.get(reqwest::header::DATE)?.to_str().ok()?;
        let date = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
        let skew = engine::conflict::ClockSkew::estimate(date, Utc::now());
        self.skew_ms
            .store(skew.0.num_milliseconds(), Ordering::Relaxed);
        Some(date)
    }

    fn can_refresh(&self) -> bool {
        matches!(self.auth, Auth::Login { .. })
    }

    /// The token a realtime connection authenticates with (see [`Self::token`]).
    pub(crate) async fn access_token(&self) -> Result<Secret, RemoteError> {
        self.token().await
    }

    /// A token in place of `refused`, which a realtime connection's server refused: a fresh
    /// access token of a login session, or the static token again.
    pub(crate) async fn renewed_access_token(
        &self,
        refused: &Secret,
    ) -> Result<Secret, RemoteError> {
        if self.can_refresh() {
            self.renew(refused).await
        } else {
            self.token().await
        }
    }

    /// The bearer token to send: the static token, or the session's access token (logging
    /// in first when there is none).
    async fn token(&self) -> Result<Secret, RemoteError> {
        match &self.auth {
            Auth::Token(token) => Ok(token.clone()),
            Auth::Login { .. } => {
                let mut session = self.session.lock().await;
                match &session.access {
                    Some(access) => Ok(access.clone()),
                    None => self.login(&mut session).await,
                }
            }
        }
    }

    /// A fresh access token in place of `expired`, which the server refused. When the session
    /// no longer holds `expired`, another request has renewed it already and its token is
    /// the answer; refreshing again would spend the rotated refresh token for nothing.
    async fn renew(&self, expired: &Secret) -> Result<Secret, RemoteError> {
        let mut session = self.session.lock().await;
        if let Some(access) = session.access.as_ref().filter(|a| *a != expired) {
            return Ok(access.clone());
        }
        let Some(refresh) = session.refresh.clone() else {
            return self.login(&mut session).await;
        };
        let body = json!({ "refresh_token": refresh.expose(), "mode": "json" });
        match self
            .session_request(&mut session, "/auth/refresh", &body)
            .await
        {
            // A refresh token can expire too (7 days by default): log in again.
            Err(e) if e.kind == RemoteErrorKind::Auth => self.login(&mut session).await,
            other => other,
        }
    }

    async fn login(&self, session: &mut Session) -> Result<Secret, RemoteError> {
        let Auth::Login { email, password } = &self.auth else {
            unreachable!("login is only used with email and password")
        };
        let body = json!({ "email": email, "password": password.expose(), "mode": "json" });
        self.session_request(session, "/auth/login", &body).await
    }

    /// Posts to an auth endpoint and keeps the (rotated) tokens it returns in `session`.
    async fn session_request(
        &self,
        session: &mut Session,
        path: &str,
        body: &Value,
    ) -> Result<Secret, RemoteError> {
        let response = self
            .http
            .post(format!("{}{}", self.base, path))
            .json(body)
            .send()
            .await
            .map_err(|e| RemoteError::new(RemoteErrorKind::Unreachable, transport_message(e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RemoteError::new(RemoteErrorKind::Unreachable, transport_message(e)))?;
        if !status.is_success() {
            return Err(classify(status, &bytes, &Method::POST, path));
        }
        let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let token = |name: &str| parsed["data"][name].as_str().map(Secret::new);
        let (Some(access), refresh) = (token("access_token"), token("refresh_token")) else {
            return Err(RemoteError::new(
                RemoteErrorKind::Protocol,
                format!("POST {path}: no access_token in the response"),
            ));
        };
        session.access = Some(access.clone());
        session.refresh = refresh;
        Ok(access)
    }

    /// `GET /server/info`, authenticated.
    pub async fn server_info(&self) -> Result<Value, RemoteError> {
        self.request(Method::GET, "/server/info", &[], None, None)
            .await
    }

    /// `GET /fields/:collection`.
    pub async fn fields(&self, collection: &str) -> Result<Value, RemoteError> {
        self.request(
            Method::GET,
            &format!("/fields/{collection}"),
            &[],
            None,
            None,
        )
        .await
    }

    /// The id of the first activity entry in `sort` order, among those `filter` keeps.
    async fn first_activity_id(
        &self,
        filter: Option<String>,
        sort: &str,
    ) -> Result<Option<i64>, RemoteError> {
        let mut query = vec![
            ("sort", sort.to_owned()),
            ("fields", "id".to_owned()),
            ("limit", "1".to_owned()),
        ];
        query.extend(filter.map(|f| ("filter", f)));
        let body = self
            .request(Method::GET, "/activity", &query, None, None)
            .await?;
        Ok(data_rows(body).first().and_then(|r| r["id"].as_i64()))
    }

    /// `GET /collections/:collection`.
    pub async fn collection_info(&self, collection: &str) -> Result<Value, RemoteError> {
        self.request(
            Method::GET,
            &format!("/collections/{collection}"),
            &[],
            None,
            None,
        )
        .await
    }
}

fn bad_activity(raw: &Value) -> EngineError {
    EngineError::Remote(RemoteError::new(
        RemoteErrorKind::Protocol,
        format!("activity entry without id or item: {raw}"),
    ))
}

fn items_path(collection: &str) -> String {
    format!("/items/{collection}")
}

fn data_rows(body: Value) -> Vec<Value> {
    match body {
        Value::Object(mut o) => match o.remove("data") {
            Some(Value::Array(rows)) => rows,
            Some(Value::Null) | None => Vec::new(),
            Some(row) => vec![row],
        },
        _ => Vec::new(),
    }
}

impl DirectusClient {
    /// One list request (`GET /items/:collection`).
    async fn list(&self, collection: &str, query: ListQuery) -> Result<RawPage, EngineError> {
        let answer = self
            .send(
                Method::GET,
                &items_path(collection),
                &query.params(),
                None,
                None,
            )
            .await?;
        Ok(RawPage {
            rows: data_rows(answer.body),
            server_date: answer.date,
        })
    }
}

impl Remote for DirectusClient {
    async fn query_limit(&self) -> Result<Option<u32>, EngineError> {
        let info = self.server_info().await?;
        // -1, or nothing said: no limit.
        Ok(info["data"]["queryLimit"]["max"]
            .as_i64()
            .filter(|max| *max > 0)
            .map(|max| u32::try_from(max).unwrap_or(u32::MAX)))
    }

    async fn page(
        &self,
        c: &CollectionConfig,
        request: &PageRequest,
        fields: &[String],
    ) -> Result<RawPage, EngineError> {
        self.list(&c.name, query::page(c, request, fields)).await
    }

    async fn count(
        &self,
        c: &CollectionConfig,
        request: &PageRequest,
    ) -> Result<Option<u64>, EngineError> {
        let mut query = query::page(c, request, std::slice::from_ref(&c.primary_key));
        query.limit = 0;
        let mut params = query.params();
        params.push(("meta", "filter_count".to_owned()));
        let answer = self
            .send(Method::GET, &items_path(&c.name), &params, None, None)
            .await?;
        Ok(answer.body["meta"]["filter_count"].as_u64())
    }

    async fn rows_by_keys(
        &self,
        c: &CollectionConfig,
        keys: &[Key],
        fields: &[String],
    ) -> Result<RawPage, EngineError> {
        if keys.is_empty() {
            return Ok(RawPage::default());
        }
        self.list(&c.name, query::rows_by_keys(c, keys, fields))
            .await
    }

    async fn rows_created_as(
        &self,
        c: &CollectionConfig,
        ids: &[String],
        fields: &[String],
    ) -> Result<RawPage, EngineError> {
        if ids.is_empty() {
            return Ok(RawPage::default());
        }
        self.list(&c.name, query::rows_created_as(c, ids, fields))
            .await
    }

    async fn filtered_rows(
        &self,
        c: &CollectionConfig,
        which: FilteredRows<'_>,
        fields: &[String],
    ) -> Result<RawPage, EngineError> {
        if matches!(which, FilteredRows::Among([])) {
            return Ok(RawPage::default());
        }
        self.list(&c.name, query::filtered_rows(c, which, fields))
            .await
    }

    async fn create(
        &self,
        collection: &str,
        rows: Vec<Value>,
        fields: &[String],
        idempotency_key: &str,
    ) -> Result<Vec<Value>, EngineError> {
        let body = Value::Array(rows);
        let query = [("fields", fields.join(","))];
        let answer = self
            .request(
                Method::POST,
                &items_path(collection),
                &query,
                Some(&body),
                Some(idempotency_key),
            )
            .await?;
        Ok(data_rows(answer))
    }

    async fn update_if_unchanged(
        &self,
        c: &CollectionConfig,
        rows: &[(Key, Stamp)],
        patch: Row,
        fields: &[String],
        idempotency_key: &str,
    ) -> Result<Vec<Value>, EngineError> {
        let filter = query::unchanged(c, rows.iter().map(|(key, stamp)| (key, Some(*stamp))));
        // Without "limit": -1 an update by query touches at most 100 rows.
        let body = json!({ "query": { "filter": filter, "limit": -1 }, "data": patch });
        let query = [("fields", fields.join(","))];
        let answer = self
            .request(
                Method::PATCH,
                &items_path(&c.name),
                &query,
                Some(&body),
                Some(idempotency_key),
            )
            .await?;
        Ok(data_rows(answer))
    }

    async fn delete_if_unchanged(
        &self,
        c: &CollectionConfig,
        rows: &[(Key, Option<Stamp>)],
        idempotency_key: &str,
    ) -> Result<(), EngineError> {
        let filter = query::unchanged(c, rows.iter().map(|(key, stamp)| (key, *stamp)));
        let body = json!({ "query": { "filter": filter, "limit": -1 } });
        self.request(
            Method::DELETE,
            &items_path(&c.name),
            &[],
            Some(&body),
            Some(idempotency_key),
        )
        .await?;
        Ok(())
    }

    async fn deletes_after(
        &self,
        collection: &str,
        after: i64,
        limit: u32,
    ) -> Result<DeletePage, EngineError> {
        // The deletes, and entries `after` and `after + 1` of any kind as the anchor: if one
        // of them is still there, retention has removed nothing after `after`. The outer
        // range keeps the read on the primary key from `after` on.
        let filter = json!({ "_and": [
            { "id": { "_gte": after } },
            { "_or": [
                { "id": { "_in": [after, after + 1] } },
                { "_and": [
                    { "collection": { "_eq": collection } },
                    { "action": { "_eq": "delete" } },
                ]},
            ]},
        ]});
        // At least one row past the two anchors, so that every page makes progress.
        let requested = limit.max(3);
        let query = [
            ("filter", filter.to_string()),
            ("sort", "id".to_owned()),
            ("fields", "id,action,collection,item,timestamp".to_owned()),
            ("limit", requested.to_string()),
        ];
        let body = self
            .request(Method::GET, "/activity", &query, None, None)
            .await?;
        let rows = data_rows(body);
        let mut page = DeletePage {
            full: rows.len() >= requested as usize,
            ..DeletePage::default()
        };
        for raw in rows {
            let id = raw["id"].as_i64().ok_or_else(|| bad_activity(&raw))?;
            page.anchored |= id == after || id == after + 1;
            page.last_id = page.last_id.max(Some(id));
            let is_delete = raw["action"] == "delete" && raw["collection"] == collection;
            if !is_delete || id <= after {
                continue;
            }
            let key =
                engine::model::key_from_json(&raw["item"]).ok_or_else(|| bad_activity(&raw))?;
            page.deletes.push(DeleteActivity {
                id,
                key,
                at: raw["timestamp"].as_str().and_then(Stamp::parse),
            });
        }
        Ok(page)
    }

    async fn delete_time(&self, collection: &str, key: &str) -> Result<Option<Stamp>, EngineError> {
        let filter = json!({ "_and": [
            { "collection": { "_eq": collection } },
            { "action": { "_eq": "delete" } },
            { "item": { "_eq": key } },
        ]});
        let query = [
            ("filter", filter.to_string()),
            ("sort", "-id".to_owned()),
            ("fields", "id,timestamp".to_owned()),
            ("limit", "1".to_owned()),
        ];
        let body = self
            .request(Method::GET, "/activity", &query, None, None)
            .await?;
        Ok(data_rows(body)
            .first()
            .and_then(|r| r["timestamp"].as_str().and_then(Stamp::parse)))
    }

    async fn latest_activity(&self, collection: &str) -> Result<Option<i64>, EngineError> {
        let filter = json!({ "collection": { "_eq": collection } }).to_string();
        Ok(self.first_activity_id(Some(filter), "-id").await?)
    }

    async fn oldest_activity(&self) -> Result<Option<i64>, EngineError> {
        Ok(self.first_activity_id(None, "id").await?)
    }

    async fn settled_activity(&self, at: DateTime<Utc>) -> Result<Option<i64>, EngineError> {
        let filter = json!({ "timestamp": { "_lte": Stamp(at).to_wire() } }).to_string();
        Ok(self.first_activity_id(Some(filter), "-id").await?)
    }

    async fn activity_logging(&self) -> Result<HashMap<String, bool>, EngineError> {
        let body = self
            .request(Method::GET, "/collections", &[], None, None)
            .await?;
        Ok(data_rows(body)
            .into_iter()
            .filter_map(|c| {
                let name = c["collection"].as_str()?.to_owned();
                Some((name, !c["meta"]["accountability"].is_null()))
            })
            .collect())
    }

    async fn permissions(&self) -> Result<Option<Permissions>, EngineError> {
        let body = match self
            .request(Method::GET, "/permissions/me", &[], None, None)
            .await
        {
            Ok(body) => body,
            // Servers before policies (Directus 11) have no such endpoint.
            Err(e) if matches!(e.status, Some(403 | 404)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(parse_permissions(&body["data"])))
    }

    async fn server_fields(
        &self,
        collection: &str,
    ) -> Result<Option<Vec<ServerField>>, EngineError> {
        match self.fields(collection).await {
            Ok(body) => Ok(Some(parse_fields(&body["data"]))),
            Err(e) if e.status == Some(403) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn clock_skew(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.skew_ms.load(Ordering::Relaxed))
    }

    async fn watch_changes(
        &self,
        config: &schema::Config,
        notices: tokio::sync::mpsc::Sender<String>,
        stop: tokio_util::sync::CancellationToken,
    ) -> engine::Result<engine::ports::Realtime> {
        crate::realtime::follow(self, config, notices, stop).await
    }

    async fn ping(&self) -> engine::Result<()> {
        let response = self
            .http
            .get(format!("{}/server/ping", self.base))
            .send()
            .await
            .map_err(|e| RemoteError::new(RemoteErrorKind::Unreachable, transport_message(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(classify(status, &bytes, &Method::GET, "/server/ping").into())
    }
}

/// `GET /fields/:collection`'s answer (its `data`), typed.
pub fn parse_fields(data: &Value) -> Vec<ServerField> {
    let list = data.as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter()
        .filter_map(|f| {
            let flag = |v: &Value| v.as_bool().unwrap_or(false);
            Some(ServerField {
                name: f["field"].as_str()?.to_owned(),
                kind: f["type"].as_str().unwrap_or_default().to_owned(),
                specials: f["meta"]["special"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                primary_key: flag(&f["schema"]["is_primary_key"]),
                auto_increment: flag(&f["schema"]["has_auto_increment"]),
                unique: flag(&f["schema"]["is_unique"]),
                read_only: flag(&f["meta"]["readonly"]),
            })
        })
        .collect()
}

/// `GET /permissions/me`'s answer: per collection and action, `access` (`none`, `partial`,
/// `full`) and the `fields` covered (`*` for all).
fn parse_permissions(data: &Value) -> Permissions {
    let mut permissions = Permissions::default();
    let Some(collections) = data.as_object() else {
        return permissions;
    };
    for (collection, actions) in collections {
        for action in [Action::Create, Action::Read, Action::Update, Action::Delete] {
            let grant = &actions[action.as_str()];
            if grant["access"].as_str().unwrap_or("none") == "none" {
                continue;
            }
            let fields: Vec<String> = grant["fields"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let fields = (!fields.iter().any(|f| f == "*")).then_some(fields);
            permissions.grant(collection, action, fields);
        }
    }
    permissions
}

/// Maps an error response to a classified [`RemoteError`] using Directus's `extensions.code`.
fn classify(status: StatusCode, body: &[u8], method: &Method, path: &str) -> RemoteError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let first = &parsed["errors"][0];
    let code = first["extensions"]["code"].as_str().map(str::to_owned);
    let server_message = first["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let kind = match (status.as_u16(), code.as_deref()) {
        (_, Some("RECORD_NOT_UNIQUE")) => RemoteErrorKind::NotUnique,
        (_, Some("TOKEN_EXPIRED" | "INVALID_CREDENTIALS" | "INVALID_TOKEN")) | (401, _) => {
            RemoteErrorKind::Auth
        }
        (429 | 500..=599, _) | (_, Some("REQUESTS_EXCEEDED" | "SERVICE_UNAVAILABLE")) => {
            RemoteErrorKind::Unavailable
        }
        (403, _) => RemoteErrorKind::Forbidden,
        (400..=499, _) => RemoteErrorKind::Rejected,
        _ => RemoteErrorKind::Protocol,
    };
    RemoteError {
        kind,
        status: Some(status.as_u16()),
        code,
        message: format!("{method} {path}: {} {server_message}", status.as_u16()),
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    if let Ok(seconds) = text.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    Some((at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// A transport error without the URL's query string (it may carry an access token).
fn transport_message(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_actions_and_fields() {
        let p = parse_permissions(&json!({
            "articles": {
                "create": {"access": "none"},
                "read": {"access": "full", "fields": ["*"]},
                "update": {"access": "partial", "fields": ["title"]},
                "delete": {"access": "full", "fields": ["*"]}
            }
        }));
        assert!(!p.allows("articles", Action::Create));
        assert!(p.covers("articles", Action::Read, "views"));
        assert!(p.covers("articles", Action::Update, "title"));
        assert!(!p.covers("articles", Action::Update, "views"));
        assert!(p.allows("articles", Action::Delete));
        assert!(!p.allows("other", Action::Read));
    }

    #[test]
    fn classifies_directus_error_codes() {
        let body = br#"{"errors":[{"message":"Value for field \"id\" in collection \"a\" has to be unique.","extensions":{"code":"RECORD_NOT_UNIQUE"}}]}"#;
        let e = classify(StatusCode::BAD_REQUEST, body, &Method::POST, "/items/a");
        assert_eq!(e.kind, RemoteErrorKind::NotUnique);
        assert_eq!(e.code.as_deref(), Some("RECORD_NOT_UNIQUE"));
        let e = classify(StatusCode::TOO_MANY_REQUESTS, b"", &Method::GET, "/items/a");
        assert!(e.kind.is_transient());
        let e = classify(StatusCode::FORBIDDEN, b"{}", &Method::GET, "/items/a");
        assert_eq!(e.kind, RemoteErrorKind::Forbidden);
        let e = classify(
            StatusCode::BAD_REQUEST,
            br#"{"errors":[{"message":"x","extensions":{"code":"INVALID_PAYLOAD"}}]}"#,
            &Method::POST,
            "/items/a",
        );
        assert_eq!(e.kind, RemoteErrorKind::Rejected);
        assert!(e.to_string().contains("INVALID_PAYLOAD"));
    }

    #[test]
    fn reads_retry_after_in_seconds_including_zero() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "0".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
