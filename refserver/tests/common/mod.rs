//! Shared helpers for the HTTP tests: a started server, an admin client and the `notes`
//! collection shaped like a deltasync-managed table.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use refserver::{Clock, CollectionDef, FieldDef, FieldType, Options, ServerHandle};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// A running server and a client authenticated with the static admin token.
pub struct Api {
    pub server: ServerHandle,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

/// A response: status, headers and the body as JSON (`Null` when empty, a string when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `errors[0].extensions.code`.
    pub fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
}

/// A fixed starting instant for manual clocks.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// `notes`: uuid key, a title, Directus's two single-purpose stamps and the sync cursor.
pub fn notes_def() -> CollectionDef {
    CollectionDef::new("notes")
        .field(FieldDef::uuid_pk("id"))
        .field(FieldDef::new("title", FieldType::String))
        .field(FieldDef::new("count", FieldType::Integer))
        .field(FieldDef::new("date_created", FieldType::Timestamp).special(&["date-created"]))
        .field(FieldDef::new("date_updated", FieldType::Timestamp).special(&["date-updated"]))
        .field(FieldDef::sync_timestamp("last_modified"))
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Api {
    /// Default options, a manual clock at [`t0`] and the `notes` collection.
    pub async fn start() -> Api {
        Self::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Api {
        let server = refserver::start(opts).await.expect("server starts");
        server.state().set_clock(Clock::Manual(t0()));
        server
            .state()
            .create_collection(notes_def())
            .expect("notes collection");
        let token = Some(server.admin_token().to_string());
        Api {
            server,
            client: reqwest::Client::new(),
            token,
        }
    }

    /// The same server seen without a token (the public role).
    pub fn anonymous(&self) -> AnonymousApi<'_> {
        AnonymousApi(self)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub async fn send(&self, req: reqwest::RequestBuilder, token: Option<&str>) -> Reply {
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.expect("request is answered");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body is readable");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        self.send(
            self.client.get(self.url(path)).query(query),
            self.token.as_deref(),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            self.client.post(self.url(path)).json(&body),
            self.token.as_deref(),
        )
        .await
    }

    pub async fn post_query(&self, path: &str, query: &[(&str, &str)], body: Value) -> Reply {
        let req = self.client.post(self.url(path)).query(query).json(&body);
        self.send(req, self.token.as_deref()).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(
            self.client.patch(self.url(path)).json(&body),
            self.token.as_deref(),
        )
        .await
    }

    pub async fn delete(&self, path: &str, body: Option<Value>) -> Reply {
        let req = self.client.delete(self.url(path));
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        self.send(req, self.token.as_deref()).await
    }

    /// Creates one note over HTTP and returns it.
    pub async fn create_note(&self, body: Value) -> Value {
        let r = self.post("/items/notes", body).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.data().clone()
    }

    /// Moves the manual clock forward by `ms` milliseconds.
    pub fn tick(&self, ms: u64) {
        self.server
            .state()
            .advance_clock(std::time::Duration::from_millis(ms));
    }

    pub fn note(title: &str) -> Value {
        json!({ "id": uuid(), "title": title })
    }
}

/// Requests without any token.
pub struct AnonymousApi<'a>(&'a Api);

impl AnonymousApi<'_> {
    pub async fn get(&self, path: &str) -> Reply {
        self.0.send(self.0.client.get(self.0.url(path)), None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.0
            .send(self.0.client.patch(self.0.url(path)).json(&body), None)
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.0
            .send(self.0.client.delete(self.0.url(path)), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.0
            .send(self.0.client.post(self.0.url(path)).json(&body), None)
            .await
    }
}
