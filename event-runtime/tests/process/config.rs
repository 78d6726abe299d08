//! Start-up configuration from the process environment: a malformed variable stops the app with
//! an error that names it, `DAPR_HTTP_ENDPOINT` is honoured, and an idempotent handler's timeout
//! must be shorter than the claim lease.
//!
//! The environment is one per process, so this module has one test, which sets and clears the
//! variables in turn, each change under the binary's lock; the parsing itself is unit-tested in
//! `config.rs` without touching it.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use event_runtime::{event_handler, App, AppError, ConfigError, Event, Mode};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "job.done", version = "1.0", unkeyed)]
pub struct JobDone {
    pub job: i64,
}

#[event_handler(topic = "jobs", idempotent, timeout = 30)]
async fn idem_own_timeout(_e: JobDone) -> anyhow::Result<()> {
    Ok(())
}

#[event_handler(topic = "other-jobs", idempotent)]
async fn idem_app_timeout(_e: JobDone) -> anyhow::Result<()> {
    Ok(())
}

#[event_handler(topic = "slow-jobs", timeout = 600)]
async fn not_idempotent(_e: JobDone) -> anyhow::Result<()> {
    Ok(())
}

const VARS: [&str; 18] = [
    "APP_PORT",
    "DAPR_HTTP_PORT",
    "DAPR_HTTP_ENDPOINT",
    "DAPR_API_TOKEN",
    "EVENTS_MODE",
    "EVENTS_HANDLER_TIMEOUT_SECS",
    "EVENTS_CLAIM_LEASE_SECS",
    "EVENTS_MAX_HOLD_SECS",
    "EVENTS_PUBSUB",
    "EVENTS_STATE_STORE",
    "EVENTS_DLQ",
    "APP_API_TOKEN",
    "APP_ID",
    "EVENTS_SIGNING_KEY",
    "EVENTS_ENV",
    "KAFKA_CLUSTER",
    "EVENTS_NAMESPACE",
    "EVENT_SCHEMAS_UPDATE",
];

/// Runs `check` with exactly `vars` set among the runtime's variables.
fn with_env<T>(vars: &[(&str, &str)], check: impl FnOnce() -> T) -> T {
    let _alone = crate::env_lock();
    for var in VARS {
        std::env::remove_var(var);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let out = check();
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    out
}

/// `App::try_new` of this module's handlers: the binary's other modules have theirs.
#[allow(clippy::result_large_err)] // `App::try_new`'s own error type
fn try_new() -> Result<App, AppError> {
    App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.module() == module_path!()),
    )
}

fn start_up_error(vars: &[(&str, &str)]) -> ConfigError {
    match with_env(vars, try_new) {
        Err(AppError::Config(e)) => e,
        Err(other) => panic!("{vars:?}: not a configuration error: {other}"),
        Ok(_) => panic!("{vars:?}: the app started"),
    }
}

#[tokio::test]
async fn start_up_configuration_from_the_environment() {
    malformed_variables_stop_start_up();
    unset_or_empty_keeps_the_defaults();
    an_idempotent_handler_must_time_out_before_its_lease_runs_out();
    serve_refuses_before_it_binds().await;
    the_sidecar_endpoint_is_honoured().await;
    an_app_from_a_config_reads_no_environment().await;
}

#[allow(deprecated)] // The readers that came before `Config` still say which variable is wrong.
fn malformed_variables_stop_start_up() {
    for (var, value) in [
        ("APP_PORT", "80a"),
        ("DAPR_HTTP_PORT", "80a"),
        ("EVENTS_HANDLER_TIMEOUT_SECS", "80a"),
        ("EVENTS_CLAIM_LEASE_SECS", "80a"),
        ("EVENTS_MAX_HOLD_SECS", "80a"),
        ("EVENTS_MODE", "foo"),
        ("DAPR_HTTP_ENDPOINT", "localhost:3500"),
        ("EVENTS_PUBSUB", "kafka-pubsub/../../state"),
        ("EVENTS_STATE_STORE", "../statestore"),
        ("EVENTS_DLQ", "dead letters"),
        ("EVENTS_ENV", "staging"),
        ("KAFKA_CLUSTER", "My Cluster"),
        ("EVENTS_NAMESPACE", "Team_A"),
        ("EVENT_SCHEMAS_UPDATE", "yes"),
        ("APP_ID", "todo app"),
    ] {
        let err = start_up_error(&[(var, value)]);
        assert!(
            matches!(&err, ConfigError::Invalid { var: v, value: got, .. } if *v == var && got == value),
            "{var}={value}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(var) && text.contains(value),
            "{var}={value}: {text}"
        );
        // App::new panics with the same message, as for other start-up errors.
        let panic = with_env(&[(var, value)], || {
            std::panic::catch_unwind(App::new).expect_err("App::new panics")
        });
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(message, text);
    }
    // A token a header cannot carry is named, and never shown.
    let err = start_up_error(&[("DAPR_API_TOKEN", "s3cret token")]);
    assert!(
        matches!(
            &err,
            ConfigError::Invalid {
                var: "DAPR_API_TOKEN",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("s3cret"), "{err}");
    // An unknown EVENTS_ENV no longer means local, wherever it is read.
    let panic = with_env(&[("EVENTS_ENV", "staging")], || {
        std::panic::catch_unwind(event_runtime::config::Deployment::from_env)
            .expect_err("it panics")
    });
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("EVENTS_ENV=\"staging\""), "{message}");
    let err = with_env(&[("EVENTS_MODE", "foo")], Mode::from_env).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            var: "EVENTS_MODE",
            ..
        }
    ));
    let err = with_env(
        &[("DAPR_HTTP_PORT", "x")],
        event_runtime::dapr::DaprClient::try_from_env,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            var: "DAPR_HTTP_PORT",
            ..
        }
    ));
}

