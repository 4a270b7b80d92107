//! A Directus-compatible server that tests reach over REST only: the reference server, or a
//! real Directus named by `DELTASYNC_TEST_DIRECTUS` (its URL) and
//! `DELTASYNC_TEST_DIRECTUS_TOKEN` (an admin token).
//!
//! Scenarios written against a [`Site`] run unchanged on both. Each collection gets a random
//! suffix, so that tests sharing one Directus never meet. When the variables are set
//! and the server cannot be used, tests fail rather than skip.

use deltasync::{CollectionConfig, Config, Deltasync, DirectusClient, Row};
use refserver::ServerHandle;
use serde_json::{Value, json};

use crate::Databases;

type Method = adapters::directus::Method;

/// Rows per request when seeding.
const SEED_BATCH: usize = 1000;

/// A server under test, with an admin client.
#[derive(Debug)]
pub struct Site {
    /// `reference` or `directus`, for failure messages.
    pub label: &'static str,
    pub url: String,
    token: String,
    client: DirectusClient,
    /// Collections made here, dropped by [`Site::cleanup`].
    created: std::sync::Mutex<Vec<String>>,
    /// The user and policy behind [`Site::limited_token`], removed by [`Site::cleanup`].
    limited: std::sync::Mutex<Option<Limited>>,
    reference: Option<ServerHandle>,
}

/// Every (site, backend) pair: each site with databases of its own on each backend.
pub async fn pairs() -> Vec<(Site, Databases)> {
    let mut out = Vec::new();
    for backend in crate::backends() {
        for site in sites().await {
            out.push((site, Databases::new(backend.clone())));
        }
    }
    out
}

/// The reference server always; the real Directus too when `DELTASYNC_TEST_DIRECTUS` is set.
pub async fn sites() -> Vec<Site> {
    let mut out = vec![Site::reference().await];
    out.extend(Site::directus().await);
    out
}

impl Site {
    /// A reference server of its own.
    pub async fn reference() -> Site {
        let server = refserver::start(Default::default())
            .await
            .expect("reference server starts");
        let (url, token) = (server.url(), server.admin_token().to_owned());
        Site::new("reference", url, token, Some(server))
    }

    /// The Directus named by the environment, checked to answer; `None` when not asked for.
    pub async fn directus() -> Option<Site> {
        let url = std::env::var("DELTASYNC_TEST_DIRECTUS")
            .ok()
            .filter(|u| !u.is_empty())?;
        let token = std::env::var("DELTASYNC_TEST_DIRECTUS_TOKEN").unwrap_or_else(|_| {
            panic!("DELTASYNC_TEST_DIRECTUS is set but DELTASYNC_TEST_DIRECTUS_TOKEN is not")
        });
        let site = Site::new("directus", url, token, None);
        site.client.server_info().await.unwrap_or_else(|e| {
            panic!(
                "DELTASYNC_TEST_DIRECTUS is set but {} does not answer: {e}",
                site.url
            )
        });
        Some(site)
    }

    fn new(
        label: &'static str,
        url: String,
        token: String,
        reference: Option<ServerHandle>,
    ) -> Site {
        let remote = schema::RemoteConfig::new(
            url.clone(),
            schema::Auth::Token(schema::Secret::new(token.clone())),
        );
        let client = DirectusClient::new(&remote).expect("client");
        Site {
            label,
            url,
            token,
            client,
            created: Default::default(),
            limited: Default::default(),
            reference,
        }
    }

    /// Creates a collection named `base` plus a random suffix, with a uuid key, a
    /// `last_modified` cursor and `fields`; returns its configuration.
    pub async fn collection(
        &self,
        base: &str,
        fields: &[(&str, deltasync::FieldType)],
    ) -> CollectionConfig {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let config = crate::World::config(&format!("{base}_{suffix}"), fields);
        let created = match cli::remote_setup::create_collection(&self.client, &config).await {
            // A retried create whose first attempt landed (Directus is slow to change its
            // schema while other tests change theirs) finds the collection there.
            Err(_) if self.exists(&config.name).await => Ok(()),
            other => other,
        };
        created.unwrap_or_else(|e| {
            // Directus Core counts at most 25 active collections.
            let hint = if e.code.as_deref() == Some("LIMIT_EXCEEDED") {
                "; collections left by failed runs go with `scripts/directus down --wipe`"
            } else {
                ""
            };
            panic!("{}: creating {}: {e}{hint}", self.label, config.name)
        });
        self.created.lock().unwrap().push(config.name.clone());
        let mut expected = vec![config.primary_key.as_str(), config.cursor.as_str()];
        expected.extend(config.fields.iter().map(|f| f.name.as_str()));
        self.until_listed(&config.name, &expected).await;
        config
    }

