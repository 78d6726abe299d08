//! Harness of the real-stack suite (Kafka + Redis + daprd + the `e2e-app` binary).
//!
//! `scripts/e2e.sh` starts Kafka and Redis, creates the topics and runs the ignored tests of
//! `tests/real_stack.rs` with the stack's coordinates in the environment. Each test builds a
//! [`Scenario`]: its own run directory, Dapr resources (a Kafka consumer group named after the
//! scenario's app id), app + daprd pairs on free loopback ports with their own logs. Tests wait
//! by condition with deadlines ([`Scenario::wait_ledger`]); on a failing test the scenario
//! prints the tails of its logs when dropped, and every process it started is killed.

pub mod ledger;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use ledger::{now_ms, read_jsonl, AppendFile};

/// Where the stack is, from the environment `scripts/e2e.sh` sets. Missing values FAIL the test.
#[derive(Debug, Clone)]
pub struct StackEnv {
    /// `127.0.0.1:port`.
    pub kafka_bootstrap: String,
    /// Redis port on 127.0.0.1.
    pub redis_port: u16,
    /// The daprd binary.
    pub daprd_bin: PathBuf,
    /// The e2e-app binary.
    pub app_bin: PathBuf,
    /// Root of the per-test run directories.
    pub run_dir: PathBuf,
    /// The repository (for `scripts/stack.sh`).
    pub repo_root: PathBuf,
    /// Kafka's jars (for its own Java producer).
    pub kafka_libs: PathBuf,
    /// PostgreSQL's port on 127.0.0.1, for the scenarios that keep their state there.
    pub postgres_port: Option<u16>,
}

fn need(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need Kafka, Redis and daprd; run them with scripts/e2e.sh"
        ),
    }
}

impl StackEnv {
    /// Reads the stack's coordinates; panics (fails the test) when any is missing.
    pub fn from_env() -> StackEnv {
        let env = StackEnv {
            kafka_bootstrap: need("KAFKA_BOOTSTRAP"),
            redis_port: need("REDIS_PORT").parse().expect("REDIS_PORT is a port"),
            daprd_bin: need("DAPRD_BIN").into(),
            app_bin: need("E2E_APP_BIN").into(),
            run_dir: need("E2E_RUN_DIR").into(),
            repo_root: need("E2E_REPO_ROOT").into(),
            kafka_libs: need("KAFKA_LIBS").into(),
            postgres_port: std::env::var("POSTGRES_PORT")
                .ok()
                .and_then(|p| p.parse().ok()),
        };
        for p in [&env.daprd_bin, &env.app_bin] {
            assert!(p.exists(), "{} does not exist", p.display());
        }
        env
    }
}

/// Header on every request the harness makes, so the app's request log leaves them out.
pub const HARNESS_HEADER: &str = "x-e2e-harness";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// One started process with its log file and pid file (the script kills what is listed there
/// if the test process itself is killed).
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Its log.
    pub log: PathBuf,
    pid_file: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.pid_file);
    }
}

impl Proc {
    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self, grace: Duration) {
        if !self.running() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

/// The idempotency claim lease of every scenario app (`EVENTS_CLAIM_LEASE_SECS`, unless a
/// scenario sets its own): short, so that a scenario can wait it out.
pub const CLAIM_LEASE_SECS: u64 = 6;

/// How long daprd's Kafka component waits before it redelivers a record the app answered RETRY
/// (its constant retry back-off).
pub const REDELIVERY_BACKOFF_SECS: u64 = 5;

/// The shortest quiet [`Scenario::settle`] takes for "nothing is in flight": longer than a claim
/// lease plus a redelivery, the longest anything can stay pending unseen.
pub const SETTLE_QUIET_SECS: u64 = CLAIM_LEASE_SECS + REDELIVERY_BACKOFF_SECS + 1;

/// Options of one app + daprd pair.
#[derive(Debug, Clone, Default)]
pub struct PairOpts {
    /// Extra environment of the app.
    pub app_env: Vec<(String, String)>,
    /// Extra environment of daprd.
    pub daprd_env: Vec<(String, String)>,
}

/// One replica: the app and its sidecar, with their ports.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Replica name (`r1`, `r2`).
    pub replica: String,
    /// The app's port.
    pub app_port: u16,
    /// daprd's HTTP port.
    pub dapr_http: u16,
    /// daprd's gRPC port.
    pub dapr_grpc: u16,
    dapr_internal: u16,
    dapr_metrics: u16,
    opts: PairOpts,
}

