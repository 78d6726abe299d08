//! The SQL outbox against a direct publish: writes per second side by side in one run, and how
//! fast the relay drains a backlog. Prints markdown tables.
//!
//! ```text
//! outbox-throughput [--writes N] [--rounds R] [--writers W] [--backlog N] [--postgres URL]
//! ```
//!
//! A write is one task row inserted in its own transaction, and its `TaskEvent` (≈ 800 bytes):
//!
//! - **direct**: insert, commit, then `Publisher::publish`;
//! - **outbox**: insert and `Outbox::add` in the transaction, `Outbox::commit`; a relay
//!   (`Outbox::start_relay`) runs meanwhile on the same pool and publishes to the same sink.
//!
//! A write counts when its call returns. For the outbox the time until the relay has published
//! every event (`stats().pending == 0`) is reported too. Sinks: a fake Dapr sidecar (an axum
//! server on its own thread and runtime answering 204 to `POST /v1.0/publish/..`, so each publish
//! is an HTTP request on loopback as against daprd) and the embedded broker (in memory, topic
//! without subscribers). Rounds alternate the order of the two modes; every case starts from
//! empty tables. Databases: a SQLite file (WAL, sqlx's default `synchronous = FULL`, pool of 5,
//! as example-todo opens it) and PostgreSQL when `--postgres` (or `OUTBOX_BENCH_POSTGRES_URL`)
//! names one (`benches/outbox-throughput.sh` starts a throwaway one).
//!
//! Drain: `--backlog` rows written with no relay running (1,000 per transaction), then 1 or 2
//! relays started on the database; events per second until nothing is pending.

use std::net::TcpListener;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use event_bench::{app_with, task_event, TaskEvent};
use event_runtime::{Outbox, Publisher};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

const TOPIC: &str = "task-events";
/// Distinct partition keys (`user_id`).
const USERS: usize = 64;

#[derive(Clone)]
enum Db {
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
    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite",
            Db::Postgres(_) => "PostgreSQL",
        }
    }

    fn outbox(&self) -> Outbox {
        match self {
            Db::Sqlite(p) => Outbox::sqlite(p.clone()),
            Db::Postgres(p) => Outbox::postgres(p.clone()),
        }
    }

    async fn setup(&self) {
        on_db!(self, p => {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_task (id BIGINT PRIMARY KEY, \
                 user_id TEXT NOT NULL, title TEXT NOT NULL, payload TEXT NOT NULL)",
            )
            .execute(p)
            .await
            .expect("create bench_task");
        });
        self.outbox().migrate().await.expect("migrate the outbox");
    }

    /// Empties the task table and the outbox (every case starts from empty tables).
    async fn reset(&self) {
        on_db!(self, p => {
            for sql in ["DELETE FROM bench_task", "DELETE FROM event_outbox"] {
                sqlx::query(sql).execute(p).await.expect("reset");
            }
        });
        if let Db::Sqlite(p) = self {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(p)
                .await
                .expect("checkpoint");
        } else if let Db::Postgres(p) = self {
            sqlx::query("VACUUM bench_task")
                .execute(p)
                .await
                .expect("vacuum");
            sqlx::query("VACUUM event_outbox")
                .execute(p)
                .await
                .expect("vacuum");
        }
    }
}

/// The row and the event of write `i`.
struct Write {
    id: i64,
    user_id: String,
    payload: String,
    event: TaskEvent,
}

fn write_of(i: usize) -> Write {
    let user_id = format!("user-{}", i % USERS);
    let event = task_event(&format!("evt-{i:09}"), i as i64, &user_id);
    let TaskEvent::Created { payload, .. } = &event else {
        unreachable!("task_event builds a Created")
    };
    Write {
        id: i as i64,
        payload: payload.to_string(),
        user_id,
        event,
    }
}

const INSERT_TASK: &str =
    "INSERT INTO bench_task (id, user_id, title, payload) VALUES ($1, $2, $3, $4)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Direct,
    Outbox,
    /// The outbox's writes with no relay running: what the write path costs by itself.
    OutboxNoRelay,
}

/// One write, as the app would do it.
async fn write(db: &Db, mode: Mode, outbox: &Outbox, publisher: &Publisher, w: &Write) {
    on_db!(db, p => {
        let mut tx = p.begin().await.expect("begin");
        sqlx::query(INSERT_TASK)
            .bind(w.id)
            .bind(&w.user_id)
            .bind("Write the benchmarks")
            .bind(&w.payload)
            .execute(&mut *tx)
            .await
            .expect("insert a task");
        match mode {
            Mode::Direct => {
                tx.commit().await.expect("commit");
                publisher.publish(TOPIC, &w.event).await.expect("publish");
            }
            Mode::Outbox | Mode::OutboxNoRelay => {
                outbox.add(&mut *tx, TOPIC, &w.event).await.expect("outbox add");
                outbox.commit(tx).await.expect("outbox commit");
            }
        }
    })
}

