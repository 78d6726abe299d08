//! Names that go into a sidecar URL (pubsub component, topic, state store, state key) are
//! checked before any request: a stand-in sidecar that records every request path sees none
//! of the refused calls, and the valid ones at exactly the path Dapr's API expects.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Router;
use event_runtime::dapr::DaprClient;
use event_runtime::OutgoingEvent;
use event_runtime::{Event, PublishError};
use serde_json::json;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

/// Every request path the stand-in sidecar saw, as sent (still percent-encoded).
#[derive(Clone, Default)]
struct Paths(Arc<Mutex<Vec<String>>>);

impl Paths {
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A sidecar on 127.0.0.1:0 that records every request (any method, any path) and answers 204.
/// A request is recorded before it is answered, so once a call has returned, whatever it sent
/// is in the list.
async fn recording_sidecar() -> (String, Paths) {
    let paths = Paths::default();
    let app = Router::new()
        .fallback(|State(paths): State<Paths>, req: Request| async move {
            paths.0.lock().unwrap().push(req.uri().path().to_owned());
            StatusCode::NO_CONTENT
        })
        .with_state(paths.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), paths)
}

fn event() -> TaskCompleted {
    TaskCompleted {
        task_id: 7,
        user_id: "u-1".into(),
    }
}

fn publisher(client: DaprClient) -> event_runtime::Publisher {
    event_runtime::App::with_handlers([])
        .unwrap()
        .with_dapr_client(client)
        .publisher()
}

#[tokio::test]
async fn a_publish_to_a_traversing_topic_or_pubsub_never_reaches_the_sidecar() {
    let (base, paths) = recording_sidecar().await;
    let publisher = publisher(DaprClient::new(&base, None));

    let err = publisher
        .publish_to("kafka-pubsub", "../../state/statestore", &event())
        .await
        .unwrap_err();
    let PublishError::InvalidName(invalid) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (invalid.what, invalid.name.as_str()),
        ("topic", "../../state/statestore")
    );
    assert!(!err.is_transient(), "an invalid name is never retried");
    assert!(
        err.to_string()
            .contains("invalid topic \"../../state/statestore\""),
        "{err}"
    );

    let err = publisher
        .publish_to("kafka-pubsub/../../state", "task-events", &event())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PublishError::InvalidName(i) if i.what == "pubsub component" && i.name == "kafka-pubsub/../../state"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(paths.seen(), Vec::<String>::new(), "nothing was sent");

    // The same sidecar takes a valid publish, at exactly Dapr's publish path.
    publisher
        .publish_to("kafka-pubsub", "task-events", &event())
        .await
        .unwrap();
    assert_eq!(paths.seen(), ["/v1.0/publish/kafka-pubsub/task-events"]);
}

#[tokio::test]
async fn every_refused_publish_name_sends_nothing() {
    let (base, paths) = recording_sidecar().await;
    let client = DaprClient::new(&base, None);
    let cases = [
        ("kafka-pubsub", ".."),
        ("kafka-pubsub", "."),
        ("kafka-pubsub", ""),
        ("kafka-pubsub", "task-events?x=1"),
        ("kafka-pubsub", "task-events#x"),
        ("kafka-pubsub", "task%2Fevents"),
        ("kafka-pubsub", "task events"),
        ("..", "task-events"),
        ("", "task-events"),
        ("kafka pubsub", "task-events"),
    ];
    for (pubsub, topic) in cases {
        let out = OutgoingEvent::from_event(pubsub, topic, "test", &event()).unwrap();
        let err = client.publish(&out).await.unwrap_err();
        assert!(
            matches!(err, PublishError::InvalidName(_)),
            "{pubsub}/{topic}: {err:?}"
        );
    }
    assert_eq!(paths.seen(), Vec::<String>::new());
}

#[tokio::test]
async fn state_calls_check_the_store_and_the_key_and_encode_them() {
    let (base, paths) = recording_sidecar().await;
    let client = DaprClient::new(&base, None);
    let value = json!({"status": "claimed"});

    for (store, key) in [
        ("../v1.0/publish/kafka-pubsub", "k"),
        ("state/store", "k"),
        ("statestore", ".."),
        ("statestore", ""),
        ("statestore", "app||key"),
    ] {
        let errors = [
            client.get_state(store, key).await.unwrap_err(),
            client
                .save_state(store, key, &value, None, None)
                .await
                .unwrap_err(),
            client.delete_state(store, key, None).await.unwrap_err(),
        ];
        for err in errors {
            let invalid = err
                .invalid_name
                .as_ref()
                .unwrap_or_else(|| panic!("{store}/{key}: {err:?}"));
            assert!(
                matches!(invalid.what, "state store" | "state key"),
                "{invalid}"
            );
            assert_eq!((err.store.as_str(), err.key.as_str()), (store, key));
            assert_eq!(err.status, None);
        }
    }
    assert_eq!(paths.seen(), Vec::<String>::new(), "nothing was sent");

    // Valid names: the key is percent-encoded as one path segment.
    let key = "todo|app::handler|a/b c";
    assert_eq!(client.get_state("statestore", key).await.unwrap(), None);
    assert!(client
        .save_state("statestore", key, &value, None, None)
        .await
        .unwrap());
    client.delete_state("statestore", key, None).await.unwrap();
    let encoded = "/v1.0/state/statestore/todo%7Capp%3A%3Ahandler%7Ca%2Fb%20c";
    assert_eq!(paths.seen(), [encoded, "/v1.0/state/statestore", encoded]);
}
