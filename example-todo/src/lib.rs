//! The todo service: a REST API over a database (SQLite or PostgreSQL) that publishes the task
//! events of the platform's shared event contract ("the reference",
//! `kafka-event-driven-reference.md`), the handlers that consume them (audit log, recurring tasks,
//! reminders on scheduled events, live updates, the DLQ) and a live page — built with
//! `event-runtime`.
//!
//! Run it with `cargo run -p example-todo` (embedded broker, SQLite in `todo.db`, nothing to
//! install) or under a Dapr sidecar (`EVENTS_MODE=dapr`); see `example-todo/README.md`.

pub mod api;
pub mod cli;
pub mod db;
pub mod events;
pub mod handlers;
pub mod reminders;
pub mod settings;

use event_runtime::{App, TopicSpec};
use tokio::sync::broadcast;

use crate::db::Db;
use crate::events::TaskSync;

/// The live updates of this replica: the `task-updates` handler sends, every open
/// `GET /tasks/stream` receives (and keeps its user's).
#[derive(Clone, Debug)]
pub struct Updates(broadcast::Sender<TaskSync>);

impl Default for Updates {
    fn default() -> Self {
        Updates(broadcast::channel(1024).0)
    }
}

impl Updates {
    /// Hands `update` to every connected client; answers how many there are.
    pub fn send(&self, update: TaskSync) -> usize {
        self.0.send(update).unwrap_or(0)
    }

    /// A receiver for one client.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskSync> {
        self.0.subscribe()
    }
}

/// The topics of the reference (§3), declared once: they drive `example-todo manifests`
/// (Strimzi `KafkaTopic`s) and the real-stack suite's topic creation.
pub fn topics() -> [TopicSpec; 4] {
    use events::{DLQ, REMINDERS, TASK_EVENTS, TASK_UPDATES};
    [
        TopicSpec::new(TASK_EVENTS)
            .partitions(12)
            .retention_days(7)
            .retention_cloud_days(30),
        TopicSpec::new(REMINDERS)
            .partitions(12)
            .retention_days(7)
            .retention_cloud_days(30),
        TopicSpec::new(TASK_UPDATES)
            .partitions(12)
            .retention_days(1),
        TopicSpec::new(DLQ)
            .partitions(12)
            .retention_days(7)
            .retention_cloud_days(30),
    ]
}

/// `app` with the service's topics and what it publishes where (for the AsyncAPI `send`s).
pub fn declare(app: App) -> App {
    use events::{
        ReminderDue, TaskChanged, TaskCompleted, TaskSync, FANOUT_PUBSUB, REMINDERS, TASK_EVENTS,
        TASK_UPDATES,
    };
    app.with_topics(topics())
        .publishes::<TaskChanged>(TASK_EVENTS)
        .publishes::<TaskCompleted>(TASK_EVENTS)
        .publishes::<ReminderDue>(REMINDERS)
        .publishes_via::<TaskSync>(FANOUT_PUBSUB, TASK_UPDATES)
}

/// The whole service, wired: the event app, the API routes (their publisher is the app's, so
/// in a test they publish into the app's embedded broker), the database and the live updates.
#[derive(Debug)]
pub struct Service {
    /// Every `#[event_handler]` of the service, with the database and updates as state.
    pub app: App,
    /// `GET /`, the task API, `GET /tasks/stream`, `/dlq` (behind the ops token).
    pub routes: axum::Router,
    /// The database.
    pub db: Db,
    /// The live updates.
    pub updates: Updates,
}

impl Service {
    /// The service on `db`, with every handler of the program.
    pub fn new(db: Db) -> Service {
        Service::with_app(App::new(), db)
    }

    /// The service on `db`, with `app` (a test's, say: `App::new().with_mode(Mode::Embedded)`)
    /// and the default [`Settings`](settings::Settings): no ops token.
    pub fn with_app(app: App, db: Db) -> Service {
        Service::with_settings(app, db, &settings::Settings::default())
    }

    /// The service on `db`, with `app`, its ops routes guarded by the settings' token.
    pub fn with_settings(app: App, db: Db, settings: &settings::Settings) -> Service {
        Service::with_ops_token(app, db, settings.ops_token.clone())
    }

    /// [`Service::with_app`] with the ops routes' token given. Without one they are open on the
    /// embedded broker and closed under Dapr ([`api::OpsAccess::new`]).
    pub fn with_ops_token(app: App, db: Db, ops_token: Option<String>) -> Service {
        let ops = api::OpsAccess::new(app.mode(), ops_token);
        if ops == api::OpsAccess::NoTokenSet {
            tracing::warn!(
                "GET /dlq and POST /dlq/replay answer 403: set ADMIN_API_TOKEN (or APP_API_TOKEN) to use them under Dapr"
            );
        }
        let updates = Updates::default();
        let app = declare(app).with_outbox(db.outbox().clone());
        let app = app.with_state(db.clone()).with_state(updates.clone());
        let publisher = app.publisher();
        let api = api::Api {
            db: db.clone(),
            publisher: publisher.clone(),
            updates: updates.clone(),
            ops,
        };
        Service {
            routes: api::routes(api),
            app,
            db,
            updates,
        }
    }

    /// Serves on `0.0.0.0:$APP_PORT` (the app's [`App::app_port`], read once with its
    /// configuration), until SIGTERM/Ctrl-C.
    pub async fn serve(self) -> std::io::Result<()> {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], self.app.app_port()));
        self.serve_on(tokio::net::TcpListener::bind(addr).await?)
            .await
    }

    /// [`Service::serve`] on a listener you bound (tests bind port 0).
    pub async fn serve_on(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.app.serve_on(listener, self.routes).await
    }
}