impl Pair {
    /// The same replica (ports and all), its app started with `name=value` besides: the app of
    /// a redeploy.
    pub fn with_app_env(&self, name: &str, value: &str) -> Pair {
        let mut pair = self.clone();
        pair.opts.app_env.push((name.to_owned(), value.to_owned()));
        pair
    }

    /// `http://127.0.0.1:<daprd http>`.
    pub fn dapr_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.dapr_http)
    }

    /// `http://127.0.0.1:<app>`.
    pub fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.app_port)
    }

    fn app_name(&self) -> String {
        format!("app-{}", self.replica)
    }

    fn daprd_name(&self) -> String {
        format!("daprd-{}", self.replica)
    }
}

/// One scenario: its run directory, Dapr resources, processes, ledger and request log.
pub struct Scenario {
    /// `s4`, ...
    pub name: String,
    /// The Dapr app id (and Kafka consumer group).
    pub app_id: String,
    /// Run directory.
    pub dir: PathBuf,
    /// Every handler run, one JSON line each.
    pub ledger: PathBuf,
    /// Every request daprd made to the app.
    pub requests: PathBuf,
    /// The stack.
    pub env: StackEnv,
    resources: PathBuf,
    procs: BTreeMap<String, Proc>,
    /// HTTP client.
    pub http: reqwest::Client,
    started: Instant,
    /// `EVENTS_SIGNING_KEY` of the scenario's apps.
    signing_key: String,
    /// Environment every app of the scenario gets (besides each pair's own).
    app_env: Vec<(String, String)>,
}

/// The Dapr state store (`statestore`) of a scenario's apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateStore {
    /// `state.redis`, on the stack's Redis.
    Redis,
    /// `state.postgresql`, on the stack's PostgreSQL.
    Postgres,
    /// `state.in-memory`: each sidecar its own, lost when it stops.
    InMemory,
}

impl StateStore {
    /// The component's YAML: `statestore`, with the store's own metadata.
    fn component(self, env: &StackEnv) -> String {
        self.component_named(env, "statestore", &[])
    }

    /// The YAML of a component `name` on this store, with `extra` metadata besides its own.
    fn component_named(self, env: &StackEnv, name: &str, extra: &[(&str, &str)]) -> String {
        let (ty, metadata) = match self {
            StateStore::Redis => (
                "state.redis",
                format!(
                    "    - name: redisHost\n      value: \"127.0.0.1:{}\"\n    - name: redisPassword\n      value: \"\"\n",
                    env.redis_port
                ),
            ),
            StateStore::Postgres => {
                let port = env
                    .postgres_port
                    .expect("POSTGRES_PORT is not set: run scripts/e2e.sh");
                (
                    "state.postgresql",
                    format!(
                        "    - name: connectionString\n      value: \"host=127.0.0.1 port={port} user=dapr dbname=postgres sslmode=disable\"\n"
                    ),
                )
            }
            StateStore::InMemory => ("state.in-memory", String::new()),
        };
        let mut metadata = metadata;
        for (k, v) in extra {
            metadata.push_str(&format!("    - name: {k}\n      value: \"{v}\"\n"));
        }
        let metadata = if metadata.is_empty() {
            "  metadata: []\n".to_owned()
        } else {
            format!("  metadata:\n{metadata}")
        };
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n{metadata}"
        )
    }
}

/// The `kafka-pubsub` component of app `app_id` (its own consumer group), with `extra` metadata.
fn kafka_component(env: &StackEnv, app_id: &str, extra: &[(String, String)]) -> String {
    let mut yaml = include_str!("../../tools/dapr/kafka-pubsub.yaml")
        .replace("@BROKERS@", &env.kafka_bootstrap)
        .replace("@CONSUMER_GROUP@", app_id)
        .replace("@CLIENT_ID@", app_id);
    for (name, value) in extra {
        yaml.push_str(&format!(
            "    - name: {name}\n      value: {}\n",
            serde_json::Value::String(value.clone())
        ));
    }
    yaml
}

/// The Redis Streams component of [`Scenario::on_redis_streams`].
pub const REDIS_PUBSUB: &str = "redis-pubsub";