    /// Waits until `GET /fields/{collection}` lists every one of `fields`. Directus answers
    /// from a schema cache that a concurrent request can refill with the schema from before
    /// a collection was created: a sync started at once could find its fields missing. Such a
    /// cache stays stale until the next schema change, so every second of waiting it is
    /// cleared (`POST /utils/cache/clear?system=true`, admin only). The same holds for a field
    /// added to an existing collection.
    pub async fn until_listed(&self, collection: &str, fields: &[&str]) {
        for attempt in 1..=50 {
            let listed = self.client.fields(collection).await.ok();
            let names: Vec<&str> = listed
                .as_ref()
                .and_then(|body| body["data"].as_array())
                .map(|list| list.iter().filter_map(|f| f["field"].as_str()).collect())
                .unwrap_or_default();
            if fields.iter().all(|f| names.contains(f)) {
                return;
            }
            if attempt % 10 == 0 && self.reference.is_none() {
                let system = [("system", "true".to_owned())];
                self.call(Method::POST, "/utils/cache/clear", &system, None)
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "{}: {collection} never listed all of {fields:?}",
            self.label
        );
    }

    /// Creates a collection as the Data Studio makes one with every optional system field:
    /// an auto-increment integer `id`, `status`, `sort`, `user_created`, `date_created`,
    /// `user_updated`, `date_updated`, then `fields`. Returns the configuration that syncs it
    /// on the standard date fields.
    pub async fn stock_collection(
        &self,
        base: &str,
        fields: &[(&str, deltasync::FieldType)],
    ) -> CollectionConfig {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut config =
            crate::World::config(&format!("{base}_{suffix}"), fields).with_date_cursor();
        config.key_type = deltasync::KeyType::Integer;
        let system = |field: &str, kind: &str, special: Option<&str>| {
            json!({"field": field, "type": kind, "schema": {},
                "meta": {"special": special.map(|s| vec![s]), "interface": "input",
                    "readonly": special.is_some(), "hidden": true, "width": "half"}})
        };
        let mut definition = vec![
            json!({"field": "id", "type": "integer",
                "meta": {"hidden": true, "interface": "input", "readonly": true},
                "schema": {"is_primary_key": true, "has_auto_increment": true}}),
            json!({"field": "status", "type": "string",
                "meta": {"width": "full", "interface": "select-dropdown", "display": "labels"},
                "schema": {"default_value": "draft", "is_nullable": false}}),
            system("sort", "integer", None),
            system("user_created", "uuid", Some("user-created")),
            system("date_created", "timestamp", Some("date-created")),
            system("user_updated", "uuid", Some("user-updated")),
            system("date_updated", "timestamp", Some("date-updated")),
        ];
        definition.extend(fields.iter().map(|(name, kind)| {
            cli::remote_setup::plain_field(name, cli::remote_setup::directus_type(*kind))
        }));
        let body = json!({"collection": config.name, "schema": {},
            "meta": {"accountability": "all", "sort_field": "sort",
                "archive_field": "status", "archive_value": "archived", "unarchive_value": "draft"},
            "fields": definition});
        self.call(Method::POST, "/collections", &[], Some(&body))
            .await;
        self.created.lock().unwrap().push(config.name.clone());
        let mut expected = vec!["id", "date_created", "date_updated"];
        expected.extend(fields.iter().map(|(name, _)| *name));
        self.until_listed(&config.name, &expected).await;
        config
    }

    /// Creates the junction collection of a many-to-many relation between `left` and
    /// `right`, as the Data Studio makes it: an auto-increment `id` and one many-to-one field
    /// to each side (`{left}_id`, `{right}_id`), without date fields. Returns its name.
    pub async fn junction(&self, left: &str, right: &str) -> String {
        let name = format!("{left}_{right}");
        let side = |collection: &str| {
            json!({"field": format!("{collection}_id"), "type": "integer",
                "meta": {"hidden": true}, "schema": {}})
        };
        let body = json!({"collection": name, "schema": {}, "meta": {"hidden": true, "accountability": "all"},
        "fields": [
            {"field": "id", "type": "integer", "meta": {"hidden": true},
                "schema": {"is_primary_key": true, "has_auto_increment": true}},
            side(left),
            side(right),
        ]});
        self.call(Method::POST, "/collections", &[], Some(&body))
            .await;
        self.created.lock().unwrap().push(name.clone());
        let sides = [format!("{left}_id"), format!("{right}_id")];
        self.until_listed(&name, &["id", &sides[0], &sides[1]])
            .await;
        for collection in [left, right] {
            let relation = json!({"collection": name, "field": format!("{collection}_id"),
                "related_collection": collection});
            self.relate(&relation).await;
        }
        name
    }

    /// Creates a relation (the body of `POST /relations`); panics with the site's label.
    pub async fn relate(&self, relation: &Value) {
        cli::remote_setup::create_relation(&self.client, relation)
            .await
            .unwrap_or_else(|e| panic!("{}: POST /relations: {e}", self.label));
    }

    /// Whether the server has a collection of that name.
    async fn exists(&self, collection: &str) -> bool {
        self.client.collection_info(collection).await.is_ok()
    }

    /// Drops the collections this site created: a real Directus counts them against a limit.
    /// The reference server holds them in memory and goes with the site.
    pub async fn cleanup(&self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap());
        if self.reference.is_some() {
            return;
        }
        let limited = self.limited.lock().unwrap().take();
        if let Some(limited) = limited {
            // Users count against the server's seats.
            self.call(
                Method::DELETE,
                &format!("/users/{}", limited.user),
                &[],
                None,
            )
            .await;
            self.call(
                Method::DELETE,
                &format!("/policies/{}", limited.policy),
                &[],
                None,
            )
            .await;
        }
        // Children first: a relation's foreign key keeps its parent table from being dropped.
        for name in created.iter().rev() {
            self.call(Method::DELETE, &format!("/collections/{name}"), &[], None)
                .await;
        }
    }

