//! Directus realtime (`/websocket`): which collections the server says have changed.
//!
//! Owns the connection: `auth` with the client's access token (renewed once when the server
//! refuses it, since a session's token may have expired while nothing else was requested),
//! one `subscribe` per collection (asking for the primary key only), the answer to the
//! server's `ping`, and reconnection with backoff and jitter. An event is only a notice: the
//! pull stays the source of truth, and since nothing is replayed after a disconnect, every
//! collection is announced after each (re)subscription. When the server says the token
//! expired, the connection is made again.
//!
//! A server with WebSockets off refuses the upgrade with a client error (Directus: 404): that
//! is reported once as [`Realtime::Unavailable`], not retried. Any other failure, a gateway's
//! 502 while the server restarts included, is retried. It must not read rows.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use engine::error::{RemoteError, RemoteErrorKind};
use engine::ports::Realtime;
use futures::{SinkExt, StreamExt};
use schema::Config;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::directus::DirectusClient;

/// Directus pings every 30 s; a connection silent for this long is dead.
const SILENCE: Duration = Duration::from_secs(75);
/// How long the server may take to answer `auth`.
const AUTH_WITHIN: Duration = Duration::from_secs(10);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a connection ended.
enum Ended {
    Stopped,
    /// The notices' receiver is gone.
    Unheard,
    Lost(String),
}

/// Follows the server's changes to the collections of `config` until `stop`.
pub(crate) async fn follow(
    client: &DirectusClient,
    config: &Config,
    notices: mpsc::Sender<String>,
    stop: CancellationToken,
) -> Result<Realtime, engine::Error> {
    let url = websocket_url(client.base_url());
    let mut delays = reconnect_delays();
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return Ok(Realtime::Stopped),
            connected = connect(&url) => connected,
        };
        match connected {
            Ok(mut socket) => {
                match session(client, config, &mut socket, &notices, &stop).await? {
                    Ended::Stopped => {
                        let _ = socket.close(None).await;
                        return Ok(Realtime::Stopped);
                    }
                    Ended::Unheard => return Ok(Realtime::Stopped),
                    Ended::Lost(why) => debug!(%why, "realtime connection lost; reconnecting"),
                }
                // A connection that worked starts the backoff over.
                delays = reconnect_delays();
            }
            Err(tungstenite::Error::Http(response)) if refuses_realtime(response.status()) => {
                return Ok(Realtime::Unavailable(format!(
                    "GET /websocket answered {}",
                    response.status()
                )));
            }
            Err(e) => debug!(error = %e, "realtime connection failed; retrying"),
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            () = stop.cancelled() => return Ok(Realtime::Stopped),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Waits between attempts to connect: from 0.5 s, doubling with jitter, up to 30 s.
fn reconnect_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .with_jitter()
        .build()
}

/// Whether an answer to the upgrade says the server offers no realtime, rather than that it
/// cannot serve now (a timeout, a rate limit, a server or gateway error).
fn refuses_realtime(status: tungstenite::http::StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 408 | 429)
}

fn websocket_url(base: &str) -> String {
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{}/websocket", ws.trim_end_matches('/'))
}