/// Waits until the outbox has nothing pending; polls every 5 ms.
async fn until_drained(outbox: &Outbox) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if outbox.stats().await.expect("stats").pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the relay drains within 600 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Sink {
    name: &'static str,
    publisher: Publisher,
    /// Events the sink received (the fake sidecar counts them; the embedded broker does not).
    received: Option<Arc<AtomicU64>>,
}

/// What one case measured.
struct Measured {
    writes_per_s: f64,
    /// Outbox only: writes / time until the relay had published every event.
    relayed_per_s: Option<f64>,
}

/// `n` writes by `writers` concurrent tasks; for the outbox, a relay runs from before the
/// first write until everything is published.
async fn case(db: &Db, mode: Mode, sink: &Sink, n: usize, writers: usize) -> Measured {
    db.reset().await;
    let outbox = db.outbox();
    let writes: Arc<Vec<Write>> = Arc::new((0..n).map(write_of).collect());
    let before = sink.received.as_ref().map(|c| c.load(Ordering::SeqCst));
    let relay = (mode == Mode::Outbox).then(|| outbox.start_relay(sink.publisher.clone()));
    // Let the relay migrate and take its leases before the clock starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (db, outbox, publisher, writes) = (
                db.clone(),
                outbox.clone(),
                sink.publisher.clone(),
                writes.clone(),
            );
            tokio::spawn(async move {
                for write_ in writes.iter().skip(w).step_by(writers) {
                    write(&db, mode, &outbox, &publisher, write_).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a writer panicked");
    }
    let written = start.elapsed().as_secs_f64();
    let relayed_per_s = match relay {
        Some(relay) => {
            until_drained(&outbox).await;
            let secs = start.elapsed().as_secs_f64();
            relay.stop().await;
            Some(n as f64 / secs)
        }
        None => None,
    };
    if let (Some(c), Some(before), false) = (&sink.received, before, mode == Mode::OutboxNoRelay) {
        let got = c.load(Ordering::SeqCst) - before;
        assert!(got >= n as u64, "the sink received {got} of {n} events");
    }
    Measured {
        writes_per_s: n as f64 / written,
        relayed_per_s,
    }
}

/// `backlog` events added with no relay running, then `relays` relays started: events/s until
/// nothing is pending.
async fn drain(db: &Db, sink: &Sink, backlog: usize, relays: usize) -> f64 {
    db.reset().await;
    let outbox = db.outbox();
    for chunk in (0..backlog).collect::<Vec<_>>().chunks(1000) {
        on_db!(db, p => {
            let mut tx = p.begin().await.expect("begin");
            for &i in chunk {
                let w = write_of(i);
                outbox.add(&mut *tx, TOPIC, &w.event).await.expect("outbox add");
            }
            tx.commit().await.expect("commit");
        });
    }
    assert_eq!(outbox.stats().await.expect("stats").pending, backlog as u64);
    let start = Instant::now();
    let running: Vec<_> = (0..relays)
        .map(|_| outbox.start_relay(sink.publisher.clone()))
        .collect();
    until_drained(&outbox).await;
    let secs = start.elapsed().as_secs_f64();
    for relay in running {
        relay.stop().await;
    }
    backlog as f64 / secs
}

/// A fake Dapr sidecar on its own thread and runtime: 204 to every publish, counted.
fn fake_sidecar() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake sidecar");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("its address").port();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    std::thread::Builder::new()
        .name("fake-sidecar".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the fake sidecar");
            rt.block_on(async move {
                async fn publish(
                    State(count): State<Arc<AtomicU64>>,
                    _body: axum::body::Bytes,
                ) -> StatusCode {
                    count.fetch_add(1, Ordering::Relaxed);
                    StatusCode::NO_CONTENT
                }
                let app = Router::new()
                    .route("/v1.0/publish/{pubsub}/{topic}", post(publish))
                    .with_state(counted);
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("the fake sidecar");
            });
        })
        .expect("spawn the fake sidecar");
    (port, count)
}

