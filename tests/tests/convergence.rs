//! Convergence under random histories: creates, updates of single fields and deletes on two
//! or three replicas and on the server, syncs through a faulty network, and conflicting edits.
//! After quiescence every replica equals the server, every conflict was decided as its
//! strategy says (field by field for rows edited on both sides), and every local write is on
//! the server or recorded as resolved against it.
//!
//! `DELTASYNC_PROPTEST_CASES` asks for more histories per strategy and backend (a longer soak).
//! Shrunk failing histories are kept below as regression tests.

use std::collections::{BTreeMap, BTreeSet};

use deltasync::{
    Choice, ConflictKind, ConflictRecord, Deltasync, Resolution, Row, Strategy, SyncReport,
};
use engine::FieldSource;
use engine::plan::same_value;
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use refserver::proxy::FaultProxy;
use serde_json::json;
use tests::{Backend, FIELDS, World, assert_converged, backends, row};

/// Histories per strategy and backend in an ordinary run.
const CASES: u32 = 12;

/// Share of requests that fail during a faulty sync.
const FAULT_RATE: f64 = 0.3;

/// Where a write is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Replica(usize),
    Server,
}

/// One step of a history. `pick` chooses among the keys created so far (modulo their count).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Create(Side),
    /// Writes a new title, and nothing else.
    Update(Side, usize),
    /// Writes a new `views`, and nothing else.
    UpdateViews(Side, usize),
    Delete(Side, usize),
    /// A sync of one replica; `faulty` puts the network under fault injection for it.
    Sync {
        replica: usize,
        faulty: bool,
    },
    /// A person decides the replica's parked conflicts (manual strategy).
    Resolve(usize),
}

#[derive(Debug, Clone)]
struct History {
    strategy: Strategy,
    replicas: usize,
    seed: u64,
    ops: Vec<Op>,
}

fn side(replicas: usize) -> impl proptest::strategy::Strategy<Value = Side> {
    prop_oneof![
        3 => (0..replicas).prop_map(Side::Replica),
        1 => Just(Side::Server),
    ]
}

fn op(replicas: usize) -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        2 => side(replicas).prop_map(Op::Create),
        3 => (side(replicas), 0..64usize).prop_map(|(s, k)| Op::Update(s, k)),
        3 => (side(replicas), 0..64usize).prop_map(|(s, k)| Op::UpdateViews(s, k)),
        1 => (side(replicas), 0..64usize).prop_map(|(s, k)| Op::Delete(s, k)),
        3 => (0..replicas, any::<bool>()).prop_map(|(replica, faulty)| Op::Sync { replica, faulty }),
        1 => (0..replicas).prop_map(Op::Resolve),
    ]
}

fn history(strategy: Strategy) -> impl proptest::strategy::Strategy<Value = History> {
    (2..=3usize, any::<u64>()).prop_flat_map(move |(replicas, seed)| {
        proptest::collection::vec(op(replicas), 1..40).prop_map(move |ops| History {
            strategy,
            replicas,
            seed,
            ops,
        })
    })
}

