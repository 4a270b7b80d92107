//! The fault proxy's WebSocket relay: an upgrade is passed on to the server, then messages go
//! both ways unchanged until either side closes or the proxy cuts realtime (an outage, or
//! [`FaultProxy::set_realtime_down`](super::FaultProxy::set_realtime_down)). A cut drops both
//! connections without a close frame, as a network failure does. While realtime is down an
//! upgrade is answered 502, as a load balancer answers when the server behind it is gone.
//! Heartbeats at the frame level are answered by each side's own WebSocket library; the
//! relay passes text and binary messages only. Must not: inspect or change messages.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::header::UPGRADE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Upstream;

use super::Shared;

type UpstreamSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Relays an upgrade, or answers 502 when it is `refused`.
pub(super) async fn relay(shared: Arc<Shared>, request: Request, refused: bool) -> Response {
    if refused {
        return bad_gateway();
    }
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let upstream = shared.upstream.replacen("http", "ws", 1)
        + parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok((server, _)) = tokio_tungstenite::connect_async(upstream).await else {
        return bad_gateway();
    };
    let cut = shared.cut.subscribe();
    upgrade.on_upgrade(move |client| pipe(shared, client, server, cut))
}

async fn pipe(
    shared: Arc<Shared>,
    mut client: WebSocket,
    mut server: UpstreamSocket,
    mut cut: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        tokio::select! {
            _ = cut.changed() => return,
            received = client.recv() => {
                let message = match received {
                    Some(Ok(Message::Text(text))) => Upstream::text(text.as_str()),
                    Some(Ok(Message::Binary(bytes))) => Upstream::binary(bytes),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        let _ = server.close(None).await;
                        return;
                    }
                };
                if server.send(message).await.is_err() {
                    return;
                }
            }
            received = server.next() => {
                let message = match received {
                    Some(Ok(Upstream::Text(text))) => Message::Text(text.as_str().into()),
                    Some(Ok(Upstream::Binary(bytes))) => Message::Binary(bytes),
                    Some(Ok(Upstream::Ping(_) | Upstream::Pong(_) | Upstream::Frame(_))) => continue,
                    Some(Ok(Upstream::Close(_)) | Err(_)) | None => {
                        let _ = client.send(Message::Close(None)).await;
                        return;
                    }
                };
                // Checked after the message arrived: whatever the server says once realtime
                // is down is lost, as it would be on a broken network.
                if shared.realtime_refused() {
                    return;
                }
                if client.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn bad_gateway() -> Response {
    let mut response = Response::new(Body::from("502 Bad Gateway"));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