fn unset_or_empty_keeps_the_defaults() {
    let app = with_env(&[], try_new).unwrap();
    assert_eq!(app.mode(), Mode::Embedded);
    // Secrets aside: set but empty is an error there, never "no secret".
    let secret = |v: &str| matches!(v, "APP_API_TOKEN" | "EVENTS_SIGNING_KEY");
    let empty: Vec<(&str, &str)> = VARS
        .iter()
        .filter(|v| !secret(v))
        .map(|v| (*v, ""))
        .collect();
    let app = with_env(&empty, try_new).unwrap();
    assert_eq!(app.mode(), Mode::Embedded);
    for var in VARS.iter().filter(|v| secret(v)) {
        let err = with_env(&[(var, "")], try_new).unwrap_err();
        assert!(
            matches!(&err, AppError::Config(ConfigError::Invalid { var: v, .. }) if v == var),
            "{var}: {err}"
        );
    }
    // The values the real-stack suite and the example set.
    let app = with_env(
        &[
            ("APP_PORT", "8080"),
            ("APP_ID", "todo"),
            ("DAPR_HTTP_PORT", "3500"),
            ("EVENTS_MODE", "dapr"),
            ("EVENTS_PUBSUB", "kafka-pubsub"),
            ("EVENTS_STATE_STORE", "statestore"),
            ("EVENTS_DLQ", "s5-dlq"),
        ],
        try_new,
    )
    .unwrap();
    assert_eq!(app.mode(), Mode::Dapr);
}

fn an_idempotent_handler_must_time_out_before_its_lease_runs_out() {
    // The app-wide 60 s timeout of `idem_app_timeout` is not under a 45 s lease.
    let err = start_up_error(&[("EVENTS_CLAIM_LEASE_SECS", "45")]);
    let ConfigError::TimeoutNotUnderLease {
        handler,
        timeout_secs,
        lease_secs,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (handler.as_str(), *timeout_secs, *lease_secs),
        ("process::config::idem_app_timeout", 60, 45)
    );
    assert!(
        err.to_string().contains("EVENTS_HANDLER_TIMEOUT_SECS"),
        "{err}"
    );
    // A shorter app-wide timeout fixes it.
    with_env(
        &[
            ("EVENTS_CLAIM_LEASE_SECS", "45"),
            ("EVENTS_HANDLER_TIMEOUT_SECS", "40"),
        ],
        try_new,
    )
    .unwrap();
    // The handler's own `timeout = 30` is not strictly shorter than a 30 s lease; the 600 s
    // timeout of a handler that is not idempotent does not matter.
    let err = start_up_error(&[
        ("EVENTS_CLAIM_LEASE_SECS", "30"),
        ("EVENTS_HANDLER_TIMEOUT_SECS", "20"),
    ]);
    assert!(
        matches!(&err, ConfigError::TimeoutNotUnderLease { handler, timeout_secs: 30, lease_secs: 30, .. }
            if handler == "process::config::idem_own_timeout"),
        "{err:?}"
    );
    assert!(err.to_string().contains("its own `timeout`"), "{err}");
}

async fn serve_refuses_before_it_binds() {
    // The port is taken: had `serve` tried to bind, it would fail with AddrInUse.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let app = with_env(&[("APP_PORT", port.as_str())], try_new)
        .unwrap()
        .with_claim_lease(Duration::from_secs(10));
    let err = app.serve().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("idem_app_timeout"), "{err}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = with_env(&[], try_new)
        .unwrap()
        .with_handler_timeout(Duration::from_secs(120));
    let err = app
        .serve_on(listener, axum::Router::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("idem_app_timeout"), "{err}");
}