/// The app id of scenario `name` (`s1`, ...).
pub fn scenario_app_id(name: &str) -> String {
    format!("e2e-{name}")
}

impl Scenario {
    /// A fresh scenario `name` (handlers of module `e2e_app::<name>`), with a unique app id.
    pub fn new(name: &str) -> Scenario {
        Self::with_state_store(name, StateStore::Redis)
    }

    /// [`Scenario::new`], its apps keeping their state (idempotency claims) in `store`.
    pub fn with_state_store(name: &str, store: StateStore) -> Scenario {
        let env = StackEnv::from_env();
        // The same id `e2e-app --topics` names this scenario's retry topics with (every run starts
        // on a freshly formatted Kafka and an empty Redis).
        let app_id = scenario_app_id(name);
        let dir = env.run_dir.join(&app_id);
        let resources = dir.join("resources");
        fs::create_dir_all(dir.join("logs")).expect("run dir");
        fs::create_dir_all(&resources).expect("resources dir");
        fs::write(
            resources.join("kafka-pubsub.yaml"),
            kafka_component(&env, &app_id, &[]),
        )
        .expect("write kafka-pubsub.yaml");
        fs::write(resources.join("statestore.yaml"), store.component(&env))
            .expect("write statestore.yaml");
        eprintln!("[{app_id}] run dir {}", dir.display());
        Scenario {
            name: name.to_owned(),
            ledger: dir.join("ledger.jsonl"),
            requests: dir.join("requests.jsonl"),
            app_id,
            dir,
            env,
            resources,
            procs: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .default_headers(
                    [(
                        reqwest::header::HeaderName::from_static(HARNESS_HEADER),
                        reqwest::header::HeaderValue::from_static("1"),
                    )]
                    .into_iter()
                    .collect(),
                )
                .build()
                .expect("http client"),
            started: Instant::now(),
            // A secret of this run, shared by the scenario's replicas: the bookkeeping of their
            // delayed retries and their dead letters are signed with it.
            signing_key: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            app_env: Vec::new(),
        }
    }

    /// Gives every app of the scenario `name=value` in its environment.
    pub fn set_app_env(&mut self, name: &str, value: &str) {
        self.app_env.push((name.to_owned(), value.to_owned()));
    }

    /// A fresh scenario whose apps publish and subscribe on Redis Streams (`pubsub.redis`, on the
    /// stack's Redis, as the component `redis-pubsub`, their default) instead of Kafka.
    /// daprd's workers take one message at a time (`concurrency: 1`), so a stream is delivered
    /// in order, and a message not acknowledged is redelivered after `processingTimeout` (10 s),
    /// checked every `redeliverInterval` (1 s).
    pub fn on_redis_streams(name: &str) -> Scenario {
        let mut s = Self::new(name);
        let yaml = format!(
            r#"apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {REDIS_PUBSUB}
spec:
  type: pubsub.redis
  version: v1
  metadata:
    - name: redisHost
      value: "127.0.0.1:{port}"
    - name: redisPassword
      value: ""
    - name: consumerID
      value: "{app_id}"
    - name: concurrency
      value: "1"
    - name: processingTimeout
      value: "10s"
    - name: redeliverInterval
      value: "1s"
"#,
            port = s.env.redis_port,
            app_id = s.app_id,
        );
        fs::write(s.resources.join("redis-pubsub.yaml"), &yaml).expect("write redis-pubsub.yaml");
        s.app_env
            .push(("EVENTS_PUBSUB".to_owned(), REDIS_PUBSUB.to_owned()));
        s
    }