fn cases() -> u32 {
    std::env::var("DELTASYNC_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES)
}

fn check_strategy(strategy: Strategy) {
    for backend in backends() {
        let mut runner = TestRunner::new(RunnerConfig {
            cases: cases(),
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let outcome = runner.run(&history(strategy), |h| {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(replay(backend.clone(), h));
            Ok(())
        });
        if let Err(e) = outcome {
            panic!("{backend:?}: {e}");
        }
    }
}

#[test]
fn last_write_wins_converges() {
    check_strategy(Strategy::LastWriteWins);
}

#[test]
fn first_write_wins_converges() {
    check_strategy(Strategy::FirstWriteWins);
}

#[test]
fn manual_converges() {
    check_strategy(Strategy::Manual);
}

// ----- shrunk failing histories, kept as regression tests -----

/// Replays one recorded history on every backend.
async fn replay_everywhere(strategy: Strategy, replicas: usize, seed: u64, ops: Vec<Op>) {
    for backend in backends() {
        let h = History {
            strategy,
            replicas,
            seed,
            ops: ops.clone(),
        };
        replay(backend, h).await;
    }
}

/// A replica deleted a row, then edited it: the edit was accepted and silently lost with the
/// delete. Edits of a row deleted locally are now refused.
#[tokio::test]
async fn regression_edit_after_local_delete() {
    use Op::*;
    let ops = vec![
        Create(Side::Replica(0)),
        Delete(Side::Replica(1), 53),
        Update(Side::Replica(1), 63),
    ];
    replay_everywhere(Strategy::FirstWriteWins, 3, 17674687615036685918, ops).await;
}

/// A parked row was edited again before a person took the server's version: the edit was
/// dropped while the record still showed the older local version. The record now shows the
/// version the decision dropped.
#[tokio::test]
async fn regression_edit_of_a_parked_row() {
    use Op::*;
    let ops = vec![
        Update(Side::Replica(0), 4),
        Create(Side::Replica(0)),
        Sync {
            replica: 0,
            faulty: false,
        },
        Update(Side::Replica(1), 25),
        Sync {
            replica: 1,
            faulty: true,
        },
        Update(Side::Replica(1), 45),
        Create(Side::Replica(1)),
    ];
    replay_everywhere(Strategy::Manual, 2, 16553503429341200075, ops).await;
}

/// A local delete was parked, then the row was edited: whatever the person decided, the edit
/// was dropped without a record. Edits of a row whose delete is parked are now refused.
#[tokio::test]
async fn regression_edit_of_a_parked_delete() {
    use Op::*;
    let ops = vec![
        Delete(Side::Replica(0), 6),
        Update(Side::Server, 14),
        Create(Side::Replica(0)),
        Sync {
            replica: 0,
            faulty: false,
        },
        Create(Side::Replica(0)),
        Update(Side::Replica(0), 32),
        Create(Side::Replica(0)),
    ];
    replay_everywhere(Strategy::Manual, 2, 1946942889800190789, ops).await;
}

/// A parked row was deleted by the application, then a person took the server's version:
/// the record did not show that a delete was dropped. A parked row can no longer be deleted
/// through the library until a person decides.
#[tokio::test]
async fn regression_delete_of_a_parked_row() {
    use Op::*;
    let ops = vec![
        Create(Side::Replica(0)),
        Create(Side::Replica(0)),
        Update(Side::Replica(1), 6),
        Create(Side::Replica(0)),
        Update(Side::Server, 0),
        Sync {
            replica: 1,
            faulty: false,
        },
        Delete(Side::Replica(1), 35),
        Resolve(1),
        Create(Side::Replica(0)),
    ];
    replay_everywhere(Strategy::Manual, 2, 2649731223836310672, ops).await;
}

/// A local write a replica made. Titles and view counts are unique per write, so a value
/// names its write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    Title(String),
    Views(i64),
    Delete,
}

/// What a write wrote: a field, or the whole row (a delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Title,
    Views,
    Row,
}

impl Write {
    fn slot(&self) -> Slot {
        match self {
            Write::Title(_) => Slot::Title,
            Write::Views(_) => Slot::Views,
            Write::Delete => Slot::Row,
        }
    }
}

/// View counts of writes start here; seeds and creates use smaller ones.
const FIRST_VIEWS: i64 = 1000;

/// What the test knows while a history plays.
#[derive(Debug, Default)]
struct Ledger {
    /// Keys in creation order, and who created each.
    keys: Vec<String>,
    /// Every title ever written to a key, by anyone.
    titles: BTreeMap<String, BTreeSet<String>>,
    /// Every view count ever written to a key, by anyone (seeds and creates included).
    views: BTreeMap<String, BTreeSet<i64>>,
    /// Per replica: the newest local write per key and field (or of the whole row, for a
    /// delete) not yet followed by a clean sync.
    pending: Vec<BTreeMap<(String, Slot), Write>>,
    /// Per replica: writes that a clean sync must have carried to the server or recorded as
    /// resolved against it.
    owed: Vec<Vec<(String, Write)>>,
    /// Per replica: conflicts a person decided (manual strategy), record id -> choice.
    /// Record ids are a replica's own.
    choices: Vec<BTreeMap<i64, Resolution>>,
    next_write: usize,
}

impl Ledger {
    fn title(&mut self, side: Side) -> String {
        self.next_write += 1;
        match side {
            Side::Replica(r) => format!("w{}-r{r}", self.next_write),
            Side::Server => format!("w{}-server", self.next_write),
        }
    }

    fn views(&mut self) -> i64 {
        self.next_write += 1;
        FIRST_VIEWS + i64::try_from(self.next_write).expect("few writes")
    }

    fn pick(&self, pick: usize) -> Option<String> {
        (!self.keys.is_empty()).then(|| self.keys[pick % self.keys.len()].clone())
    }

    /// A row came to be with these values, on a replica or on the server.
    fn created(&mut self, key: &str, views: i64) {
        self.keys.push(key.to_owned());
        self.views.entry(key.to_owned()).or_default().insert(views);
    }

    fn wrote(&mut self, side: Side, key: &str, write: Write) {
        match &write {
            Write::Title(t) => {
                self.titles
                    .entry(key.to_owned())
                    .or_default()
                    .insert(t.clone());
            }
            Write::Views(n) => {
                self.views.entry(key.to_owned()).or_default().insert(*n);
            }
            Write::Delete => {}
        }
        if let Side::Replica(r) = side {
            let pending = &mut self.pending[r];
            if write == Write::Delete {
                // A delete supersedes the row's earlier field writes.
                pending.retain(|(k, _), _| k != key);
            }
            pending.insert((key.to_owned(), write.slot()), write);
        }
    }

    /// After a sync that finished without errors, every earlier local write is owed, except
    /// on parked rows: the application may still edit those until a person decides.
    fn synced_clean(&mut self, replica: usize, parked: &BTreeSet<String>) {
        let (waiting, owed): (BTreeMap<_, _>, BTreeMap<_, _>) =
            std::mem::take(&mut self.pending[replica])
                .into_iter()
                .partition(|((key, _), _)| parked.contains(key));
        self.pending[replica] = waiting;
        self.owed[replica].extend(owed.into_iter().map(|((key, _), write)| (key, write)));
    }

    /// A person decided on a parked row: its newest local writes are owed now.
    fn decided(&mut self, replica: usize, key: &str) {
        let (decided, waiting): (BTreeMap<_, _>, BTreeMap<_, _>) =
            std::mem::take(&mut self.pending[replica])
                .into_iter()
                .partition(|((k, _), _)| k == key);
        self.pending[replica] = waiting;
        self.owed[replica].extend(decided.into_iter().map(|((key, _), write)| (key, write)));
    }
}

async fn replay(backend: Backend, h: History) {
    let mut world = World::new(backend).await;
    world.collection("articles", &FIELDS).await;
    let mut ledger = Ledger {
        pending: vec![BTreeMap::new(); h.replicas],
        owed: vec![Vec::new(); h.replicas],
        choices: vec![BTreeMap::new(); h.replicas],
        ..Ledger::default()
    };
    for i in 0..4 {
        let title = format!("seed{i}");
        let key = world.seed("articles", vec![row(json!({"title": title, "views": i}))]);
        ledger.created(&key[0], i);
        ledger
            .titles
            .insert(key[0].clone(), BTreeSet::from([title]));
    }
    let proxy = FaultProxy::start(&world.server.url(), h.seed, 0.0).await;
    let mut config = World::config("articles", &FIELDS);
    config.conflict = h.strategy;
    let mut replicas = Vec::new();
    for _ in 0..h.replicas {
        let replica = world
            .replica_behind(proxy.url(), vec![config.clone()])
            .await;
        assert_clean(&replica.sync(None).await.expect("first sync"));
        replicas.push(replica);
    }

    for op in &h.ops {
        apply(&world, &proxy, &replicas, &mut ledger, op).await;
    }

    quiesce(&proxy, &replicas, &mut ledger).await;
    for replica in &replicas {
        assert_converged(&world, replica, "articles").await;
    }
    let mut all_records = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        let records = replica.conflicts(false).await.expect("records");
        check_decisions(h.strategy, &records, &ledger.choices[r]);
        check_owed(&world, r, &ledger.owed[r], &records);
        all_records.extend(records);
    }
    check_server_writes(&world, &ledger, &all_records);
}

