//! Convergence under random histories: creates, updates and deletes on two or three replicas
//! and on the server, syncs through a faulty network, and conflicting edits. After quiescence
//! every replica equals the server, every conflict was decided as its strategy says, and
//! every local write is on the server or recorded as resolved against it.
//!
//! `DELTASYNC_PROPTEST_CASES` asks for more histories per strategy and backend (a longer soak).
//! Shrunk failing histories are kept below as regression tests.

use std::collections::{BTreeMap, BTreeSet};

use deltasync::{
    Choice, ConflictKind, ConflictRecord, Deltasync, Resolution, Strategy, SyncReport,
};
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
    Update(Side, usize),
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
        4 => (side(replicas), 0..64usize).prop_map(|(s, k)| Op::Update(s, k)),
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

/// A local write a replica made; titles are unique per write, so a title names its write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    Title(String),
    Delete,
}

/// What the test knows while a history plays.
#[derive(Debug, Default)]
struct Ledger {
    /// Keys in creation order, and who created each.
    keys: Vec<String>,
    /// Every title ever written to a key, by anyone.
    titles: BTreeMap<String, BTreeSet<String>>,
    /// Per replica: the newest local write per key not yet followed by a clean sync.
    pending: Vec<BTreeMap<String, Write>>,
    /// Per replica: writes that a clean sync must have carried to the server or recorded as
    /// resolved against it.
    owed: Vec<Vec<(String, Write)>>,
    /// Conflicts a person decided (manual strategy): record id -> choice.
    choices: BTreeMap<i64, Resolution>,
    next_title: usize,
}

impl Ledger {
    fn title(&mut self, side: Side) -> String {
        self.next_title += 1;
        match side {
            Side::Replica(r) => format!("w{}-r{r}", self.next_title),
            Side::Server => format!("w{}-server", self.next_title),
        }
    }

    fn pick(&self, pick: usize) -> Option<String> {
        (!self.keys.is_empty()).then(|| self.keys[pick % self.keys.len()].clone())
    }

    fn wrote(&mut self, side: Side, key: &str, write: Write) {
        if let Write::Title(t) = &write {
            self.titles
                .entry(key.to_owned())
                .or_default()
                .insert(t.clone());
        }
        if let Side::Replica(r) = side {
            self.pending[r].insert(key.to_owned(), write);
        }
    }

    /// After a sync that finished without errors, every earlier local write is owed, except
    /// on parked rows: the application may still edit those until a person decides.
    fn synced_clean(&mut self, replica: usize, parked: &BTreeSet<String>) {
        let (waiting, owed) = std::mem::take(&mut self.pending[replica])
            .into_iter()
            .partition(|(key, _)| parked.contains(key));
        self.pending[replica] = waiting;
        self.owed[replica].extend(owed);
    }

    /// A person decided on a parked row: its newest local write is owed now.
    fn decided(&mut self, replica: usize, key: &str) {
        if let Some(write) = self.pending[replica].remove(key) {
            self.owed[replica].push((key.to_owned(), write));
        }
    }
}

async fn replay(backend: Backend, h: History) {
    let mut world = World::new(backend).await;
    world.collection("articles", &FIELDS).await;
    let mut ledger = Ledger {
        pending: vec![BTreeMap::new(); h.replicas],
        owed: vec![Vec::new(); h.replicas],
        ..Ledger::default()
    };
    for i in 0..4 {
        let title = format!("seed{i}");
        let key = world.seed("articles", vec![row(json!({"title": title, "views": i}))]);
        ledger.keys.push(key[0].clone());
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
        check_decisions(h.strategy, &records, &ledger.choices);
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
            ledger.keys.push(key.clone());
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
        ledger.choices.insert(record.id, resolution);
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

/// Every write the server applied carries a title written to that key, so no write landed on
/// another key or under a key nobody created; and each write was applied once, unless a
/// person chose to push it again.
fn check_server_writes(world: &World, ledger: &Ledger, records: &[ConflictRecord]) {
    let mut applied = BTreeMap::<(String, String), usize>::new();
    for rev in world.server.state().revisions() {
        let title = rev.data["title"].as_str().unwrap().to_owned();
        let written = ledger.titles.get(&rev.item);
        assert!(
            written.is_some_and(|t| t.contains(&title)),
            "the server applied {title:?} to {}, where nobody wrote it",
            rev.item
        );
        *applied.entry((rev.item.clone(), title)).or_default() += 1;
    }
    for ((key, title), n) in applied {
        let pushed_again = records
            .iter()
            .filter(|r| {
                r.key == key
                    && r.resolution == Some(Resolution::KeepLocal)
                    && r.local.as_ref().is_some_and(|l| l["title"] == json!(title))
            })
            .count();
        assert!(
            n <= 1 + pushed_again,
            "{title:?} was applied to {key} {n} times"
        );
    }
}

/// Every conflict was decided as the strategy says.
fn check_decisions(
    strategy: Strategy,
    records: &[ConflictRecord],
    decided: &BTreeMap<i64, Resolution>,
) {
    for r in records {
        assert!(
            matches!(
                r.kind,
                ConflictKind::UpdateUpdate
                    | ConflictKind::LocalDeleteRemoteUpdate
                    | ConflictKind::LocalUpdateRemoteDelete
            ),
            "only edit conflicts can occur here: {r:?}"
        );
        let expected = match strategy {
            Strategy::FirstWriteWins => Some(Resolution::TakeRemote),
            Strategy::LastWriteWins => Some(match (r.local_changed_at, r.remote_stamp) {
                (Some(local), Some(remote)) if local > remote.0 => Resolution::KeepLocal,
                _ => Resolution::TakeRemote,
            }),
            // Parked, then decided by the test; never by the engine.
            Strategy::Manual => decided.get(&r.id).copied(),
        };
        assert_eq!(r.resolution, expected, "{strategy:?} decided {r:?}");
    }
}

/// Each owed write reached the server (a revision with its title, or a delete of its key),
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
            // A local delete leaves no local version in the record.
            Write::Delete => r.local.is_none() && r.kind != ConflictKind::LocalUpdateRemoteDelete,
        });
        assert!(
            reached || recorded,
            "replica {replica}: {write:?} on {key} is neither on the server nor recorded"
        );
    }
}
