//! `GET /websocket`: Directus realtime subscriptions, for the messages a sync service uses.
//!
//! Owns the session: `auth` with an access token, `subscribe` to a collection (answered by an
//! `init` event), an event per write of the item services (`create`, `update` with the items'
//! keys, `delete` with the keys), and the server's heartbeat (`ping` every
//! [`Options::ws_ping_interval`](crate::Options::ws_ping_interval), answered by `pong`).
//! Nothing is replayed after a disconnect, as in Directus. When the access token a session
//! authenticated with expires, the session says so (`TOKEN_EXPIRED`) and hears no more events
//! until it authenticates again, as Directus does in its `public` authentication mode (in
//! `handshake` mode it also closes the connection). Must not: change data.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::db::ItemEvent;
use crate::server::Server;

pub(super) async fn upgrade(
    State(s): State<Arc<Server>>,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // WEBSOCKETS_ENABLED=false: the route does not exist.
    let Some(ws) = ws.ok().filter(|_| s.options().websockets) else {
        return super::not_found(uri).await.into_response();
    };
    ws.on_upgrade(move |socket| session(s, socket))
}

/// A subscription: its `uid` and the collection's primary key field.
struct Subscription {
    uid: Value,
    pk: String,
}

async fn session(s: Arc<Server>, mut socket: WebSocket) {
    let mut events = s.with_db(|db| db.subscribe());
    // The access token the session authenticated with, while it holds.
    let mut authenticated: Option<String> = None;
    let mut subscriptions: HashMap<String, Subscription> = HashMap::new();
    let mut heartbeat = tokio::time::interval(s.options().ws_ping_interval);
    heartbeat.tick().await;
    loop {
        let reply = tokio::select! {
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    answer(&s, &message, &mut authenticated, &mut subscriptions)
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => Vec::new(),
            },
            event = events.recv(), if authenticated.is_some() => match event {
                Ok(_) if expired(&s, authenticated.as_deref()) => {
                    authenticated = None;
                    vec![json!({"type": "auth", "status": "error",
                        "error": {"code": "TOKEN_EXPIRED", "message": "Token expired."}})]
                }
                Ok(event) => announce(&event, &subscriptions).into_iter().collect(),
                Err(RecvError::Lagged(_)) => Vec::new(),
                Err(RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => vec![json!({"type": "ping"})],
        };
        for message in reply {
            if socket
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn answer(
    s: &Server,
    message: &Value,
    authenticated: &mut Option<String>,
    subscriptions: &mut HashMap<String, Subscription>,
) -> Vec<Value> {
    let error = |kind: &str, code: &str, text: &str, uid: Option<&Value>| {
        let mut body = json!({"type": kind, "status": "error",
            "error": {"code": code, "message": text}});
        if let Some(uid) = uid {
            body["uid"] = uid.clone();
        }
        body
    };
    match message["type"].as_str() {
        Some("auth") => {
            let token = message["access_token"].as_str();
            let now = s.now_ms();
            match token.map(|t| s.with_auth(|auth| auth.resolve(Some(t), now))) {
                Some(Ok(_)) => {
                    *authenticated = token.map(str::to_owned);
                    vec![json!({"type": "auth", "status": "ok"})]
                }
                _ => vec![error(
                    "auth",
                    "AUTH_FAILED",
                    "Invalid user credentials.",
                    None,
                )],
            }
        }
        Some("ping") => vec![json!({"type": "pong"})],
        Some("pong") => Vec::new(),
        Some("subscribe") => {
            let uid = message.get("uid").cloned().unwrap_or(Value::Null);
            if authenticated.is_none() {
                return vec![error(
                    "subscribe",
                    "FORBIDDEN",
                    "You don't have permission to access this.",
                    Some(&uid),
                )];
            }
            let Some(collection) = message["collection"].as_str() else {
                return vec![error(
                    "subscribe",
                    "INVALID_PAYLOAD",
                    "\"collection\" is required",
                    Some(&uid),
                )];
            };
            let pk = s.with_db(|db| {
                db.table(collection)
                    .map(|t| t.schema.pk_field().name.clone())
            });
            let Ok(pk) = pk else {
                return vec![error(
                    "subscribe",
                    "FORBIDDEN",
                    "You don't have permission to access this.",
                    Some(&uid),
                )];
            };
            subscriptions.insert(
                collection.to_owned(),
                Subscription {
                    uid: uid.clone(),
                    pk,
                },
            );
            vec![json!({"type": "subscription", "event": "init", "data": [], "uid": uid})]
        }
        Some("unsubscribe") => {
            subscriptions.retain(|_, sub| Some(&sub.uid) != message.get("uid"));
            Vec::new()
        }
        _ => vec![error(
            "unknown",
            "INVALID_PAYLOAD",
            "Unknown message type.",
            None,
        )],
    }
}

/// Whether the session's access token no longer holds.
fn expired(s: &Server, token: Option<&str>) -> bool {
    let now = s.now_ms();
    s.with_auth(|auth| auth.resolve(token, now)).is_err()
}

/// The event a subscription of the written collection receives, if any.
fn announce(event: &ItemEvent, subscriptions: &HashMap<String, Subscription>) -> Option<Value> {
    let sub = subscriptions.get(&event.collection)?;
    let data: Vec<Value> = match event.event {
        "delete" => event.keys.clone(),
        _ => event
            .keys
            .iter()
            .map(|key| json!({ sub.pk.as_str(): key }))
            .collect(),
    };
    Some(json!({"type": "subscription", "event": event.event, "data": data, "uid": sub.uid}))
}
