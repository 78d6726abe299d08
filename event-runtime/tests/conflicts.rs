//! Handlers that cannot live in one app stop it from starting, naming both functions.

#![allow(missing_docs)]

use event_runtime::{event_handler, App, AppError, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum TaskEvent {
    #[serde(rename = "task.created")]
    Created { task_id: i64, user_id: String },
    #[serde(rename = "task.completed")]
    Completed { task_id: i64, user_id: String },
}

mod same_type {
    use super::*;

    #[event_handler(topic = "task-events")]
    pub async fn first(_e: TaskCompleted) {}

    // Also takes task.completed, on the same pubsub and topic.
    #[event_handler(topic = "task-events")]
    pub async fn second(_e: TaskEvent) {}
}

mod same_route {
    use super::*;

    #[event_handler(topic = "a", route = "/shared")]
    pub async fn one(_e: TaskCompleted) {}

    #[event_handler(topic = "b", route = "/shared")]
    pub async fn two(_e: TaskCompleted) {}
}

mod fine {
    use super::*;

    // The same type on another pubsub is another subscription: no conflict with same_type.
    #[event_handler(pubsub = "other-pubsub", topic = "task-events")]
    pub async fn elsewhere(_e: TaskCompleted) {}
}

fn handlers_in(
    module: &str,
) -> impl Iterator<Item = &'static event_runtime::__private::HandlerDef> + '_ {
    event_runtime::__private::registered()
        .into_iter()
        .filter(move |h| h.module().ends_with(module))
}

#[test]
fn same_pubsub_topic_and_type_is_refused_naming_both() {
    let err = App::with_handlers(handlers_in("same_type")).unwrap_err();
    match &err {
        AppError::DuplicateType {
            event_type,
            topic,
            first,
            second,
            ..
        } => {
            assert_eq!(
                (event_type.as_str(), topic.as_str()),
                ("task.completed", "task-events")
            );
            assert!(
                first.ends_with("same_type::first") && second.ends_with("same_type::second"),
                "{err}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains("same_type::first")
            && err.to_string().contains("same_type::second")
    );
}

#[test]
fn same_route_is_refused_naming_both() {
    let err = App::with_handlers(handlers_in("same_route")).unwrap_err();
    assert!(
        matches!(&err, AppError::DuplicateRoute { route, .. } if route == "/shared"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("same_route::one") && msg.contains("same_route::two"),
        "{msg}"
    );
}

#[test]
fn app_new_panics_and_try_new_errs_on_conflicts() {
    assert!(App::try_new().is_err());
    let panic = std::panic::catch_unwind(App::new).unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("both"), "{msg}");
}

#[test]
fn the_same_type_on_another_pubsub_is_fine() {
    let app =
        App::with_handlers(handlers_in("fine").chain(handlers_in("same_type").take(1))).unwrap();
    assert_eq!(app.subscriptions().len(), 2);
}

#[test]
fn two_types_claiming_one_type_and_version_are_refused() {
    // TaskCompleted and TaskEvent::Completed both declare task.completed 1.0.
    let err = event_runtime::schema::check_unique().unwrap_err();
    assert!(
        matches!(&err, AppError::DuplicateEventVersion { event_type, version, .. }
        if event_type == "task.completed" && version == "1.0"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("conflicts::TaskCompleted") && msg.contains("conflicts::TaskEvent"),
        "{msg}"
    );
    assert!(matches!(
        App::try_new(),
        Err(AppError::DuplicateEventVersion { .. })
    ));
}