    /// Appends a message to the Redis stream `topic` as Dapr's Redis component writes one (its
    /// `data` field holding `value`), with `redis-cli`: what any Redis client can put there.
    pub fn xadd(&self, topic: &str, value: &[u8]) {
        use std::io::Write as _;
        // `-x` reads the last argument from stdin, so the bytes need no quoting.
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.env.redis_port.to_string()])
            .args(["-x", "XADD", topic, "*", "data"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run redis-cli");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(value)
            .expect("write the value");
        let out = child.wait_with_output().expect("redis-cli");
        assert!(
            out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("ERR"),
            "XADD {topic}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.note(format!("XADD {topic}: {} bytes", value.len()));
    }

    /// Adds a state store component `name` on `store` with `extra` metadata (for example Dapr's
    /// outbox settings), beside `statestore`. Call it before starting any daprd.
    pub fn add_state_store(&self, name: &str, store: StateStore, extra: &[(&str, &str)]) {
        let yaml = store.component_named(&self.env, name, extra);
        fs::write(self.resources.join(format!("{name}.yaml")), &yaml)
            .unwrap_or_else(|e| panic!("write {name}.yaml: {e}"));
        self.note(format!("state store component {name}:\n{yaml}"));
    }

    /// The `kafka-pubsub` component again, with `extra` metadata besides its own (the scopes the
    /// app generates, say). Call it before starting any daprd.
    pub fn set_kafka_metadata(&self, extra: &[(String, String)]) {
        let yaml = kafka_component(&self.env, &self.app_id, extra);
        fs::write(self.resources.join("kafka-pubsub.yaml"), &yaml)
            .expect("write kafka-pubsub.yaml");
        self.note(format!("kafka-pubsub component:\n{yaml}"));
    }

    /// What the scenario's app generates for its components' metadata (`e2e-app --scopes`, run
    /// with the app's id and default DLQ): `(component, [(name, value)])`.
    pub fn scopes(&self) -> Vec<(String, Vec<(String, String)>)> {
        let out = Command::new(&self.env.app_bin)
            .arg("--scopes")
            .env("APP_ID", &self.app_id)
            .env("EVENTS_DLQ", format!("{}-dlq", self.name))
            .env("E2E_SCENARIO", &self.name)
            .env("EVENTS_MODE", "embedded")
            .output()
            .expect("run e2e-app --scopes");
        assert!(
            out.status.success(),
            "e2e-app --scopes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("scopes JSON");
        all.iter()
            .map(|c| {
                let metadata = serde_json::from_value(c["metadata"].clone()).expect("pairs");
                (
                    c["pubsub"].as_str().unwrap_or_default().to_owned(),
                    metadata,
                )
            })
            .collect()
    }

    /// Seconds since the scenario began (for progress lines).
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Prints a progress line.
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!("[{} +{:.1}s] {}", self.name, self.elapsed(), msg.as_ref());
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) {
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        use std::io::Write as _;
        let _ = writeln!(f, "===== {} start", now_ms());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log fd"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let pids = self.env.run_dir.join("pids");
        let _ = fs::create_dir_all(&pids);
        let pid_file = pids.join(format!("{}-{name}.pid", self.app_id));
        let _ = fs::write(&pid_file, child.id().to_string());
        self.procs.insert(
            name.to_owned(),
            Proc {
                child,
                log,
                pid_file,
            },
        );
    }

    /// Chooses ports for replica `replica` (nothing starts yet).
    pub fn pair(&self, replica: &str, opts: PairOpts) -> Pair {
        Pair {
            replica: replica.to_owned(),
            app_port: free_port(),
            dapr_http: free_port(),
            dapr_grpc: free_port(),
            dapr_internal: free_port(),
            dapr_metrics: free_port(),
            opts,
        }
    }

    /// Starts the app of `pair` and waits until it answers `GET /healthz`.
    pub async fn start_app(&mut self, pair: &Pair) {
        let mut cmd = Command::new(&self.env.app_bin);
        cmd.env("APP_PORT", pair.app_port.to_string())
            .env("APP_ID", &self.app_id)
            .env("DAPR_HTTP_PORT", pair.dapr_http.to_string())
            .env("DAPR_GRPC_PORT", pair.dapr_grpc.to_string())
            .env("EVENTS_MODE", "dapr")
            .env("EVENTS_SIGNING_KEY", &self.signing_key)
            .env("EVENTS_DLQ", format!("{}-dlq", self.name))
            .env("E2E_SCENARIO", &self.name)
            .env("REPLICA", &pair.replica)
            .env("LEDGER_FILE", &self.ledger)
            .env("REQUEST_LOG", &self.requests)
            .env("RUST_LOG", "info")
            .env("EVENTS_CLAIM_LEASE_SECS", CLAIM_LEASE_SECS.to_string())
            .env(
                "EVENTS_HANDLER_TIMEOUT_SECS",
                (CLAIM_LEASE_SECS - 1).to_string(),
            )
            .env_remove("APP_API_TOKEN")
            .env_remove("DAPR_API_TOKEN");
        for (k, v) in self.app_env.iter().chain(&pair.opts.app_env) {
            cmd.env(k, v);
        }
        self.spawn(&pair.app_name(), cmd);
        let url = format!("{}/healthz", pair.app_url());
        let name = pair.app_name();
        self.wait_until(&format!("{name} healthy"), Duration::from_secs(30), |s| {
            let (http, url) = (s.http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// Starts daprd of `pair` (after its app) and waits for `/v1.0/healthz/outbound` = 204.
    pub async fn start_daprd(&mut self, pair: &Pair) {
        let app_id = self.app_id.clone();
        self.launch_daprd(&app_id, pair, true).await;
    }

    /// Starts daprd of another app, `app_id`, with no app behind it (only its publish API), on
    /// the scenario's components, as replica `replica`.
    pub async fn start_daprd_without_app(&mut self, app_id: &str, replica: &str) -> Pair {
        let pair = self.pair(replica, PairOpts::default());
        self.launch_daprd(app_id, &pair, false).await;
        pair
    }

    async fn launch_daprd(&mut self, app_id: &str, pair: &Pair, with_app: bool) {
        let mut cmd = Command::new(&self.env.daprd_bin);
        cmd.args(["--mode", "standalone", "--app-id", app_id]);
        if with_app {
            cmd.args([
                "--app-port",
                &pair.app_port.to_string(),
                "--app-protocol",
                "http",
                "--app-channel-address",
                "127.0.0.1",
            ]);
        }
        cmd.args([
            "--dapr-http-port",
            &pair.dapr_http.to_string(),
            "--dapr-grpc-port",
            &pair.dapr_grpc.to_string(),
            "--dapr-listen-addresses",
            "127.0.0.1",
            "--dapr-internal-grpc-port",
            &pair.dapr_internal.to_string(),
            "--dapr-internal-grpc-listen-address",
            "127.0.0.1",
            "--metrics-port",
            &pair.dapr_metrics.to_string(),
            "--metrics-listen-address",
            "127.0.0.1",
            "--resources-path",
        ])
        .arg(&self.resources)
        .args([
            "--log-level",
            // `E2E_DAPRD_LOG_LEVEL=debug` to see what daprd does.
            &std::env::var("E2E_DAPRD_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned()),
            "--dapr-graceful-shutdown-seconds",
            "2",
        ]);
        // Dapr's scheduler, for the Jobs API (scripts/e2e.sh starts one for the whole run).
        if let Ok(address) = std::env::var("SCHEDULER_ADDRESS") {
            cmd.args(["--scheduler-host-address", &address]);
        }
        cmd.env("DAPR_HOST_IP", "127.0.0.1")
            .env_remove("APP_API_TOKEN")
            .env_remove("DAPR_API_TOKEN");
        for (k, v) in &pair.opts.daprd_env {
            cmd.env(k, v);
        }
        self.spawn(&pair.daprd_name(), cmd);
        let url = format!("{}/v1.0/healthz/outbound", pair.dapr_url());
        let name = pair.daprd_name();
        self.wait_until(&format!("{name} healthy"), Duration::from_secs(60), |s| {
            let (http, url) = (s.http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 204)
            }
        })
        .await;
    }

    /// App, then daprd, then waits until daprd lists every subscription the app declares.
    pub async fn start_pair(&mut self, pair: &Pair) {
        self.start_app(pair).await;
        self.start_daprd(pair).await;
        self.wait_subscribed(pair).await;
        self.note(format!(
            "{} up: app :{} daprd :{}",
            pair.replica, pair.app_port, pair.dapr_http
        ));
    }

    /// The app's own `GET /dapr/subscribe` answer.
    pub async fn app_subscriptions(&self, pair: &Pair) -> Vec<Value> {
        let mut req = self.http.get(format!("{}/dapr/subscribe", pair.app_url()));
        if let Some((_, t)) = pair.opts.app_env.iter().find(|(k, _)| k == "APP_API_TOKEN") {
            req = req.header("dapr-api-token", t);
        }
        let v: Value = req
            .send()
            .await
            .expect("GET /dapr/subscribe")
            .json()
            .await
            .expect("subscribe JSON");
        v.as_array().cloned().expect("subscribe answer is an array")
    }

    /// daprd's `GET /v1.0/metadata`.
    pub async fn metadata(&self, pair: &Pair) -> Value {
        // A sidecar that cannot be reached, or answers no JSON, fails the scenario: `null` would
        // pass checks it should fail.
        let meta = self
            .try_metadata(pair)
            .await
            .unwrap_or_else(|e| panic!("daprd metadata of {}: {e}", pair.replica));
        assert!(
            meta["id"].is_string(),
            "daprd metadata of {}: {meta}",
            pair.replica
        );
        meta
    }

    /// daprd's metadata, or why it could not be read.
    async fn try_metadata(&self, pair: &Pair) -> Result<Value, String> {
        let mut req = self.http.get(format!("{}/v1.0/metadata", pair.dapr_url()));
        if let Some((_, t)) = pair
            .opts
            .daprd_env
            .iter()
            .find(|(k, _)| k == "DAPR_API_TOKEN")
        {
            req = req.header("dapr-api-token", t);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(resp.status().to_string());
        }
        resp.json().await.map_err(|e| e.to_string())
    }

    /// Waits until daprd's metadata lists every topic of the app's subscription list.
    pub async fn wait_subscribed(&mut self, pair: &Pair) {
        let want: Vec<String> = self
            .app_subscriptions(pair)
            .await
            .iter()
            .map(|s| s["topic"].as_str().unwrap_or_default().to_owned())
            .collect();
        self.wait_topics(pair, want).await;
    }

    /// Waits until daprd of `pair` lists a subscription to each of `want` (streaming ones
    /// included).
    pub async fn wait_topics(&self, pair: &Pair, want: Vec<String>) {
        let p = pair.clone();
        self.wait_until(
            &format!("daprd-{} subscribed to {want:?}", pair.replica),
            Duration::from_secs(60),
            |s| {
                let (want, p) = (want.clone(), p.clone());
                async move {
                    let m = s.try_metadata(&p).await.unwrap_or_default();
                    let have: Vec<&str> = m["subscriptions"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|s| s["topic"].as_str()).collect())
                        .unwrap_or_default();
                    want.iter().all(|t| have.contains(&t.as_str()))
                }
            },
        )
        .await;
    }

    /// Polls `cond` every 200 ms until it holds or `timeout` passes (then fails the test).
    pub async fn wait_until<'a, F, Fut>(&'a self, desc: &str, timeout: Duration, mut cond: F)
    where
        F: FnMut(&'a Scenario) -> Fut,
        Fut: std::future::Future<Output = bool> + 'a,
    {
        let start = Instant::now();
        loop {
            if cond(self).await {
                self.note(format!(
                    "{desc}: after {:.1}s",
                    start.elapsed().as_secs_f64()
                ));
                return;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for: {desc}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every ledger line so far.
    pub fn ledger(&self) -> Vec<Value> {
        read_jsonl(&self.ledger)
    }

    /// Every request-log line so far.
    pub fn requests(&self) -> Vec<Value> {
        read_jsonl(&self.requests)
    }

    /// Polls the ledger until `cond` holds, or fails after `timeout` with `desc` and a summary.
    pub async fn wait_ledger(
        &self,
        desc: &str,
        timeout: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let l = self.ledger();
            if cond(&l) {
                self.note(format!(
                    "{desc}: after {:.1}s ({} ledger lines)",
                    start.elapsed().as_secs_f64(),
                    l.len()
                ));
                return l;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for: {desc}; ledger has {} lines: {}",
                    l.len(),
                    summarize(&l)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until neither the ledger nor the request log has grown for `quiet` (at most
    /// `timeout`): nothing is in flight any more. The quiet is at least [`SETTLE_QUIET_SECS`].
    pub async fn settle(&self, quiet: Duration, timeout: Duration) {
        let quiet = quiet.max(Duration::from_secs(SETTLE_QUIET_SECS));
        let start = Instant::now();
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut last = (size(&self.ledger), size(&self.requests));
        let mut since = Instant::now();
        while since.elapsed() < quiet {
            assert!(
                start.elapsed() < timeout,
                "still busy after {timeout:?} (ledger and request log keep growing)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = (size(&self.ledger), size(&self.requests));
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
        self.note(format!("settled ({:?} quiet)", quiet));
    }

    /// Publishes `events` (Work items) to `topic` through the app's framework publisher; a
    /// publish daprd refuses (a broker hiccup) is retried for up to 30 s, in order per user.
    pub async fn publish(&self, pair: &Pair, topic: &str, events: &[Value]) -> Value {
        let r = self.publish_with(pair, topic, events, 30_000).await;
        if r["retried"].as_u64().unwrap_or(0) > 0 {
            self.note(format!(
                "publish to {topic}: {} publishes were retried",
                r["retried"]
            ));
        }
        r
    }

    /// [`Scenario::publish`], retrying each failed publish for up to `retry_for_ms`.
    pub async fn publish_with(
        &self,
        pair: &Pair,
        topic: &str,
        events: &[Value],
        retry_for_ms: u64,
    ) -> Value {
        let r: Value = self
            .http
            .post(format!("{}/control/publish", pair.app_url()))
            .json(&json!({"topic": topic, "events": events, "retry_for_ms": retry_for_ms}))
            .send()
            .await
            .expect("POST /control/publish")
            .json()
            .await
            .expect("publish answer");
        r
    }

    /// Writes `records` to `topic` with Kafka's own Java producer, not through Dapr: the bytes a
    /// service with a plain Kafka client can put on any topic. Returns once the broker has
    /// acknowledged every record.
    pub fn produce(&self, topic: &str, records: &[RawRecord]) {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut input = String::new();
        for r in records {
            input.push_str(&r.key.as_deref().map(b64).unwrap_or_default());
            input.push('\t');
            input.push_str(&b64(&r.value));
            for (name, value) in &r.headers {
                input.push_str(&format!("\t{name}={}", b64(value)));
            }
            input.push('\n');
        }
        self.run_producer("ProduceRecords.java", &[], topic, &input, records.len());
        self.note(format!("produced {} raw records to {topic}", records.len()));
    }

    /// Writes `events` to `topic` with CloudEvents' own Java SDK (its Kafka binding), each in
    /// binary or structured mode. Returns once the broker has acknowledged every record.
    pub fn produce_cloudevents(&self, topic: &str, events: &[SdkEvent]) {
        let mut input = String::new();
        for e in events {
            let mode = if e.binary { "BINARY" } else { "STRUCTURED" };
            let fields = [mode, &e.key, &e.id, &e.source, &e.ty, &e.data.to_string()];
            input.push_str(&fields.join("\t"));
            input.push('\n');
        }
        let sdk = self.env.repo_root.join("target/tools/cloudevents/libs");
        self.run_producer(
            "ProduceCloudEvents.java",
            &[sdk],
            topic,
            &input,
            events.len(),
        );
        self.note(format!(
            "produced {} events to {topic} with CloudEvents' SDK",
            events.len()
        ));
    }

    /// Reads `count` events from `topic`, from its beginning, with CloudEvents' own Java SDK
    /// (its Kafka binding's deserializer, either mode): what a consumer we did not write sees.
    /// Each as JSON: `mode` (`binary` or `structured`), `key`, `id`, `source`, `type`,
    /// `datacontenttype`, `extensions` and `data` (text).
    pub fn consume_cloudevents(&self, topic: &str, count: usize) -> Vec<Value> {
        let sdk = self.env.repo_root.join("target/tools/cloudevents/libs");
        let source = self.env.repo_root.join("e2e/java/ConsumeCloudEvents.java");
        let out = Command::new("java")
            .args([
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-cp",
            ])
            .arg(format!(
                "{}/*:{}/*",
                self.env.kafka_libs.display(),
                sdk.display()
            ))
            .arg(&source)
            .args([&self.env.kafka_bootstrap, topic, &count.to_string()])
            .output()
            .expect("run java (CloudEvents' consumer)");
        assert!(
            out.status.success(),
            "ConsumeCloudEvents.java failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
            .collect()
    }

    /// Runs the Java producer `e2e/java/<file>` with Kafka's jars (and those of `libs`) on
    /// `topic`, `input` on its stdin; it must report `count` records produced.
    fn run_producer(&self, file: &str, libs: &[PathBuf], topic: &str, input: &str, count: usize) {
        use std::io::Write as _;
        let source = self.env.repo_root.join("e2e/java").join(file);
        let mut classpath = format!("{}/*", self.env.kafka_libs.display());
        for dir in libs {
            assert!(
                dir.is_dir(),
                "{} is missing: run scripts/provision.sh",
                dir.display()
            );
            classpath.push_str(&format!(":{}/*", dir.display()));
        }
        let mut child = Command::new("java")
            .args([
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-cp",
            ])
            .arg(classpath)
            .arg(&source)
            .args([&self.env.kafka_bootstrap, topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run java (Kafka's producer)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write records");
        let out = child.wait_with_output().expect("java producer");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("produced {count}")),
            "{file} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Replays `letters` (dead letters as JSON) through the app's framework publisher.
    pub async fn replay(&self, pair: &Pair, letters: &[Value]) -> Value {
        self.http
            .post(format!("{}/control/replay", pair.app_url()))
            .json(letters)
            .send()
            .await
            .expect("POST /control/replay")
            .json()
            .await
            .expect("replay report")
    }

    /// SIGKILL the app of `pair`.
    pub fn kill_app(&mut self, pair: &Pair) {
        if let Some(mut p) = self.procs.remove(&pair.app_name()) {
            p.kill();
            self.note(format!("SIGKILLed {}", pair.app_name()));
        }
    }

    /// SIGTERM (then SIGKILL after `grace`) the app of `pair`.
    pub fn stop_app(&mut self, pair: &Pair, grace: Duration) {
        if let Some(mut p) = self.procs.remove(&pair.app_name()) {
            p.terminate(grace);
            self.note(format!("stopped {}", pair.app_name()));
        }
    }

    /// SIGTERM daprd of `pair`.
    pub fn stop_daprd(&mut self, pair: &Pair) {
        if let Some(mut p) = self.procs.remove(&pair.daprd_name()) {
            p.terminate(Duration::from_secs(15));
            self.note(format!("stopped {}", pair.daprd_name()));
        }
    }

    /// Runs `scripts/stack.sh` function `func` (e.g. `stack_stop_kafka`) in a child bash.
    pub fn stack(&self, func: &str) {
        let script = self.env.repo_root.join("scripts/stack.sh");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("source \"$1\" && {func}"))
            .arg("bash")
            .arg(&script)
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{func} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.note(format!(
            "{func}: {}",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " | ")
        ));
    }

    /// Prints the last `n` lines of every log of this scenario.
    pub fn print_logs(&self, n: usize) {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.join("logs"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.push(self.ledger.clone());
        files.push(self.requests.clone());
        files.sort();
        for f in files {
            eprintln!("----- tail -n {n} {}", f.display());
            eprintln!("{}", tail(&f, n));
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[{}] FAILED after {:.1}s; logs:", self.name, self.elapsed());
            self.print_logs(40);
        }
        // Apps first (no new work), then their sidecars.
        let names: Vec<String> = self.procs.keys().cloned().collect();
        for n in names.iter().filter(|n| n.starts_with("app-")) {
            if let Some(p) = self.procs.get_mut(n) {
                p.kill();
            }
        }
        for p in self.procs.values_mut() {
            p.terminate(Duration::from_secs(5));
        }
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A short per-handler/outcome count of ledger lines.
pub fn summarize(l: &[Value]) -> String {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for v in l {
        let k = format!(
            "{}/{}",
            v["handler"].as_str().unwrap_or("?"),
            v["outcome"].as_str().unwrap_or("?")
        );
        *m.entry(k).or_default() += 1;
    }
    format!("{m:?}")
}

/// A record for [`Scenario::produce`].
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    /// The record key (the partition key).
    pub key: Option<Vec<u8>>,
    /// The value, byte for byte.
    pub value: Vec<u8>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// An event for [`Scenario::produce_cloudevents`].
#[derive(Debug, Clone)]
pub struct SdkEvent {
    /// Binary mode (`ce_*` headers); structured mode otherwise.
    pub binary: bool,
    /// The record key.
    pub key: String,
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `source` (a URI reference).
    pub source: String,
    /// CloudEvent `type`.
    pub ty: String,
    /// The data (JSON).
    pub data: Value,
}

/// A `Work` item as JSON.
pub fn work(event_id: &str, user: &str, seq: u64) -> Value {
    json!({"event_id": event_id, "user_id": user, "seq": seq})
}

/// Ledger lines of `handler` with `outcome`.
pub fn lines<'a>(l: &'a [Value], handler: &str, outcome: &str) -> Vec<&'a Value> {
    l.iter()
        .filter(|v| v["handler"] == handler && v["outcome"] == outcome)
        .collect()
}