async fn connect(url: &str) -> Result<Socket, tungstenite::Error> {
    if url.starts_with("wss://") {
        // Both of rustls's crypto providers are compiled in (by different dependencies): name
        // the one the HTTP client uses, unless the application has chosen already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(socket, _)| socket)
}

/// Authenticates, subscribes, announces every collection, then forwards events until the
/// connection ends. Fails only when the server refuses the credentials.
async fn session(
    client: &DirectusClient,
    config: &Config,
    socket: &mut Socket,
    notices: &mpsc::Sender<String>,
    stop: &CancellationToken,
) -> Result<Ended, engine::Error> {
    let lost = |e: tungstenite::Error| Ended::Lost(e.to_string());
    if let Some(ended) = authenticate(client, socket).await? {
        return Ok(ended);
    }
    for c in &config.collections {
        let subscribe = json!({"type": "subscribe", "collection": c.name, "uid": c.name,
            "query": {"fields": [c.primary_key]}});
        if let Err(e) = socket.send(Message::text(subscribe.to_string())).await {
            return Ok(lost(e));
        }
    }
    // Changes made while no subscription listened are announced by nobody.
    for c in &config.collections {
        if notices.send(c.name.clone()).await.is_err() {
            return Ok(Ended::Unheard);
        }
    }
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(Ended::Stopped),
            received = tokio::time::timeout(SILENCE, socket.next()) => match received {
                Err(_) => return Ok(Ended::Lost("silent past the heartbeat".into())),
                Ok(None) => return Ok(Ended::Lost("closed".into())),
                Ok(Some(Err(e))) => return Ok(lost(e)),
                Ok(Some(Ok(message))) => message,
            },
        };
        let Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match (message["type"].as_str(), message["event"].as_str()) {
            (Some("ping"), _) => {
                let pong = json!({"type": "pong"}).to_string();
                if let Err(e) = socket.send(Message::text(pong)).await {
                    return Ok(lost(e));
                }
            }
            (Some("auth"), _) if message["status"] == "error" => {
                // Events stop with the token (Directus's `public` mode keeps the connection).
                return Ok(Ended::Lost(format!(
                    "the server ended the authentication: {}",
                    message["error"]["code"]
                )));
            }
            (Some("subscription"), Some("create" | "update" | "delete")) => {
                if let Some(collection) = message["uid"].as_str()
                    && notices.send(collection.to_owned()).await.is_err()
                {
                    return Ok(Ended::Unheard);
                }
            }
            (Some("subscription" | "subscribe"), _) if message["status"] == "error" => {
                warn!(collection = %message["uid"], error = %message["error"],
                    "the server refused a realtime subscription; that collection's server changes arrive on its interval");
            }
            _ => {}
        }
    }
}

/// Sends `auth` with the client's token and, if the server refuses it, once more with a renewed
/// one. `Some` when the connection ended first; an error when the renewed token is refused.
async fn authenticate(
    client: &DirectusClient,
    socket: &mut Socket,
) -> Result<Option<Ended>, engine::Error> {
    let mut token = client.access_token().await?;
    let mut renewed = false;
    loop {
        let auth = json!({"type": "auth", "access_token": token.expose()});
        if let Err(e) = socket.send(Message::text(auth.to_string())).await {
            return Ok(Some(Ended::Lost(e.to_string())));
        }
        match tokio::time::timeout(AUTH_WITHIN, next_json(socket)).await {
            Ok(Some(answer)) if answer["type"] == "auth" && answer["status"] == "ok" => {
                return Ok(None);
            }
            Ok(Some(answer)) if answer["type"] == "auth" && !renewed => {
                debug!(error = %answer["error"], "realtime authentication refused; renewing the token");
                token = client.renewed_access_token(&token).await?;
                renewed = true;
            }
            Ok(Some(answer)) if answer["type"] == "auth" => {
                let message = answer["error"]["message"].as_str().unwrap_or("refused");
                return Err(RemoteError::new(
                    RemoteErrorKind::Auth,
                    format!("realtime authentication: {message}"),
                )
                .into());
            }
            Ok(_) | Err(_) => return Ok(Some(Ended::Lost("no answer to auth".into()))),
        }
    }
}

/// The next text message as JSON, skipping others; `None` when the connection ends.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_client_error_means_the_server_offers_no_realtime() {
        for (status, refused) in [
            (404, true),
            (403, true),
            (400, true),
            (408, false),
            (429, false),
            (500, false),
            (502, false),
            (503, false),
            (200, false),
        ] {
            let status = tungstenite::http::StatusCode::from_u16(status).unwrap();
            assert_eq!(refuses_realtime(status), refused, "{status}");
        }
    }

    #[test]
    fn websocket_urls() {
        for (base, expected) in [
            ("http://127.0.0.1:8055", "ws://127.0.0.1:8055/websocket"),
            (
                "https://cms.example.com/",
                "wss://cms.example.com/websocket",
            ),
            (
                "https://example.com/directus",
                "wss://example.com/directus/websocket",
            ),
        ] {
            assert_eq!(websocket_url(base), expected);
        }
    }
}
