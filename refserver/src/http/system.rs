//! Routes outside `/items`: server, auth, current user, collections, fields and activity.
//!
//! Owns: request checks and response envelopes for these routes, in Directus's shapes.
//! Must not: implement data, query or token rules (see `db`, `query`, `auth`).

use super::items::{page_body, read_keys, url_query};
use super::{JsonBody, Params, RequestCtx};
use crate::auth::Session;
use crate::db::ACTIVITY;
use crate::error::Error;
use crate::schema::{CollectionDef, FieldDef};
use crate::server::Server;
use crate::store::Key;
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;

type Reply = Result<Response, Error>;

fn data(v: Value) -> Response {
    Json(json!({ "data": v })).into_response()
}

fn require_admin(ctx: &RequestCtx) -> Result<(), Error> {
    if ctx.acc.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// Only the admin may read schema; others get Directus's "read" permission error for
/// `collection`.
fn require_admin_to_read(ctx: &RequestCtx, collection: &str) -> Result<(), Error> {
    if ctx.acc.is_admin() {
        Ok(())
    } else {
        Err(Error::ForbiddenReason {
            reason: format!(
                "You don't have permission to perform \"read\" for collection \"{collection}\" or it does not exist."
            ),
        })
    }
}

fn object(body: Option<Value>) -> Result<Map<String, Value>, Error> {
    match body.unwrap_or_else(|| json!({})) {
        Value::Object(m) => Ok(m),
        _ => Err(Error::InvalidPayload(
            "\"value\" must be of type object".into(),
        )),
    }
}

/// `pong`, with the content type Express gives a string.
pub(super) async fn ping() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], "pong").into_response()
}

