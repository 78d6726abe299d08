//! What the outbox suites share: a database of either kind, a sidecar that can be down, and the
//! scenarios both databases run (`sqlite.rs`, `postgres.rs`). `tests/process/` includes it too.
#![allow(dead_code)] // each suite uses part of it

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_runtime::dapr::DaprClient;
use event_runtime::{App, Event, Outbox, OutboxError, Publisher};
use sqlx::{PgPool, SqlitePool};

/// The event the scenarios write: the `n`-th of its key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "item.added", version = "1.0")]
pub struct ItemAdded {
    pub user_id: String,
    pub n: u32,
    pub item_id: i64,
}

pub const TOPIC: &str = "items";

/// A database, with an `items` table the scenarios change beside their events.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

impl Db {
    /// A fresh SQLite file (WAL, several connections, as an app would open it).
    pub async fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(format!("outbox-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("app.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, n BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        Db::Sqlite(pool)
    }

    /// A fresh schema of the PostgreSQL database at `url`, so tests running together share
    /// nothing.
    pub async fn postgres(url: &str) -> Db {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, n BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        Db::Postgres(pool)
    }

    /// An outbox on this database that polls often (tests wait on conditions, not periods).
    pub fn outbox(&self) -> Outbox {
        match self {
            Db::Sqlite(pool) => Outbox::sqlite(pool.clone()),
            Db::Postgres(pool) => Outbox::postgres(pool.clone()),
        }
        .with_poll_interval(Duration::from_millis(25))
    }

    /// Stores item `n` of `user` and adds its event, in one transaction, committed or not.
    pub async fn write(&self, outbox: &Outbox, user: &str, n: u32, commit: bool) {
        on_db!(self, pool => {
            let mut tx = pool.begin().await.unwrap();
            let (item_id,): (i64,) =
                sqlx::query_as("INSERT INTO items (user_id, n) VALUES ($1, $2) RETURNING id")
                    .bind(user)
                    .bind(i64::from(n))
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            let event = ItemAdded { user_id: user.to_owned(), n, item_id };
            outbox.add(&mut *tx, TOPIC, &event).await.unwrap();
            if commit {
                outbox.commit(tx).await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
        })
    }

    /// Gives every bucket to a relay that crashed: its leases run until `until_ms`.
    pub async fn crash_holding_every_bucket(&self, until_ms: i64) {
        on_db!(self, pool => sqlx::query(
            "UPDATE event_outbox_lease SET holder = 'crashed', until_ms = $1")
            .bind(until_ms).execute(pool).await.map(drop).unwrap());
    }

    /// How many items are stored.
    pub async fn items(&self) -> i64 {
        on_db!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM items")
            .fetch_one(pool).await.unwrap())
    }

    /// Claims `event_id` for `handler` in a transaction, committed or not.
    pub async fn claim(
        &self,
        outbox: &Outbox,
        handler: &str,
        event_id: &str,
        commit: bool,
    ) -> bool {
        on_db!(self, pool => {
            let mut tx = pool.begin().await.unwrap();
            let first = outbox.claim_inbox(&mut *tx, handler, event_id).await.unwrap();
            if commit { tx.commit().await.unwrap() } else { tx.rollback().await.unwrap() }
            first
        })
    }
}

/// One publish the sidecar accepted.
#[derive(Debug, Clone)]
pub struct Published {
    pub id: String,
    pub key: String,
    pub n: u32,
    /// When the sidecar accepted it (Unix ms).
    pub at_ms: i64,
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Which events the sidecar refuses, and with which status: those of `key` (only its `n`-th
/// when `n` is set).
#[derive(Clone, Debug)]
struct Refusal {
    key: String,
    n: Option<u32>,
    status: u16,
}

/// A Dapr sidecar that accepts publishes, or answers 503 to each while it is down, and refuses
/// the events its refusal rules name ([`Sidecar::refuse`]).
#[derive(Clone, Debug)]
pub struct Sidecar {
    pub base: String,
    pub down: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<Published>>>,
    refused: Arc<Mutex<usize>>,
    rules: Arc<Mutex<Vec<Refusal>>>,
}

impl Sidecar {
    pub async fn start() -> Sidecar {
        let down = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let rules: Arc<Mutex<Vec<Refusal>>> = Arc::default();
        let (d, a, r, rs) = (
            down.clone(),
            accepted.clone(),
            refused.clone(),
            rules.clone(),
        );
        let app = axum::Router::new().route(
            "/v1.0/publish/{pubsub}/{topic}",
            axum::routing::post(
                move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
                      body: axum::body::Bytes| {
                    let (d, a, r, rs) = (d.clone(), a.clone(), r.clone(), rs.clone());
                    async move {
                        if d.load(Ordering::SeqCst) {
                            *r.lock().unwrap() += 1;
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let data: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let key = q["metadata.partitionKey"].clone();
                        let n = data["n"].as_u64().unwrap() as u32;
                        let refusal = rs.lock().unwrap().iter().find_map(|rule| {
                            (rule.key == key && rule.n.is_none_or(|m| m == n))
                                .then_some(rule.status)
                        });
                        if let Some(status) = refusal {
                            *r.lock().unwrap() += 1;
                            return axum::http::StatusCode::from_u16(status).unwrap();
                        }
                        a.lock().unwrap().push(Published {
                            id: q["metadata.cloudevent.id"].clone(),
                            key,
                            n,
                            at_ms: unix_ms(),
                        });
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sidecar {
            base,
            down,
            accepted,
            refused,
            rules,
        }
    }

    /// Answers `status` to every publish of `key`'s events (only its `n`-th when `n` is set).
    pub fn refuse(&self, key: &str, n: Option<u32>, status: u16) {
        self.rules.lock().unwrap().push(Refusal {
            key: key.to_owned(),
            n,
            status,
        });
    }

    /// Forgets every refusal rule: it accepts what it refused.
    pub fn accept_all(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// An app that publishes through this sidecar, relaying `outbox`.
    pub fn app(&self, outbox: &Outbox) -> App {
        App::with_handlers([])
            .unwrap()
            .with_dapr_client(DaprClient::new(&self.base, None))
            .with_outbox(outbox.clone())
    }

    pub fn publisher(&self) -> Publisher {
        App::with_handlers([])
            .unwrap()
            .with_dapr_client(DaprClient::new(&self.base, None))
            .publisher()
    }

    pub fn accepted(&self) -> Vec<Published> {
        self.accepted.lock().unwrap().clone()
    }

    /// How many publishes it answered with an error (down, or by a refusal rule).
    pub fn refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }
}

/// Polls `probe` until it answers `Some`, or panics naming `what` after `deadline`.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < end, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const DEADLINE: Duration = Duration::from_secs(30);

/// How many refusals for good in a row set a row aside (the relay's constant).
pub const REFUSALS_BEFORE_SET_ASIDE: u64 = 3;

/// Waits until the sidecar accepted `n` events.
pub async fn wait_accepted(sidecar: &Sidecar, n: usize) -> Vec<Published> {
    wait_until(DEADLINE, &format!("{n} events accepted"), || async {
        let got = sidecar.accepted();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// Each key's events, in the order they were accepted.
pub fn by_key(published: &[Published]) -> BTreeMap<String, Vec<u32>> {
    let mut keys: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for p in published {
        keys.entry(p.key.clone()).or_default().push(p.n);
    }
    keys
}

/// Events committed one after the other go out in that order, per key.
pub async fn commit_order_per_key(db: &Db) {
    let sidecar = Sidecar::start().await;
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    let relay = outbox.start_relay(sidecar.publisher());
    for n in 0..10 {
        for user in ["ann", "bob", "cy"] {
            db.write(&outbox, user, n, true).await;
        }
    }
    let published = wait_accepted(&sidecar, 30).await;
    let expected: Vec<u32> = (0..10).collect();
    for (key, ns) in by_key(&published) {
        assert_eq!(ns, expected, "order of {key}");
    }
    wait_until(DEADLINE, "no row pending", || async {
        (outbox.stats().await.unwrap().pending == 0).then_some(())
    })
    .await;
    relay.stop().await;
    assert_eq!(sidecar.accepted().len(), 30, "each once");
}

/// A metric's value in `text`, the rendered `/metrics`.
pub fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// After a quiet moment a commit goes out at once; under a stream of commits the relay lets
/// them gather for its batch window, so a burst goes out in a few rounds, in order per key.
pub async fn a_burst_goes_out_in_few_rounds(db: &Db) {
    let sidecar = Sidecar::start().await;
    let outbox = db
        .outbox()
        .with_poll_interval(Duration::from_secs(3600))
        .with_batch_window(Duration::from_secs(2));
    outbox.migrate().await.unwrap();
    let app = sidecar.app(&outbox);
    let relay = outbox.start_relay(app.publisher());
    wait_until(DEADLINE, "the relay's first round", || async {
        (series(&app.metrics().render(), "event_outbox_buckets_held") == 16).then_some(())
    })
    .await;

    let quiet = Instant::now();
    db.write(&outbox, "ann", 0, true).await;
    wait_accepted(&sidecar, 1).await;
    assert!(
        quiet.elapsed() < Duration::from_secs(1),
        "an idle relay waited {:?} for a commit (batch window 2 s)",
        quiet.elapsed()
    );

    // Commits a few ms apart: without the window, each would find the relay idle.
    let burst = 40;
    for n in 1..=burst {
        for user in ["ann", "bob"] {
            db.write(&outbox, user, n, true).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let published = wait_accepted(&sidecar, 1 + 2 * burst as usize).await;
    let ann: Vec<u32> = (0..=burst).collect();
    let bob: Vec<u32> = (1..=burst).collect();
    let keys = by_key(&published);
    assert_eq!(keys["ann"], ann);
    assert_eq!(keys["bob"], bob);
    let rounds = series(&app.metrics().render(), "event_outbox_batches_total");
    assert!(
        rounds <= 6,
        "{} commits went out in {rounds} rounds that published",
        1 + 2 * burst
    );
    relay.stop().await;
}

/// A transaction that rolls back leaves neither its change nor its event.
pub async fn rollback_publishes_nothing(db: &Db) {
    let sidecar = Sidecar::start().await;
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    let relay = outbox.start_relay(sidecar.publisher());
    db.write(&outbox, "ann", 0, true).await;
    db.write(&outbox, "ann", 1, false).await;
    db.write(&outbox, "ann", 2, true).await;
    // One key, one bucket, in order: once 2 is out, 1 would have been before it.
    let published = wait_accepted(&sidecar, 2).await;
    assert_eq!(by_key(&published)["ann"], [0, 2]);
    assert_eq!(db.items().await, 2);
    let stats = wait_until(DEADLINE, "both rows marked sent", || async {
        let s = outbox.stats().await.unwrap();
        (s.pending == 0).then_some(s)
    })
    .await;
    assert_eq!(stats.sent, 2, "{stats:?}");
    relay.stop().await;
}

/// With the sidecar down, the writes commit and wait; once it is back, all go out in order.
pub async fn publisher_down_then_back(db: &Db) {
    let sidecar = Sidecar::start().await;
    sidecar.down.store(true, Ordering::SeqCst);
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    let app = sidecar.app(&outbox);
    let relay = outbox.start_relay(app.publisher());
    for n in 0..6 {
        for user in ["ann", "bob", "cy", "dee"] {
            db.write(&outbox, user, n, true).await;
        }
    }
    assert_eq!(db.items().await, 24, "every change committed");
    wait_until(
        DEADLINE,
        "the relay tried, failed and counted it",
        || async {
            let text = app.metrics().render();
            (sidecar.refused() > 0 && !text.contains("event_outbox_publish_failures_total 0\n"))
                .then_some(())
        },
    )
    .await;
    assert!(sidecar.accepted().is_empty());
    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.pending, 24, "{stats:?}");
    assert!(stats.oldest_pending_age.is_some());

    sidecar.down.store(false, Ordering::SeqCst);
    let published = wait_accepted(&sidecar, 24).await;
    for (key, ns) in by_key(&published) {
        assert_eq!(ns, (0..6).collect::<Vec<_>>(), "order of {key}");
    }
    wait_until(DEADLINE, "the gauges see no pending row", || async {
        let text = app.metrics().render();
        (text.contains("event_outbox_pending 0\n")
            && text.contains("event_outbox_published_total 24\n"))
        .then_some(())
    })
    .await;
    relay.stop().await;
}

/// Two relays on one database: they share the buckets, and each event goes out once, in order
/// per key.
pub async fn two_relays(db: &Db) {
    let sidecar = Sidecar::start().await;
    let (a, b) = (db.outbox(), db.outbox());
    a.migrate().await.unwrap();
    let (app_a, app_b) = (sidecar.app(&a), sidecar.app(&b));
    let relay_a = a.start_relay(app_a.publisher());
    let relay_b = b.start_relay(app_b.publisher());
    // The buckets end up split between them.
    wait_until(DEADLINE, "8 buckets each", || async {
        let (ma, mb) = (app_a.metrics().render(), app_b.metrics().render());
        (ma.contains("event_outbox_buckets_held 8\n")
            && mb.contains("event_outbox_buckets_held 8\n"))
        .then_some(())
    })
    .await;
    let users: Vec<String> = (0..12).map(|i| format!("user-{i}")).collect();
    // Two writers, one per replica: the first writes items 0..10 of each user, the second
    // items 100..110, each in its own order.
    let writers = [(a.clone(), 0), (b.clone(), 100)].map(|(outbox, first)| {
        let (db, users) = (db.clone(), users.clone());
        tokio::spawn(async move {
            for n in first..first + 10 {
                for user in &users {
                    db.write(&outbox, user, n, true).await;
                }
            }
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    wait_accepted(&sidecar, 240).await;
    wait_until(DEADLINE, "no row pending", || async {
        (a.stats().await.unwrap().pending == 0).then_some(())
    })
    .await;
    let published = sidecar.accepted();
    let mut seen = HashMap::new();
    for p in &published {
        *seen.entry(p.id.clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 240, "every event");
    assert!(seen.values().all(|&c| c == 1), "each once: {seen:?}");
    for (key, ns) in by_key(&published) {
        let first: Vec<u32> = ns.iter().copied().filter(|n| *n < 100).collect();
        let second: Vec<u32> = ns.iter().copied().filter(|n| *n >= 100).collect();
        assert_eq!(first, (0..10).collect::<Vec<_>>(), "{key}: {ns:?}");
        assert_eq!(second, (100..110).collect::<Vec<_>>(), "{key}: {ns:?}");
    }
    let (ma, mb) = (app_a.metrics().render(), app_b.metrics().render());
    assert!(!ma.contains("event_outbox_published_total 0\n"), "{ma}");
    assert!(!mb.contains("event_outbox_published_total 0\n"), "{mb}");
    relay_a.stop().await;
    relay_b.stop().await;
}

/// Sent rows are kept for the retention, then deleted; a retention of zero deletes them at once.
pub async fn retention(db: &Db) {
    let sidecar = Sidecar::start().await;
    let outbox = db.outbox().with_retention(Duration::ZERO);
    outbox.migrate().await.unwrap();
    let relay = outbox.start_relay(sidecar.publisher());
    db.write(&outbox, "ann", 0, true).await;
    wait_accepted(&sidecar, 1).await;
    wait_until(DEADLINE, "the sent row deleted at once", || async {
        let s = outbox.stats().await.unwrap();
        (s.pending == 0 && s.sent == 0).then_some(())
    })
    .await;
    relay.stop().await;

    let outbox = db.outbox().with_retention(Duration::from_millis(300));
    let relay = outbox.start_relay(sidecar.publisher());
    db.write(&outbox, "ann", 1, true).await;
    wait_accepted(&sidecar, 2).await;
    wait_until(
        DEADLINE,
        "the sent row deleted after its retention",
        || async {
            let s = outbox.stats().await.unwrap();
            (s.pending == 0 && s.sent == 0).then_some(())
        },
    )
    .await;
    relay.stop().await;

    let outbox = db.outbox(); // the default: kept for days
    let relay = outbox.start_relay(sidecar.publisher());
    db.write(&outbox, "ann", 2, true).await;
    wait_accepted(&sidecar, 3).await;
    wait_until(DEADLINE, "the sent row kept", || async {
        let s = outbox.stats().await.unwrap();
        (s.pending == 0 && s.sent == 1).then_some(())
    })
    .await;
    relay.stop().await;
}

/// The inbox: an event claimed in a committed transaction is claimed once; a rolled-back claim
/// leaves it unclaimed.
pub async fn inbox(db: &Db) {
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    assert!(db.claim(&outbox, "h", "e-1", false).await, "first");
    assert!(
        db.claim(&outbox, "h", "e-1", true).await,
        "rolled back: still first"
    );
    assert!(!db.claim(&outbox, "h", "e-1", true).await, "second");
    assert!(db.claim(&outbox, "other", "e-1", true).await, "per handler");

    // Claims are forgotten after the inbox retention, by the relay.
    let outbox = outbox.with_inbox_retention(Duration::from_millis(200));
    let relay = outbox.start_relay(Sidecar::start().await.publisher());
    wait_until(
        DEADLINE,
        "the claim forgotten after its retention",
        || async { db.claim(&outbox, "h", "e-1", false).await.then_some(()) },
    )
    .await;
    relay.stop().await;
}

/// A crashed replica's buckets wait until its leases run out, then another relay takes them.
pub async fn crashed_replicas_buckets_are_taken_over(db: &Db) {
    let sidecar = Sidecar::start().await;
    let outbox = db.outbox().with_lease(Duration::from_secs(1));
    outbox.migrate().await.unwrap();
    let until = unix_ms() + 700;
    db.crash_holding_every_bucket(until).await;
    let relay = outbox.start_relay(sidecar.publisher());
    db.write(&outbox, "ann", 0, true).await;
    let published = wait_accepted(&sidecar, 1).await;
    // Some tens of ms of slack: the relay's clock follows tokio's from its first reading.
    assert!(
        published[0].at_ms >= until - 50,
        "published {} ms before the crashed relay's lease ran out",
        until - published[0].at_ms
    );
    relay.stop().await;
}

/// An event with free-form data, as deep as its writer makes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "doc.stored", version = "1.0")]
pub struct DocStored {
    pub user_id: String,
    pub doc: serde_json::Value,
}

/// A document nested `depth` arrays deep.
pub fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::json!(1), |inner, _| serde_json::json!([inner]))
}

impl Db {
    /// Writes a row as an older or broken writer might have: `body` as it is, in `bucket`.
    pub async fn insert_raw_row(&self, bucket: i64, event_id: &str, key: &str, body: &str) {
        on_db!(self, pool => sqlx::query(
            "INSERT INTO event_outbox (bucket, pubsub, topic, event_id, partition_key, body, created_ms) \
             VALUES ($1, '', $2, $3, $4, $5, $6)")
            .bind(bucket).bind(TOPIC).bind(event_id).bind(key).bind(body).bind(unix_ms())
            .execute(pool).await.map(drop).unwrap())
    }

    /// Adds `event` in a transaction that commits whatever `add` answered; answers that.
    pub async fn add_committed<E: Event>(
        &self,
        outbox: &Outbox,
        event: &E,
    ) -> Result<(), OutboxError> {
        on_db!(self, pool => {
            let mut tx = pool.begin().await.unwrap();
            let added = outbox.add(&mut *tx, TOPIC, event).await;
            tx.commit().await.unwrap();
            added
        })
    }
}

/// `add` refuses what the relay could not publish, and writes nothing: a document deeper than
/// it reads back, or an event larger than the outbox's limit.
pub async fn an_event_the_relay_cannot_read_is_refused(db: &Db) {
    let outbox = db.outbox().with_max_message_bytes(4_096);
    outbox.migrate().await.unwrap();
    let deep = DocStored {
        user_id: "ann".into(),
        doc: nested(200),
    };
    let refused = db.add_committed(&outbox, &deep).await.unwrap_err();
    assert!(
        matches!(&refused, OutboxError::Unreadable { topic, .. } if topic == TOPIC),
        "{refused:?}"
    );
    let large = DocStored {
        user_id: "ann".into(),
        doc: "x".repeat(5_000).into(),
    };
    let refused = db.add_committed(&outbox, &large).await.unwrap_err();
    assert!(
        matches!(&refused, OutboxError::TooLarge { bytes, limit: 4_096, .. } if *bytes > 5_000),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("with_max_message_bytes"),
        "{refused}"
    );
    let stats = outbox.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.sent),
        (0, 0),
        "nothing written: {stats:?}"
    );
    // A document the relay reads back, within the limit, is added.
    let fine = DocStored {
        user_id: "ann".into(),
        doc: nested(100),
    };
    db.add_committed(&outbox, &fine).await.unwrap();
    assert_eq!(outbox.stats().await.unwrap().pending, 1);
}

/// With a small batch, a bucket stuck on its oldest rows (the sidecar answers 503 to its key)
/// does not keep every other bucket's rows from going out.
pub async fn a_stuck_bucket_does_not_starve_the_others(db: &Db) {
    let sidecar = Sidecar::start().await;
    // "ann", "bob", "cy", "dee" fall in four buckets (8, 4, 1, 5 of 16).
    sidecar.refuse("ann", None, 503);
    let outbox = db.outbox().with_batch_size(2);
    outbox.migrate().await.unwrap();
    // Ann's rows are the oldest: a batch of the oldest rows would hold only hers.
    for n in 0..10 {
        db.write(&outbox, "ann", n, true).await;
    }
    for n in 0..5 {
        for user in ["bob", "cy", "dee"] {
            db.write(&outbox, user, n, true).await;
        }
    }
    let relay = outbox.start_relay(sidecar.publisher());
    let published = wait_accepted(&sidecar, 15).await;
    let keys = by_key(&published);
    for user in ["bob", "cy", "dee"] {
        assert_eq!(keys[user], (0..5).collect::<Vec<_>>(), "order of {user}");
    }
    assert!(!keys.contains_key("ann"), "{keys:?}");
    wait_until(DEADLINE, "only ann's rows pending", || async {
        (outbox.stats().await.unwrap().pending == 10).then_some(())
    })
    .await;

    sidecar.accept_all();
    let published = wait_accepted(&sidecar, 25).await;
    assert_eq!(by_key(&published)["ann"], (0..10).collect::<Vec<_>>());
    relay.stop().await;
}

/// A row the sidecar refuses for good (400) is tried a bounded number of times, then set aside
/// with why; the rows behind it, in its bucket and in others, go out; replayed once the
/// sidecar takes it, it goes out after them.
pub async fn a_refused_row_is_set_aside_and_replayed(db: &Db) {
    let sidecar = Sidecar::start().await;
    sidecar.refuse("ann", Some(1), 400);
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    let app = sidecar.app(&outbox);
    let relay = outbox.start_relay(app.publisher());
    for n in 0..4 {
        for user in ["ann", "bob"] {
            db.write(&outbox, user, n, true).await;
        }
    }
    let published = wait_accepted(&sidecar, 7).await;
    let keys = by_key(&published);
    assert_eq!(keys["ann"], [0, 2, 3]);
    assert_eq!(keys["bob"], [0, 1, 2, 3]);
    // Ann's row 1 was set aside before row 2 could go out.
    let dead = outbox.dead_rows().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let row = &dead[0];
    assert_eq!(row.topic, TOPIC);
    assert_eq!(row.partition_key.as_deref(), Some("ann"));
    assert!(!row.event_id.is_empty());
    assert!(row.body.contains(r#""n":1"#), "{}", row.body);
    assert!(row.reason.contains("400"), "{}", row.reason);
    assert_eq!(row.attempts, REFUSALS_BEFORE_SET_ASIDE, "{row:?}");
    assert_eq!(
        sidecar.refused() as u64,
        REFUSALS_BEFORE_SET_ASIDE,
        "tried a bounded number of times, then set aside"
    );
    wait_until(DEADLINE, "the gauges see the row set aside", || async {
        let text = app.metrics().render();
        (series(&text, "event_outbox_dead") == 1
            && series(&text, "event_outbox_dead_total") == 1
            && series(&text, "event_outbox_pending") == 0)
            .then_some(())
    })
    .await;
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 1), "{stats:?}");

    sidecar.accept_all();
    assert_eq!(
        outbox
            .replay_dead(&[row.seq, row.seq + 1_000])
            .await
            .unwrap(),
        1
    );
    let published = wait_accepted(&sidecar, 8).await;
    assert_eq!(by_key(&published)["ann"], [0, 2, 3, 1]);
    assert!(outbox.dead_rows().await.unwrap().is_empty());
    assert_eq!(
        outbox.replay_dead(&[row.seq]).await.unwrap(),
        0,
        "replayed once"
    );
    wait_until(DEADLINE, "nothing pending nor set aside", || async {
        let s = outbox.stats().await.unwrap();
        (s.pending == 0 && s.dead == 0).then_some(())
    })
    .await;
    relay.stop().await;
}

/// A row the relay cannot read (too deep, or not JSON: written by an older or broken writer)
/// is set aside at once, without a publish, and its bucket goes on.
pub async fn an_unreadable_row_is_set_aside_at_once(db: &Db) {
    let sidecar = Sidecar::start().await;
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    // Ann's bucket (8 of 16): two broken rows, then an event of hers.
    let deep = format!(
        r#"{{"id":"deep-1","type":"doc.stored","data":{}}}"#,
        nested(200)
    );
    db.insert_raw_row(8, "deep-1", "ann", &deep).await;
    db.insert_raw_row(8, "torn-1", "ann", "{not json").await;
    db.write(&outbox, "ann", 0, true).await;
    let relay = outbox.start_relay(sidecar.publisher());
    let published = wait_accepted(&sidecar, 1).await;
    assert_eq!(by_key(&published)["ann"], [0]);
    assert_eq!(sidecar.refused(), 0, "nothing unreadable was sent");
    let dead = outbox.dead_rows().await.unwrap();
    let ids: Vec<&str> = dead.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids, ["deep-1", "torn-1"]);
    for row in &dead {
        assert_eq!(row.attempts, 1, "{row:?}");
        assert!(row.reason.contains("unreadable"), "{}", row.reason);
    }
    relay.stop().await;
}

/// A port nothing listens on: a sidecar that is down.
pub async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Transient failures (no sidecar, or one that answers 503) never set a row aside, however
/// often the relay tries it; the rows go out, in order, once the sidecar takes them.
pub async fn a_transient_failure_never_sets_a_row_aside(db: &Db) {
    let sidecar = Sidecar::start().await;
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    for n in 0..2 {
        db.write(&outbox, "ann", n, true).await;
    }
    let failures = |app: &App| {
        series(
            &app.metrics().render(),
            "event_outbox_publish_failures_total",
        )
    };
    // Each phase tries her first row more often than refusals would set it aside.
    let tries = 2 * (REFUSALS_BEFORE_SET_ASIDE + 1);

    // No sidecar at all.
    let unreachable = App::with_handlers([])
        .unwrap()
        .with_dapr_client(DaprClient::new(&closed_port().await, None))
        .with_outbox(outbox.clone());
    let relay = outbox.start_relay(unreachable.publisher());
    wait_until(DEADLINE, "ann's first row tried often", || async {
        (failures(&unreachable) >= tries / 2).then_some(())
    })
    .await;
    relay.stop().await;
    assert!(outbox.dead_rows().await.unwrap().is_empty());

    // A sidecar that answers 503 to her events.
    sidecar.refuse("ann", None, 503);
    let app = sidecar.app(&outbox);
    let relay = outbox.start_relay(app.publisher());
    wait_until(DEADLINE, "ann's first row tried often", || async {
        (failures(&app) >= tries).then_some(())
    })
    .await;
    assert!(outbox.dead_rows().await.unwrap().is_empty());
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (2, 0), "{stats:?}");

    sidecar.accept_all();
    let published = wait_accepted(&sidecar, 2).await;
    assert_eq!(by_key(&published)["ann"], [0, 1]);
    assert!(outbox.dead_rows().await.unwrap().is_empty());
    relay.stop().await;
}
