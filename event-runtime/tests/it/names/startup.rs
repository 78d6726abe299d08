//! Names a delivery would put into a sidecar URL are checked when the app is built, and again
//! by `serve` for those a builder method set: a handler's pubsub component, its dead-letter and
//! retry topics, the Dapr dead-letter topic.

#![allow(missing_docs)]

use event_runtime::{event_handler, App, AppError, ConfigError, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "job.done", version = "1.0", unkeyed)]
pub struct JobDone {
    pub job: i64,
}

#[event_handler(topic = "jobs", pubsub = "kafka pubsub")]
async fn spaced_pubsub(_e: JobDone) -> anyhow::Result<()> {
    Ok(())
}

/// 245 characters: a valid topic. Its retries go to the app's retry ladder, whose names do not
/// depend on the topic.
#[event_handler(topic = "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd", retry = [30])]
async fn long_delayed(_e: JobDone) -> anyhow::Result<()> {
    Ok(())
}

/// The same length with inline retries: no retry topic, so nothing to refuse.
#[event_handler(topic = "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii", retry = [1], retry_mode = "inline")]
async fn long_inline(_e: JobDone) -> anyhow::Result<()> {
    Ok(())
}

#[event_handler(topic = "fine-jobs", retry = [30])]
async fn fine(_e: JobDone) -> anyhow::Result<()> {
    Ok(())
}

fn handlers(
    name: &str,
) -> impl Iterator<Item = &'static event_runtime::__private::HandlerDef> + '_ {
    event_runtime::__private::registered()
        .into_iter()
        .filter(move |h| h.name() == name)
}

fn app_of(name: &str) -> App {
    App::with_handlers(handlers(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// Who owns the refused name, and the name.
fn refused(name: &str) -> (String, event_runtime::dapr::InvalidName) {
    match App::with_handlers(handlers(name)) {
        Err(AppError::Config(ConfigError::InvalidName { owner, invalid })) => (owner, invalid),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the app was built"),
    }
}

#[test]
fn a_handlers_pubsub_and_retry_topics_are_checked_when_the_app_is_built() {
    let (owner, invalid) = refused("spaced_pubsub");
    assert_eq!(owner, "handler `it::names::startup::spaced_pubsub`");
    assert_eq!(
        (invalid.what, invalid.name.as_str()),
        ("pubsub component", "kafka pubsub")
    );

    app_of("long_delayed");
    app_of("long_inline");
    app_of("fine");
}

#[tokio::test]
async fn names_a_builder_set_are_checked_by_serve_before_it_serves() {
    for (app, bad) in [
        (
            app_of("fine").with_dapr_dead_letter_topic("dapr dead letters"),
            "\"dapr dead letters\"",
        ),
        (
            app_of("fine").with_default_pubsub("kafka/pubsub"),
            "\"kafka/pubsub\"",
        ),
        (
            app_of("fine").with_default_dlq("dead/letters"),
            "\"dead/letters\"",
        ),
        // The retry ladder's topics carry the app id: `<app>.retry.1s` is past Kafka's 249.
        (app_of("fine").with_app_id(&"a".repeat(245)), ".retry.1s`"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = app
            .serve_on(listener, axum::Router::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(bad), "{bad}: {err}");
    }
}