async fn apply(
    world: &World,
    proxy: &FaultProxy,
    replicas: &[Deltasync],
    ledger: &mut Ledger,
    op: &Op,
) {
    let server = world.server.state();
    match *op {
        Op::Create(side) => {
            let title = ledger.title(side);
            let data = row(json!({"title": title, "views": 0}));
            let key = match side {
                Side::Replica(r) => articles(&replicas[r])
                    .insert(data)
                    .await
                    .unwrap()
                    .to_string(),
                Side::Server => world.seed("articles", vec![data]).remove(0),
            };
            ledger.created(&key, 0);
            ledger.wrote(side, &key, Write::Title(title));
        }
        Op::Update(side, pick) => {
            let Some(key) = ledger.pick(pick) else { return };
            let title = ledger.title(side);
            let patch = row(json!({"title": title}));
            let done = match side {
                Side::Replica(r) => articles(&replicas[r]).update(&key, patch).await.unwrap(),
                Side::Server => server.update("articles", &key, patch).is_ok(),
            };
            if done {
                ledger.wrote(side, &key, Write::Title(title));
            }
        }
        Op::UpdateViews(side, pick) => {
            let Some(key) = ledger.pick(pick) else { return };
            let views = ledger.views();
            let patch = row(json!({"views": views}));
            let done = match side {
                Side::Replica(r) => articles(&replicas[r]).update(&key, patch).await.unwrap(),
                Side::Server => server.update("articles", &key, patch).is_ok(),
            };
            if done {
                ledger.wrote(side, &key, Write::Views(views));
            }
        }
        Op::Delete(side, pick) => {
            let Some(key) = ledger.pick(pick) else { return };
            let done = match side {
                Side::Replica(r) => articles(&replicas[r]).delete(&key).await.unwrap(),
                Side::Server => {
                    let present = server
                        .rows("articles")
                        .iter()
                        .any(|r| r["id"] == json!(key));
                    present && server.delete("articles", &[&key]).is_ok()
                }
            };
            if done {
                ledger.wrote(side, &key, Write::Delete);
            }
        }
        Op::Sync { replica, faulty } => {
            proxy.set_rate(if faulty { FAULT_RATE } else { 0.0 });
            let outcome = replicas[replica].sync(None).await;
            proxy.set_rate(0.0);
            // A faulty sync may stop anywhere; a later one picks up where it stopped.
            if let Ok(report) = outcome
                && !report.failed()
            {
                ledger.synced_clean(replica, &parked(&replicas[replica]).await);
            }
        }
        Op::Resolve(replica) => decide_parked(&replicas[replica], replica, ledger).await,
    }
}