    /// The configuration of a replica of `collections` with a fresh database.
    pub async fn replica_config(
        &self,
        databases: &mut Databases,
        collections: Vec<CollectionConfig>,
    ) -> Config {
        Config::new(
            self.url.clone(),
            self.token.clone(),
            databases.fresh().await,
            collections,
        )
    }

    /// A replica of `collections` with a fresh database.
    pub async fn replica(
        &self,
        databases: &mut Databases,
        collections: Vec<CollectionConfig>,
    ) -> Deltasync {
        let config = self.replica_config(databases, collections).await;
        deltasync::open(config).await.expect("replica opens")
    }

    /// A replica of `collections` whose requests go through a proxy at `url` (a fault proxy
    /// in front of this site), retrying quickly.
    pub async fn replica_behind(
        &self,
        databases: &mut Databases,
        url: String,
        collections: Vec<CollectionConfig>,
    ) -> Deltasync {
        let database = databases.fresh().await;
        crate::replica_with_quick_retries(url, self.token.clone(), database, collections).await
    }

    /// An admin request that may fail.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, deltasync::RemoteError> {
        self.client.request(method, path, query, body, None).await
    }

    /// An admin request; panics with the site's label on failure.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Value {
        self.try_call(method.clone(), path, query, body)
            .await
            .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.label))
    }

    /// Creates rows as a Directus user would, a batch per request; returns them as stored.
    pub async fn insert(&self, collection: &str, rows: Vec<Row>) -> Vec<Row> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(SEED_BATCH) {
            let body = Value::Array(chunk.iter().cloned().map(Value::Object).collect());
            let created = self
                .call(
                    Method::POST,
                    &format!("/items/{collection}"),
                    &[],
                    Some(&body),
                )
                .await;
            out.extend(objects(created));
        }
        out
    }

    /// Updates one row.
    pub async fn update(&self, collection: &str, key: &str, patch: Row) -> Row {
        let body = Value::Object(patch);
        let updated = self
            .call(
                Method::PATCH,
                &format!("/items/{collection}/{key}"),
                &[],
                Some(&body),
            )
            .await;
        updated["data"].as_object().cloned().unwrap_or_default()
    }

    /// Updates many rows in one request: Directus stamps them all alike.
    pub async fn update_many(&self, collection: &str, keys: &[String], patch: Row) {
        let body = json!({ "keys": keys, "data": patch });
        self.call(
            Method::PATCH,
            &format!("/items/{collection}"),
            &[],
            Some(&body),
        )
        .await;
    }

    /// Deletes rows by key.
    pub async fn delete(&self, collection: &str, keys: &[String]) {
        let body = json!(keys);
        self.call(
            Method::DELETE,
            &format!("/items/{collection}"),
            &[],
            Some(&body),
        )
        .await;
    }

    /// Every row of a collection, by key.
    pub async fn rows(&self, collection: &str) -> Vec<Row> {
        let mut out = Vec::new();
        loop {
            let query = [
                ("sort", "id".to_owned()),
                ("limit", SEED_BATCH.to_string()),
                ("offset", out.len().to_string()),
            ];
            let page = objects(
                self.call(Method::GET, &format!("/items/{collection}"), &query, None)
                    .await,
            );
            let done = page.len() < SEED_BATCH;
            out.extend(page);
            if done {
                return out;
            }
        }
    }

    /// Asserts that the replica holds exactly this site's rows of `collection`, all synced.
    pub async fn assert_converged<R: engine::ports::Remote>(
        &self,
        replica: &engine::Engine<adapters::SqlStore, R>,
        collection: &str,
    ) {
        let server = self.rows(collection).await;
        crate::assert_same_rows(&server, replica, collection).await;
    }
}

