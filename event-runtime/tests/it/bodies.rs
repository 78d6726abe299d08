//! An enum event whose variants hold one `#[event(body)]` struct, and a struct event that holds
//! one as a flattened field: the body's key, id and fields serve the event on the way out and on
//! the way in.

#![allow(missing_docs)]

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[event(body)]
pub struct Change {
    pub event_id: String,
    pub event_version: String,
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum Changed {
    #[serde(rename = "task.created")]
    Created(Change),
    #[serde(rename = "task.deleted")]
    Deleted(Change),
}

#[event_handler(topic = "changes", idempotency_key = "{event_type}-{task_id}")]
async fn on_change(_event: Changed) {}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type", rename = "task.completed")]
#[event(type = "task.completed", version = "1.0")]
pub struct Completed {
    #[serde(flatten)]
    #[event(body)]
    pub change: Change,
    pub by: String,
}

#[event_handler(topic = "completions", idempotency_key = "{task_id}-{by}")]
async fn on_completed(_event: Completed) {}

fn change(event_id: &str, task_id: i64) -> Change {
    Change {
        event_id: event_id.into(),
        event_version: "1.0".into(),
        task_id,
        user_id: format!("user-{task_id}"),
    }
}

#[tokio::test]
async fn a_body_gives_the_key_the_id_and_the_fields_of_its_variant() {
    let app = TestApp::start(app!()).await;
    let created = Changed::Created(change("e-1", 7));
    app.publish("changes", &created).await.unwrap();
    // Another id, but the same key (`{event_type}-{task_id}`): a duplicate.
    app.publish("changes", &Changed::Created(change("e-2", 7)))
        .await
        .unwrap();
    app.publish("changes", &Changed::Deleted(change("e-3", 7)))
        .await
        .unwrap();
    app.wait_idle().await;

    let out = app.published_to("changes");
    let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["e-1", "e-2", "e-3"],
        "the body's event_id is the CloudEvent id"
    );
    assert!(out
        .iter()
        .all(|e| e.partition_key.as_deref() == Some("user-7")));
    assert_eq!(out[0].ty, "task.created");
    assert_eq!(
        out[0].data["task_id"], 7,
        "the body's fields sit beside the tag"
    );

    assert_ran(&app, "on_change", ["e-1", "e-2", "e-3"]);
}

/// `handler` ran the first and third event, and skipped the second as a duplicate by its key:
/// the key template read the body's field.
fn assert_ran(app: &TestApp, handler: &str, ids: [&str; 3]) {
    let runs = app.runs_of(handler);
    let ran: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.event_id.as_str(), r.outcome.as_str()))
        .collect();
    let expected = [
        (ids[0], "success"),
        (ids[1], "skipped"),
        (ids[2], "success"),
    ];
    assert_eq!(ran, expected, "the key template reads the body's field");
}

#[tokio::test]
async fn a_struct_events_body_gives_its_key_its_id_and_its_fields() {
    let app = TestApp::start(app!()).await;
    let completed = |id: &str, by: &str| Completed {
        change: change(id, 9),
        by: by.into(),
    };
    app.publish("completions", &completed("c-1", "ann"))
        .await
        .unwrap();
    // Another id, but the same key (`{task_id}-{by}`, one field the body's): a duplicate.
    app.publish("completions", &completed("c-2", "ann"))
        .await
        .unwrap();
    app.publish("completions", &completed("c-3", "bob"))
        .await
        .unwrap();
    app.wait_idle().await;

    let out = app.published_to("completions");
    let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["c-1", "c-2", "c-3"], "the body's event_id is the id");
    assert!(out
        .iter()
        .all(|e| e.partition_key.as_deref() == Some("user-9")));
    assert_eq!(
        out[0].data["task_id"], 9,
        "the body's fields sit beside the others"
    );
    assert_eq!(out[0].data["by"], "ann");

    assert_ran(&app, "on_completed", ["c-1", "c-2", "c-3"]);
}