fn articles(
    replica: &Deltasync,
) -> deltasync::Collection<'_, deltasync::SqlStore, deltasync::DirectusClient> {
    replica.collection("articles").expect("configured")
}

/// Decides every open conflict of a replica, alternating local and remote by record id.
async fn decide_parked(replica: &Deltasync, r: usize, ledger: &mut Ledger) {
    for record in replica.conflicts(true).await.expect("open conflicts") {
        let (choice, resolution) = if record.id % 2 == 0 {
            (Choice::Local, Resolution::KeepLocal)
        } else {
            (Choice::Remote, Resolution::TakeRemote)
        };
        replica.resolve(record.id, choice).await.expect("resolve");
        ledger.choices[r].insert(record.id, resolution);
        ledger.decided(r, &record.key);
    }
}

/// Keys of a replica's parked rows.
async fn parked(replica: &Deltasync) -> BTreeSet<String> {
    let open = replica.conflicts(true).await.expect("open conflicts");
    open.into_iter().map(|r| r.key).collect()
}

/// Syncs every replica on a quiet network until nothing waits and a full round changes
/// nothing, deciding parked conflicts between rounds.
async fn quiesce(proxy: &FaultProxy, replicas: &[Deltasync], ledger: &mut Ledger) {
    proxy.set_rate(0.0);
    for round in 0.. {
        assert!(round < 10, "no quiescence after 10 rounds");
        let mut moved = false;
        for (r, replica) in replicas.iter().enumerate() {
            let report = replica.sync(None).await.expect("sync on a quiet network");
            assert!(!report.failed(), "replica {r}: {report:?}");
            ledger.synced_clean(r, &parked(replica).await);
            moved |= report
                .collections
                .iter()
                .any(|c| c.pushed + c.pulled + c.deleted + c.conflicts > 0);
            if report.waiting.is_some_and(|n| n > 0) {
                decide_parked(replica, r, ledger).await;
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

fn assert_clean(report: &SyncReport) {
    assert!(!report.failed(), "{report:?}");
    assert_eq!(report.waiting, Some(0), "{report:?}");
}

/// Every write the server applied carries a title and a view count written to that key, so
/// no write landed on another key or under a key nobody created; and each title was applied
/// once, unless a person or the strategy chose to push it again. A revision holds the whole
/// item after a write, so a write of `views` alone repeats the title: a title counts as
/// applied only where it differs from the key's previous revision.
fn check_server_writes(world: &World, ledger: &Ledger, records: &[ConflictRecord]) {
    let mut applied = BTreeMap::<(String, String), usize>::new();
    let mut previous = BTreeMap::<String, String>::new();
    for rev in world.server.state().revisions() {
        // Directus saves a revision for a patched missing item too; it holds no item.
        if rev.data.is_null() {
            continue;
        }
        let title = rev.data["title"].as_str().unwrap().to_owned();
        let written = ledger.titles.get(&rev.item);
        assert!(
            written.is_some_and(|t| t.contains(&title)),
            "the server applied {title:?} to {}, where nobody wrote it",
            rev.item
        );
        let views = rev.data["views"].as_i64();
        assert!(
            views.is_some_and(|n| ledger.views.get(&rev.item).is_some_and(|v| v.contains(&n))),
            "the server applied views {} to {}, where nobody wrote it",
            rev.data["views"],
            rev.item
        );
        if previous.get(&rev.item) != Some(&title) {
            *applied
                .entry((rev.item.clone(), title.clone()))
                .or_default() += 1;
        }
        previous.insert(rev.item.clone(), title);
    }
    for ((key, title), n) in applied {
        let pushed_again = records
            .iter()
            .filter(|r| {
                r.key == key
                    && r.local.as_ref().is_some_and(|l| l["title"] == json!(title))
                    && kept_local(r, "title")
            })
            .count();
        assert!(
            n <= 1 + pushed_again,
            "{title:?} was applied to {key} {n} times"
        );
    }
}

/// Whether a resolved record kept the local value of `field` (and so may have pushed it).
fn kept_local(r: &ConflictRecord, field: &str) -> bool {
    match r.resolution {
        Some(Resolution::KeepLocal) => true,
        Some(Resolution::Merged) => r.fields.as_ref().is_some_and(|f| {
            matches!(
                f.get(field),
                Some(FieldSource::Local | FieldSource::CollidedLocal)
            )
        }),
        _ => false,
    }
}

/// What `last_write_wins` decides: the later change, ties and unknown times to the server.
fn later_is_local(r: &ConflictRecord) -> bool {
    matches!(
        (r.local_changed_at, r.remote_stamp),
        (Some(local), Some(remote)) if local > remote.0
    )
}

/// A field of a recorded version; a missing field reads as null.
fn field<'a>(version: Option<&'a Row>, name: &str) -> Option<&'a serde_json::Value> {
    static NULL: serde_json::Value = serde_json::Value::Null;
    version.map(|v| v.get(name).unwrap_or(&NULL))
}

/// Whether two rows hold the same values, a missing field reading as null.
fn same_row(a: &Row, b: &Row) -> bool {
    a.keys()
        .chain(b.keys())
        .all(|f| same_value(field(Some(a), f).unwrap(), field(Some(b), f).unwrap()))
}

/// Every conflict was decided as the strategy says: deletes against updates for the whole
/// row, updates against updates field by field.
fn check_decisions(
    strategy: Strategy,
    records: &[ConflictRecord],
    decided: &BTreeMap<i64, Resolution>,
) {
    for r in records {
        match r.kind {
            ConflictKind::UpdateUpdate => check_merge(strategy, r, decided),
            ConflictKind::LocalDeleteRemoteUpdate | ConflictKind::LocalUpdateRemoteDelete => {
                let expected = match strategy {
                    Strategy::FirstWriteWins => Some(Resolution::TakeRemote),
                    Strategy::LastWriteWins => Some(if later_is_local(r) {
                        Resolution::KeepLocal
                    } else {
                        Resolution::TakeRemote
                    }),
                    // Parked, then decided by the test; never by the engine.
                    Strategy::Manual => decided.get(&r.id).copied(),
                };
                assert_eq!(r.resolution, expected, "{strategy:?} decided {r:?}");
            }
            _ => panic!("only edit conflicts can occur here: {r:?}"),
        }
    }
}

/// An update against an update: each colliding field went as the strategy says, fields
/// changed on one side are truthfully marked, and the row is parked only for a collision.
fn check_merge(strategy: Strategy, r: &ConflictRecord, decided: &BTreeMap<i64, Resolution>) {
    let fields = r
        .fields
        .as_ref()
        .unwrap_or_else(|| panic!("a merge names its fields: {r:?}"));
    let parked = fields.values().any(|s| *s == FieldSource::Collided);
    if parked {
        assert_eq!(
            strategy,
            Strategy::Manual,
            "only a person decides a collision: {r:?}"
        );
        assert!(
            fields
                .values()
                .all(|s| !matches!(s, FieldSource::CollidedLocal | FieldSource::CollidedRemote)),
            "a parked row decides no collision itself: {r:?}"
        );
        let choice = decided.get(&r.id).copied();
        assert!(
            choice.is_some(),
            "parked but never shown to a person: {r:?}"
        );
        assert_eq!(r.resolution, choice, "not what the person chose: {r:?}");
    } else {
        assert!(
            !decided.contains_key(&r.id),
            "parked without a colliding field: {r:?}"
        );
        assert!(r.resolution.is_some(), "{strategy:?} left open: {r:?}");
    }
    for (name, source) in fields {
        let expected = match strategy {
            _ if !source.collided() => *source,
            Strategy::FirstWriteWins => FieldSource::CollidedRemote,
            Strategy::LastWriteWins if later_is_local(r) => FieldSource::CollidedLocal,
            Strategy::LastWriteWins => FieldSource::CollidedRemote,
            Strategy::Manual => FieldSource::Collided,
        };
        assert_eq!(*source, expected, "{strategy:?} decided {name}: {r:?}");
        // What the record shows must bear the source out. A parked record shows the local
        // version a person decided on, which may be newer than the one that collided.
        let base = r.base.as_ref().and_then(|b| b.get(name));
        let local = field(r.local.as_ref(), name);
        let remote = field(r.remote.as_ref(), name);
        let changed = |side: Option<&serde_json::Value>| match (side, base) {
            (Some(v), Some(b)) => Some(!same_value(v, b)),
            _ => None,
        };
        let differ = match (local, remote) {
            (Some(l), Some(rm)) => Some(!same_value(l, rm)),
            _ => None,
        };
        let truthful = match source {
            // What a parked record shows of the local side may be newer than what was compared.
            FieldSource::Local => {
                parked || (changed(local) != Some(false) && differ != Some(false))
            }
            FieldSource::Remote => {
                changed(remote) != Some(false) && (parked || differ != Some(false))
            }
            FieldSource::Same => parked || (changed(local) != Some(false) && differ != Some(true)),
            FieldSource::CollidedLocal | FieldSource::CollidedRemote => {
                changed(local) != Some(false)
                    && changed(remote) != Some(false)
                    && differ != Some(false)
            }
            FieldSource::Collided => changed(remote) != Some(false),
        };
        assert!(truthful, "{name} is not {source:?}: {r:?}");
    }
    // The merged row: the server version with the fields kept from the local one. A merge
    // that keeps one side whole is recorded as that side winning.
    if !parked && let (Some(local), Some(remote)) = (&r.local, &r.remote) {
        let mut merged = remote.clone();
        for (name, source) in fields {
            if matches!(source, FieldSource::Local | FieldSource::CollidedLocal) {
                merged.insert(name.clone(), field(Some(local), name).unwrap().clone());
            }
        }
        let expected = if same_row(&merged, remote) {
            Resolution::TakeRemote
        } else if same_row(&merged, local) {
            Resolution::KeepLocal
        } else {
            Resolution::Merged
        };
        assert_eq!(r.resolution, Some(expected), "{strategy:?} merged {r:?}");
    }
}

/// Each owed write reached the server (a revision with its value, or a delete of its key),
/// or a resolved conflict record of this replica carries it.
fn check_owed(world: &World, replica: usize, owed: &[(String, Write)], records: &[ConflictRecord]) {
    let state = world.server.state();
    let revisions = state.revisions();
    let activity = state.activity();
    let rows = state.rows("articles");
    for (key, write) in owed {
        let reached = match write {
            Write::Title(t) => revisions
                .iter()
                .any(|rev| rev.item == *key && rev.data["title"] == json!(t)),
            Write::Views(n) => revisions
                .iter()
                .any(|rev| rev.item == *key && rev.data["views"] == json!(n)),
            // Gone, or deleted and brought back by an edit that won a conflict.
            Write::Delete => {
                !rows.iter().any(|r| r["id"] == json!(key))
                    || activity
                        .iter()
                        .any(|a| a["item"] == json!(key) && a["action"] == "delete")
            }
        };
        let mut resolved = records
            .iter()
            .filter(|r| r.key == *key && r.resolution.is_some());
        let recorded = resolved.any(|r| match write {
            Write::Title(t) => r.local.as_ref().is_some_and(|l| l["title"] == json!(t)),
            Write::Views(n) => r.local.as_ref().is_some_and(|l| l["views"] == json!(n)),
            // A local delete leaves no local version in the record.
            Write::Delete => r.local.is_none() && r.kind != ConflictKind::LocalUpdateRemoteDelete,
        });
        assert!(
            reached || recorded,
            "replica {replica}: {write:?} on {key} is neither on the server nor recorded"
        );
    }
}