async fn the_sidecar_endpoint_is_honoured() {
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let sidecar = axum::Router::new()
        .fallback(
            |State(paths): State<Arc<Mutex<Vec<String>>>>, req: Request| async move {
                paths.lock().unwrap().push(req.uri().path().to_owned());
                StatusCode::NO_CONTENT
            },
        )
        .with_state(paths.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, sidecar).await.unwrap() });

    // DAPR_HTTP_ENDPOINT means Dapr mode, and wins over DAPR_HTTP_PORT.
    let app = with_env(
        &[
            ("DAPR_HTTP_ENDPOINT", endpoint.as_str()),
            ("DAPR_HTTP_PORT", "9"),
        ],
        try_new,
    )
    .unwrap();
    assert_eq!(app.mode(), Mode::Dapr);
    app.publisher()
        .publish("jobs", &JobDone { job: 1 })
        .await
        .unwrap();
    assert_eq!(*paths.lock().unwrap(), ["/v1.0/publish/kafka-pubsub/jobs"]);
}

/// What a fake sidecar was asked: the path, and the `dapr-api-token` sent.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// `App::from_config` takes every setting from the config it is given: the process environment
/// says otherwise, and is not read.
#[allow(clippy::await_holding_lock)]
async fn an_app_from_a_config_reads_no_environment() {
    let seen: Seen = Arc::default();
    let sidecar = axum::Router::new()
        .fallback(|State(seen): State<Seen>, req: Request| async move {
            let token = req.headers().get("dapr-api-token");
            let token = token.map(|t| t.to_str().unwrap().to_owned());
            seen.lock()
                .unwrap()
                .push((req.uri().path().to_owned(), token));
            StatusCode::NO_CONTENT
        })
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, sidecar).await.unwrap() });

    let given = [
        ("DAPR_HTTP_ENDPOINT", endpoint.as_str()),
        ("DAPR_API_TOKEN", "from-the-config"),
        ("APP_ID", "billing"),
        ("EVENTS_PUBSUB", "billing-pubsub"),
        ("EVENTS_ENV", "cloud"),
        ("KAFKA_CLUSTER", "prod-kafka"),
        ("EVENTS_NAMESPACE", "billing-ns"),
        // On Dapr, an app with delayed retries (this binary has some) needs its shared key.
        ("EVENTS_SIGNING_KEY", "a-secret-of-the-billing-app"),
    ];
    let lookup = |name: &str| {
        given
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let config = event_runtime::config::Config::from_lookup(lookup).unwrap();
    // The process environment names another app, sidecar, pubsub and cluster, and a value
    // that would not even parse, all the while the app is built and used.
    let elsewhere = [
        ("APP_ID", "not-billing"),
        ("DAPR_HTTP_PORT", "9"),
        ("EVENTS_PUBSUB", "other-pubsub"),
        ("KAFKA_CLUSTER", "other-kafka"),
        ("EVENTS_ENV", "staging"),
    ];
    // Held to the end: no other test of the binary builds an app from this environment.
    let _alone = crate::env_lock();
    for (k, v) in elsewhere {
        std::env::set_var(k, v);
    }
    let app = App::from_config(config);
    assert_eq!((app.app_id(), app.mode()), ("billing", Mode::Dapr));
    assert!(app
        .subscriptions()
        .iter()
        .all(|s| s.pubsubname == "billing-pubsub"));
    let yaml = app.manifests();
    for part in [
        "strimzi.io/cluster: prod-kafka",
        "namespace: billing-ns",
        "- billing\n",
    ] {
        assert!(yaml.contains(part), "{part}:\n{yaml}");
    }
    assert!(!yaml.contains("other-kafka") && !yaml.contains("not-billing"));
    // The cloud retention of a declared topic (30 days), not the local one.
    let app = app.with_topics([event_runtime::TopicSpec::new("jobs")]);
    let jobs = app
        .kafka_topics()
        .into_iter()
        .find(|t| t.name == "jobs")
        .unwrap();
    assert_eq!(jobs.retention, Duration::from_secs(30 * 24 * 3600));
    app.publisher()
        .publish("jobs", &JobDone { job: 1 })
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [(
            "/v1.0/publish/billing-pubsub/jobs".to_owned(),
            Some("from-the-config".to_owned())
        )]
    );
    for (k, _) in elsewhere {
        std::env::remove_var(k);
    }
}

/// `Config::from_env` is the one reader of the process environment: no other module of the
/// runtime calls `std::env::var`.
#[test]
fn only_the_config_module_reads_the_environment() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut readers = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.starts_with(src.join("config"))
                && std::fs::read_to_string(&path).unwrap().contains("env::var")
            {
                readers.push(path.strip_prefix(&src).unwrap().display().to_string());
            }
        }
    }
    assert!(src.join("config").is_dir(), "src/config/ moved");
    assert_eq!(
        readers,
        Vec::<String>::new(),
        "read the variable in `Config`"
    );
}
