//! `App::scopes`: least privilege on each pub/sub component, from the app's own inventory.

use event_runtime::{event_handler, App, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "scoped.seen", version = "1.0")]
pub struct Seen {
    pub user_id: String,
}

#[event_handler(topic = "scoped-a", retry = [5, 60], dlq = "scoped-a-dlq")]
async fn on_a(_e: Seen) {}

#[event_handler(topic = "scoped-b", pubsub = "other-pubsub")]
async fn on_b(_e: Seen) {}

fn app() -> App {
    App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.module() == module_path!()),
    )
    .unwrap()
    .with_app_id("scoper")
    .with_default_dlq("dlq")
    .publishes::<Seen>("seen-out")
    .publishes_via::<Seen>("fanout", "seen-fanout")
}

#[test]
fn each_component_grants_the_app_its_own_topics_and_protects_its_ladder() {
    let scopes = app().scopes();
    let components: Vec<&str> = scopes.iter().map(|s| s.pubsub.as_str()).collect();
    assert_eq!(components, ["kafka-pubsub", "other-pubsub", "fanout"]);

    let main = &scopes[0];
    // The app's ladder: every tier of `<app>.retry.<N>s` (the handler uses two of them).
    let ladder: Vec<String> = main
        .subscribes
        .iter()
        .filter(|t| t.starts_with("scoper.retry."))
        .cloned()
        .collect();
    assert!(ladder.contains(&"scoper.retry.5s".to_owned()), "{ladder:?}");
    let with_ladder = |topics: &[&str]| {
        let mut all: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        all.extend(ladder.iter().cloned());
        all.sort();
        all
    };
    assert_eq!(main.subscribes, with_ladder(&["scoped-a"]));
    assert_eq!(
        main.publishes,
        with_ladder(&["dlq", "scoped-a", "scoped-a-dlq", "seen-out"]),
        "retry and dead-letter topics, the consumed topic (replays), the declared one"
    );
    assert_eq!(main.protected, with_ladder(&["dlq", "scoped-a-dlq"]));

    let other = &scopes[1];
    assert_eq!(other.subscribes, ["scoped-b"]);
    assert_eq!(other.publishes, ["dlq", "scoped-b"]);

    // Publishing only: it may subscribe to nothing there.
    let fanout = &scopes[2];
    assert_eq!(fanout.publishes, ["seen-fanout"]);
    assert!(fanout.subscribes.is_empty());
    assert_eq!(fanout.subscription_scope(), "scoper=");
}
