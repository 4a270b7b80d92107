//! The benchmark regression check CI runs: request counts on small fixtures, which do not
//! depend on how fast the machine is. A sync's cost in requests must follow the pages it
//! reads and the rows it changes, never the size of the collection.
//!
//! The bounds are the ones docs/BENCHMARKS.md records; tighten both together.

use benches::{Changes, Fixture, collections, load_reference};
use deltasync::{Config, Deltasync, Row};
use serde_json::json;

/// Requests a sync sends per collection besides its pages: with `deletes: activity`, one
/// page of deletes (which also shows the log still reaches back to the cursor), and the
/// newest activity id on the first pull.
const OVERHEAD_PER_COLLECTION: u64 = 2;
/// Requests a sync sends once: the collections' settings (is their activity logged), and the
/// newest activity entry old enough to have committed (how far delete cursors may move).
const OVERHEAD_PER_SYNC: u64 = 2;
/// Before its first pull a collection's fields are read and one row without a version is
/// asked for: the check that its cursor can see every row.
const FIRST_PULL_CHECK: u64 = 2;

const PAGE: u64 = schema::DEFAULT_PAGE_SIZE as u64;

struct Site {
    server: refserver::ServerHandle,
    fixture: Fixture,
    replica: Deltasync,
    _dir: tempfile::TempDir,
}

impl Site {
    async fn start(posts: usize) -> Site {
        let server = refserver::start(Default::default()).await.expect("server");
        let fixture = Fixture::new(7, posts);
        load_reference(&server, &fixture)
            .await
            .expect("fixture loads");
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("replica.db").display());
        let config = Config::new(server.url(), server.admin_token(), url, collections());
        let replica = deltasync::open(config).await.expect("replica");
        Site {
            server,
            fixture,
            replica,
            _dir: dir,
        }
    }

    /// Runs one sync; returns the requests it sent.
    async fn sync(&self) -> u64 {
        self.server.state().reset_stats();
        let report = self.replica.sync(None).await.expect("sync");
        assert!(!report.failed(), "{report:?}");
        self.server.state().stats().total
    }

    fn rows(&self) -> u64 {
        (self.fixture.posts + self.fixture.authors()) as u64
    }

    /// Pages a full read of both collections takes.
    fn pages(&self) -> u64 {
        self.fixture.posts.div_ceil(PAGE as usize) as u64
            + self.fixture.authors().div_ceil(PAGE as usize) as u64
    }

    fn update_on_server(&self, keys: &[String]) {
        let patch: Row = json!({"title": "changed"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        for key in keys {
            self.server
                .state()
                .update("posts", key, patch.clone())
                .expect("update");
        }
    }
}

#[tokio::test]
async fn an_initial_sync_sends_one_request_per_page_plus_a_fixed_overhead() {
    let site = Site::start(5_000).await;
    let requests = site.sync().await;
    let collections = collections().len() as u64;
    // A page may end inside a group of rows sharing a stamp: one more read per collection.
    let most = site.pages()
        + collections * (OVERHEAD_PER_COLLECTION + 1 + FIRST_PULL_CHECK)
        + OVERHEAD_PER_SYNC;
    assert!(
        requests <= most,
        "{requests} requests for {} rows; at most {most}",
        site.rows()
    );
}

#[tokio::test]
async fn delta_and_no_op_syncs_cost_the_same_requests_whatever_the_collection_size() {
    let mut costs = Vec::new();
    for posts in [2_000, 8_000] {
        let site = Site::start(posts).await;
        site.sync().await;
        site.update_on_server(&Changes::spread(&site.fixture, 100).updated);
        let delta = site.sync().await;
        let noop = site.sync().await;
        costs.push((posts, delta, noop));
    }
    eprintln!("(posts, delta requests, no-op requests): {costs:?}");
    let (small, large) = (costs[0], costs[1]);
    assert_eq!(small.1, large.1, "delta sync of 100 rows: {costs:?}");
    assert_eq!(small.2, large.2, "no-op sync: {costs:?}");
    let collections = collections().len() as u64;
    // One read of changed rows and one of logged deletes per collection, and the settings.
    assert!(
        small.2 <= collections * 2 + OVERHEAD_PER_SYNC,
        "a no-op sync sends at most 2 requests per collection and {OVERHEAD_PER_SYNC} more: {costs:?}"
    );
}

#[tokio::test]
async fn a_push_costs_one_request_per_update_group_and_per_distinct_update() {
    let site = Site::start(3_000).await;
    site.sync().await;
    let posts = site.replica.collection("posts").expect("posts");
    let keys = site.fixture.post_keys(0..600);
    let author = site.fixture.author_rows()[0]["id"].clone();
    for mut data in Fixture::new(8, 300).post_rows(0..300) {
        data["author"] = author.clone();
        posts.insert(data).await.expect("insert");
    }
    // Half the updates change one field alike, half change a field each its own way.
    let patch = |v: serde_json::Value| -> Row { v.as_object().cloned().unwrap_or_default() };
    for key in &keys[..150] {
        assert!(
            posts
                .update(key, patch(json!({"views": 3})))
                .await
                .expect("update")
        );
    }
    for (i, key) in keys[150..300].iter().enumerate() {
        let title = json!({ "title": format!("edited {i}") });
        assert!(posts.update(key, patch(title)).await.expect("update"));
    }
    for key in &keys[300..] {
        assert!(posts.delete(key).await.expect("delete"));
    }
    let requests = site.sync().await;
    // Updates are compare-and-set: one request for those that change the same fields alike,
    // one each for the others. Creates and deletes go in batches.
    let most = 1
        + 150
        + 2 * site.pages()
        + collections().len() as u64 * (OVERHEAD_PER_COLLECTION + 2)
        + OVERHEAD_PER_SYNC;
    assert!(
        requests <= most,
        "{requests} requests for 900 changes; at most {most}"
    );
    assert_eq!(site.server.state().count("posts"), 3_000);
    let server = |key: &String| {
        site.server
            .state()
            .get("posts", key)
            .expect("on the server")
    };
    assert!(keys[..150].iter().all(|k| server(k)["views"] == json!(3)));
    for (i, key) in keys[150..300].iter().enumerate() {
        assert_eq!(server(key)["title"], json!(format!("edited {i}")));
    }
    let again = site.replica.sync(None).await.expect("sync");
    assert!(
        again
            .collections
            .iter()
            .all(|c| c.pushed == 0 && c.conflicts == 0),
        "nothing is left to push: {again:?}"
    );
}
