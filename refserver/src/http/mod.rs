//! HTTP routing and the per-request pipeline.
//!
//! Owns: the route table, the middleware order — statistics, `Date` header from the server
//! clock, injected faults (before anything else happens, like Directus's limiters), then
//! authentication — and the extractors for query strings and size-limited JSON bodies.
//! Must not: hold state of its own or implement data rules (see `db` and `query`).

mod items;
mod realtime;
mod system;

use crate::auth::Accountability;
use crate::db::Actor;
use crate::error::Error;
use crate::faults;
use crate::server::{self, Server};
use axum::Router;
use axum::body::to_bytes;
use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the pipeline learned about a request before its handler runs.
#[derive(Debug, Clone)]
pub(crate) struct RequestCtx {
    pub acc: Accountability,
    pub actor: Actor,
    /// Set by a `BackdateWrites` fault.
    pub backdate: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Backdate(Duration);

pub(crate) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/server/ping", get(system::ping))
        .route("/websocket", get(realtime::upgrade))
        .route("/server/info", get(system::info))
        .route("/auth/login", post(system::login))
        .route("/auth/refresh", post(system::refresh))
        .route("/auth/logout", post(system::logout))
        .route("/users/me", get(system::me))
        .route("/permissions/me", get(system::permissions_me))
        .route(
            "/collections",
            get(system::list_collections).post(system::create_collection),
        )
        .route(
            "/collections/{collection}",
            get(system::get_collection).patch(system::update_collection),
        )
        .route(
            "/fields/{collection}",
            get(system::list_fields).post(system::create_field),
        )
        .route("/fields/{collection}/{field}", get(system::get_field))
        .route(
            "/relations",
            get(system::list_relations).post(system::create_relation),
        )
        .route("/activity", get(system::list_activity))
        .route("/activity/{id}", get(system::get_activity))
        .route(
            "/items/{collection}",
            get(items::list)
                .post(items::create)
                .patch(items::update_many)
                .delete(items::delete_many),
        )
        .route(
            "/items/{collection}/{pk}",
            get(items::read_one)
                .patch(items::update_one)
                .delete(items::delete_one),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(server.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            server.clone(),
            inject_faults,
        ))
        .layer(middleware::from_fn_with_state(server.clone(), date_header))
        .layer(middleware::from_fn_with_state(
            server.clone(),
            count_request,
        ))
        .with_state(server)
}

/// Directus answers unknown routes and methods alike with 404 `ROUTE_NOT_FOUND`.
async fn not_found(uri: Uri) -> Error {
    Error::RouteNotFound {
        path: uri.path().to_string(),
    }
}

async fn count_request(State(s): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str);
    s.record_request(req.method().as_str(), route);
    next.run(req).await
}

/// Every response carries a `Date` from the server clock, so a manual clock shows up there,
/// and JSON goes out with the charset Express names.
async fn date_header(State(s): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&server::http_date(&s)) {
        response.headers_mut().insert(header::DATE, value);
    }
    let headers = response.headers_mut();
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json")
    {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    response
}

async fn inject_faults(State(s): State<Arc<Server>>, mut req: Request, next: Next) -> Response {
    let armed = s.arm_faults(req.method().as_str(), req.uri().path());
    if let Some(error) = armed.fail {
        return error.into_response();
    }
    if let Some(by) = armed.backdate {
        req.extensions_mut().insert(Backdate(by));
    }
    let response = next.run(req).await;
    match armed.commit_then_fail {
        Some((id, status)) if response.status().is_success() && s.consume_fault(id) => {
            let code = faults::code_for_status(status);
            faults::injected_error(status, code, None, s.now_ms()).into_response()
        }
        _ => response,
    }
}

/// Resolves the token for every route but the ping, as Directus's global `authenticate`
/// middleware does (so a bad token fails even on `/auth/login`).
async fn authenticate(State(s): State<Arc<Server>>, mut req: Request, next: Next) -> Response {
    // Directus answers the ping before it looks at the token.
    if req.uri().path() == "/server/ping" {
        return next.run(req).await;
    }
    let token = bearer_token(req.headers()).or_else(|| query_token(req.uri()));
    let now = s.now_ms();
    let acc = match s.with_auth(|auth| auth.resolve(token.as_deref(), now)) {
        Ok(acc) => acc,
        Err(e) => return e.into_response(),
    };
    let actor = Actor {
        user: acc.user.clone(),
        ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: header_text(req.headers(), header::USER_AGENT),
        origin: header_text(req.headers(), header::ORIGIN),
    };
    let backdate = req.extensions().get::<Backdate>().map(|b| b.0);
    req.extensions_mut().insert(RequestCtx {
        acc,
        actor,
        backdate,
    });
    next.run(req).await
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn query_token(uri: &Uri) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v)
}

/// The query string as ordered pairs (repeated keys kept).
#[derive(Debug)]
pub(crate) struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|_| Error::InvalidQuery("Invalid query string".into()))
    }
}

/// A JSON body no larger than `max_payload_bytes`; `None` when the body is empty (Express
/// then hands the route an empty object).
#[derive(Debug)]
pub(crate) struct JsonBody(pub Option<Value>);

impl FromRequest<Arc<Server>> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, s: &Arc<Server>) -> Result<Self, Error> {
        let limit = s.options().max_payload_bytes;
        let too_large = || Error::InvalidPayload("request entity too large".into());
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let bytes = to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(|e| Error::InvalidPayload(e.to_string()))
    }
}