/// A non-admin user of a real Directus whose policy allows every action on one collection.
#[derive(Debug)]
struct Limited {
    user: String,
    policy: String,
    collection: String,
    /// The permission row of each action, while it exists.
    permissions: std::collections::HashMap<String, String>,
}

const ACTIONS: [&str; 4] = ["create", "read", "update", "delete"];

impl Site {
    /// A token that may do everything on `collection` and read the activity log, and no
    /// more: on a real Directus a user with a policy of its own; on the reference server the
    /// admin token. [`Site::revoke`] takes one action away from it, as an administrator
    /// editing the policy would.
    pub async fn limited_token(&self, collection: &str) -> String {
        self.token_for(collection, &ACTIONS, true).await
    }

    /// A token that may do `actions` on `collection`, and read the activity log when
    /// `activity_log`, and no more: on a real Directus a user with a policy of its own,
    /// removed by [`Site::cleanup`]; on the reference server the admin token.
    pub async fn token_for(
        &self,
        collection: &str,
        actions: &[&str],
        activity_log: bool,
    ) -> String {
        if self.reference.is_some() {
            return self.token.clone();
        }
        let post = Method::POST;
        let policy = self
            .call(
                post.clone(),
                "/policies",
                &[],
                Some(&json!({"name": collection, "app_access": false, "admin_access": false})),
            )
            .await["data"]["id"]
            .as_str()
            .expect("policy id")
            .to_owned();
        let mut limited = Limited {
            user: String::new(),
            policy,
            collection: collection.to_owned(),
            permissions: Default::default(),
        };
        for action in actions {
            let id = self.grant(&limited.policy, collection, action).await;
            limited.permissions.insert((*action).to_owned(), id);
        }
        if activity_log {
            self.grant(&limited.policy, "directus_activity", "read")
                .await;
        }
        let token = format!("limited-{}", uuid::Uuid::new_v4().simple());
        limited.user = self
            .call(
                post,
                "/users",
                &[],
                Some(&json!({
                    "email": format!("{token}@example.com"),
                    "token": token,
                    "policies": [{"policy": limited.policy}],
                })),
            )
            .await["data"]["id"]
            .as_str()
            .expect("user id")
            .to_owned();
        *self.limited.lock().unwrap() = Some(limited);
        token
    }

    async fn grant(&self, policy: &str, collection: &str, action: &str) -> String {
        let body = json!({"policy": policy, "collection": collection, "action": action, "fields": ["*"], "permissions": {}});
        let created = self
            .call(Method::POST, "/permissions", &[], Some(&body))
            .await;
        created["data"]["id"].to_string()
    }

    /// The admin token.
    pub fn admin_token(&self) -> String {
        self.token.clone()
    }

    /// Takes `action` on `collection` away from the token of [`Site::limited_token`].
    pub async fn revoke(&self, collection: &str, action: &str) {
        if let Some(server) = &self.reference {
            return server.state().revoke(collection, action);
        }
        let id = {
            let mut limited = self.limited.lock().unwrap();
            let limited = limited.as_mut().expect("a limited token was made");
            assert_eq!(limited.collection, collection);
            limited.permissions.remove(action).expect("granted")
        };
        self.call(Method::DELETE, &format!("/permissions/{id}"), &[], None)
            .await;
    }

    /// Gives back what [`Site::revoke`] took.
    pub async fn restore(&self, collection: &str, action: &str) {
        if let Some(server) = &self.reference {
            return server.state().restore(collection, action);
        }
        let policy = self
            .limited
            .lock()
            .unwrap()
            .as_ref()
            .expect("a limited token was made")
            .policy
            .clone();
        let id = self.grant(&policy, collection, action).await;
        if let Some(limited) = self.limited.lock().unwrap().as_mut() {
            limited.permissions.insert(action.to_owned(), id);
        }
    }
}

fn objects(body: Value) -> Vec<Row> {
    match body.get("data") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_object().cloned())
            .collect(),
        Some(Value::Object(item)) => vec![item.clone()],
        _ => Vec::new(),
    }
}