pub(super) async fn info(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Response {
    let mut info = Map::new();
    info.insert(
        "project".into(),
        json!({
            "project_name": "refserver",
            "project_descriptor": null,
            "project_logo": null,
            "project_color": "#6644FF",
            "default_appearance": "auto",
            "default_theme_light": null,
            "default_theme_dark": null,
            "theme_light_overrides": null,
            "theme_dark_overrides": null,
            "default_language": "en-US",
            "public_foreground": null,
            "public_background": null,
            "public_favicon": null,
            "public_note": null,
            "custom_css": null,
            "public_registration": false,
            "public_registration_verify_email": true,
        }),
    );
    // Like Directus, the limits and features are only told to authenticated callers.
    if ctx.acc.is_admin() {
        let max = s.options().query_limit_max.map_or(json!(-1), |m| json!(m));
        info.insert("project_owner_enabled".into(), json!(false));
        info.insert("mcp_enabled".into(), json!(false));
        info.insert("ai_enabled".into(), json!(false));
        info.insert("mcp_oauth_enabled".into(), json!(false));
        info.insert("mcp_oauth_dcr_enabled".into(), json!(false));
        info.insert("mcp_oauth_cimd_enabled".into(), json!(false));
        info.insert("autoSave".into(), json!({ "revisionInterval": 300 }));
        info.insert("ai_providers".into(), json!([]));
        info.insert("files".into(), json!({ "mimeTypeAllowList": ["*/*"] }));
        info.insert("rateLimit".into(), json!(false));
        info.insert("rateLimitGlobal".into(), json!(false));
        info.insert("extensions".into(), json!({ "limit": null }));
        info.insert(
            "queryLimit".into(),
            json!({ "default": crate::query::DEFAULT_LIMIT, "max": max }),
        );
        // WEBSOCKETS_ENABLED: what Directus 12.4.0 reports with its defaults otherwise
        // (REST and GraphQL subscriptions, authentication inside the connection).
        let websocket = if s.options().websockets {
            json!({
                "rest": {"authentication": "handshake", "path": "/websocket"},
                "graphql": {"authentication": "handshake", "path": "/graphql"},
                "heartbeat": s.options().ws_ping_interval.as_secs(),
                "collaborativeEditing": true,
                "logs": {"allowedLogLevels": {"info": 30, "warn": 40, "error": 50, "fatal": 60}},
            })
        } else {
            json!(false)
        };
        info.insert("websocket".into(), websocket);
        info.insert("version".into(), json!("12.4.0"));
    }
    info.insert(
        "license".into(),
        json!({
            "source": null,
            "entitlements": {
                "production_enabled": true,
                "ai_translations_enabled": false,
                "display_powered_by": "DIRECTUS",
            },
        }),
    );
    data(Value::Object(info))
}

fn session_body(session: Session) -> Response {
    data(json!({
        "access_token": session.access_token,
        "expires": session.expires_ms,
        "refresh_token": session.refresh_token,
    }))
}

/// Only `mode: "json"` (the default) is served: tokens travel in the body, never in cookies.
fn check_mode(body: &Map<String, Value>) -> Result<(), Error> {
    match body.get("mode") {
        None => Ok(()),
        Some(Value::String(m)) if m == "json" => Ok(()),
        Some(_) => Err(Error::InvalidPayload("\"mode\" must be [json]".into())),
    }
}

fn required_str<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, Error> {
    match body.get(name) {
        None | Some(Value::Null) => Err(Error::InvalidPayload(format!("\"{name}\" is required"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::InvalidPayload(format!(
            "\"{name}\" must be a string"
        ))),
    }
}

pub(super) async fn login(State(s): State<Arc<Server>>, JsonBody(body): JsonBody) -> Reply {
    let body = object(body)?;
    let email = required_str(&body, "email")?;
    let password = required_str(&body, "password")?;
    check_mode(&body)?;
    let now = s.now_ms();
    let session = s.with_auth(|auth| auth.login(email, password, now))?;
    Ok(session_body(session))
}

fn refresh_token(body: &Map<String, Value>) -> Result<&str, Error> {
    body.get("refresh_token")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::InvalidPayload(
                "The refresh token is required in either the payload or cookie".into(),
            )
        })
}

pub(super) async fn refresh(State(s): State<Arc<Server>>, JsonBody(body): JsonBody) -> Reply {
    let body = object(body)?;
    check_mode(&body)?;
    let token = refresh_token(&body)?;
    let now = s.now_ms();
    let session = s.with_auth(|auth| auth.refresh(token, now))?;
    Ok(session_body(session))
}

pub(super) async fn logout(State(s): State<Arc<Server>>, JsonBody(body): JsonBody) -> Reply {
    let body = object(body)?;
    let token = refresh_token(&body)?;
    s.with_auth(|auth| auth.logout(token))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn me(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Reply {
    let Some(id) = ctx.acc.user.clone() else {
        return Err(Error::InvalidCredentials);
    };
    let (email, role) = s.with_auth(|auth| (auth.email().to_string(), auth.role_id.clone()));
    Ok(data(json!({
        "id": id,
        "first_name": "Admin",
        "last_name": "User",
        "email": email,
        "role": role,
        "status": "active",
    })))
}

/// What the caller may do, per collection and action, as Directus's `GET /permissions/me`
/// answers it: the admin everything (but what a test revoked), the public role nothing.
pub(super) async fn permissions_me(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Reply {
    let mut out = Map::new();
    if ctx.acc.is_admin() {
        // The system collections served here, then the user's.
        let mut names: Vec<String> = [
            "directus_activity",
            "directus_collections",
            "directus_fields",
            "directus_users",
        ]
        .map(str::to_owned)
        .into();
        names.extend(s.with_db(|db| db.collections().map(|c| c.name.clone()).collect::<Vec<_>>()));
        for name in names {
            let mut actions = Map::new();
            for action in ["create", "read", "update", "delete", "share"] {
                let grant = if s.allows(&name, action) {
                    json!({"access": "full", "fields": ["*"]})
                } else {
                    json!({"access": "none"})
                };
                actions.insert(action.to_owned(), grant);
            }
            out.insert(name, Value::Object(actions));
        }
    }
    Ok(data(Value::Object(out)))
}

pub(super) async fn list_collections(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Reply {
    // The public role may not read `directus_collections`.
    if !ctx.acc.is_admin() {
        return Err(Error::unknown_collection("directus_collections"));
    }
    let list = s.with_db(|db| db.collections().map(|c| c.describe()).collect::<Vec<_>>());
    Ok(data(Value::Array(list)))
}

pub(super) async fn create_collection(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    JsonBody(body): JsonBody,
) -> Reply {
    require_admin(&ctx)?;
    let def: CollectionDef = serde_json::from_value(Value::Object(object(body)?))
        .map_err(|e| Error::InvalidPayload(e.to_string()))?;
    s.with_db(|db| Ok(data(db.create_collection(&def)?.describe())))
}

pub(super) async fn get_collection(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
) -> Reply {
    require_admin_to_read(&ctx, &collection)?;
    s.with_db(|db| match db.table(&collection) {
        Ok(t) if collection != ACTIVITY => Ok(data(t.schema.describe())),
        _ => Err(Error::Forbidden),
    })
}

pub(super) async fn update_collection(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
    JsonBody(body): JsonBody,
) -> Reply {
    require_admin(&ctx)?;
    let body = object(body)?;
    let meta = match body.get("meta") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    s.with_db(|db| {
        Ok(data(
            db.update_collection_meta(&collection, &meta)?.describe(),
        ))
    })
}

pub(super) async fn list_fields(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
) -> Reply {
    require_admin_to_read(&ctx, "directus_fields")?;
    s.with_db(|db| match db.table(&collection) {
        Ok(t) if collection != ACTIVITY => Ok(data(t.schema.describe_fields())),
        Ok(_) => Err(Error::Forbidden),
        Err(e) => Err(e),
    })
}

pub(super) async fn get_field(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path((collection, field)): Path<(String, String)>,
) -> Reply {
    require_admin_to_read(&ctx, &collection)?;
    s.with_db(|db| {
        let table = db.table(&collection)?;
        let i = table.schema.field_index(&field).ok_or(Error::Forbidden)?;
        Ok(data(table.schema.fields[i].describe(&collection, i + 1)))
    })
}

pub(super) async fn create_field(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
    JsonBody(body): JsonBody,
) -> Reply {
    require_admin(&ctx)?;
    let def: FieldDef = serde_json::from_value(Value::Object(object(body)?))
        .map_err(|e| Error::InvalidPayload(e.to_string()))?;
    s.with_db(|db| Ok(data(db.create_field(&collection, &def)?)))
}

pub(super) async fn list_relations(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Reply {
    require_admin_to_read(&ctx, "directus_relations")?;
    Ok(data(Value::Array(s.with_db(|db| db.relations().to_vec()))))
}

pub(super) async fn create_relation(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    JsonBody(body): JsonBody,
) -> Reply {
    require_admin(&ctx)?;
    let body = object(body)?;
    s.with_db(|db| Ok(data(db.create_relation(&body)?)))
}

pub(super) async fn list_activity(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Params(params): Params,
) -> Reply {
    let q = url_query(&s, &params)?;
    if !ctx.acc.is_admin() {
        return Err(Error::unknown_collection(ACTIVITY));
    }
    let body = s.with_db(|db| page_body(db.table(ACTIVITY)?, &q))?;
    Ok(Json(body).into_response())
}

pub(super) async fn get_activity(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    Params(params): Params,
) -> Reply {
    let q = url_query(&s, &params)?;
    if !ctx.acc.is_admin() {
        return Err(Error::unknown_collection(ACTIVITY));
    }
    s.with_db(|db| {
        let table = db.table(ACTIVITY)?;
        let key = Key::parse(table.schema.pk_field().kind, &id).ok_or(Error::Forbidden)?;
        let row = read_keys(table, &q, &[key])?
            .into_iter()
            .next()
            .ok_or(Error::Forbidden)?;
        Ok(data(row))
    })
}