fn fmt_rounds(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_ratios(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn open_sqlite(path: &std::path::Path) -> Db {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .expect("a SQLite URL")
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(5))
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(5)
        .connect_with(options)
        .await
        .expect("open SQLite");
    Db::Sqlite(pool)
}

async fn open_postgres(url: &str) -> Db {
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(url)
        .await
        .expect("connect to PostgreSQL");
    Db::Postgres(pool)
}

async fn bench(db: Db, sinks: &[Sink], n: usize, rounds: usize, writers: usize, backlog: usize) {
    db.setup().await;
    let name = db.name();
    println!("\n### {name}: writes/s, {n} writes per case, {writers} writer(s), {rounds} rounds\n");
    println!(
        "| sink | direct writes/s (rounds) | outbox writes/s (rounds) | outbox relayed/s (rounds) \
         | ratio direct ÷ outbox per write (rounds) | median direct | median outbox \
         | median relayed | **median ratio** | median ratio to relayed \
         | outbox, no relay running: median writes/s (ratio) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for sink in sinks {
        let (mut direct, mut outbox, mut relayed, mut ratios, mut ratios_relayed) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut bare, mut ratios_bare) = (vec![], vec![]);
        for r in 0..rounds {
            // Each mode goes first, second and third in turn.
            let mut order = [Mode::Direct, Mode::Outbox, Mode::OutboxNoRelay];
            order.rotate_left(r % 3);
            let (mut d, mut o, mut rel, mut b) = (0.0, 0.0, 0.0, 0.0);
            for mode in order {
                let m = case(&db, mode, sink, n, writers).await;
                match mode {
                    Mode::Direct => d = m.writes_per_s,
                    Mode::Outbox => {
                        o = m.writes_per_s;
                        rel = m.relayed_per_s.expect("relayed");
                    }
                    Mode::OutboxNoRelay => b = m.writes_per_s,
                }
            }
            eprintln!(
                "{name} {} round {r}: direct {d:.0}/s, outbox {o:.0}/s (relayed {rel:.0}/s), \
                 ratio {:.2}; no relay {b:.0}/s, ratio {:.2}",
                sink.name,
                d / o,
                d / b
            );
            direct.push(d);
            outbox.push(o);
            relayed.push(rel);
            ratios.push(d / o);
            ratios_relayed.push(d / rel);
            bare.push(b);
            ratios_bare.push(d / b);
        }
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | **{:.2}×** | {:.2}× | {:.0} ({:.2}×) |",
            sink.name,
            fmt_rounds(&direct),
            fmt_rounds(&outbox),
            fmt_rounds(&relayed),
            fmt_ratios(&ratios),
            median(direct),
            median(outbox),
            median(relayed),
            median(ratios),
            median(ratios_relayed),
            median(bare),
            median(ratios_bare),
        );
    }
    if backlog > 0 {
        println!("\n### {name}: draining a backlog of {backlog} events\n");
        println!("| sink | relays | events/s (rounds) | median |");
        println!("|---|---|---|---|");
        for sink in sinks {
            for relays in [1, 2] {
                let mut rates = vec![];
                for _ in 0..rounds.min(3) {
                    rates.push(drain(&db, sink, backlog, relays).await);
                }
                eprintln!(
                    "{name} {} drain, {relays} relay(s): {}",
                    sink.name,
                    fmt_rounds(&rates)
                );
                println!(
                    "| {} | {relays} | {} | {:.0} |",
                    sink.name,
                    fmt_rounds(&rates),
                    median(rates.clone())
                );
            }
        }
    }
}

use event_bench::median;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let flag = |name: &str, default: usize| -> usize {
        value(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
            .unwrap_or(default)
    };
    let n = flag("--writes", 5_000);
    let rounds = flag("--rounds", 5).max(1);
    let writers = flag("--writers", 1).max(1);
    let backlog = flag("--backlog", 20_000);
    let postgres = value("--postgres").or_else(|| {
        std::env::var("OUTBOX_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
    });

    let (port, received) = fake_sidecar();
    // Before any runtime thread exists: the publisher reads it once, when built.
    std::env::set_var("DAPR_HTTP_PORT", port.to_string());
    let sinks = vec![
        Sink {
            name: "fake sidecar (HTTP)",
            publisher: Publisher::from_config(&event_runtime::config::Config::from_env().unwrap()),
            received: Some(received),
        },
        Sink {
            name: "embedded broker",
            publisher: app_with("on_task_event").publisher(),
            received: None,
        },
    ];

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = std::env::temp_dir().join(format!("outbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    rt.block_on(async {
        let db = open_sqlite(&dir.join("bench.db")).await;
        bench(db, &sinks, n, rounds, writers, backlog).await;
        if let Some(url) = &postgres {
            let db = open_postgres(url).await;
            bench(db, &sinks, n, rounds, writers, backlog).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
