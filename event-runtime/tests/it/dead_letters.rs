//! Dead letters: an explicit dead letter skips the retries, a dead letter that cannot be
//! published answers RETRY, and dead letters are replayed to their original topic.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Outcome, Permanent, State};
use serde_json::json;

use crate::ledger::*;

#[event_handler(topic = "given-up", retry = [1, 1])]
async fn gives_up(_e: Doomed) -> Outcome {
    Outcome::dead_letter("this one is hopeless")
}

#[tokio::test(start_paused = true)]
async fn an_explicit_dead_letter_skips_the_retries() {
    let app = TestApp::start(app!().with_state(Ledger::default())).await;
    app.publish("given-up", &Doomed { n: 4 }).await.unwrap();
    app.wait_idle().await;
    assert_eq!(app.runs_of("gives_up").len(), 1, "no retry");
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].permanent && letters[0].attempts == 1,
        "{:?}",
        letters[0]
    );
    assert!(
        letters[0].reason.contains("this one is hopeless"),
        "{}",
        letters[0].reason
    );
}

#[event_handler(topic = "doomed-for-good")]
async fn doomed_for_good(_e: Doomed) -> Result<(), Permanent> {
    Err(Permanent::new("never"))
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_that_cannot_be_published_answers_retry() {
    // A permanent failure must be dead-lettered; the sidecar is unreachable, so the broker keeps
    // the event (RETRY), for a dead letter and for a record that is no CloudEvent alike.
    let body =
        json!({"specversion":"1.0","id":"y","type":"always.fails","source":"s","data":{"n":2}});
    let answer =
        answer_without_a_sidecar(app!(), "/events/doomed-for-good/doomed_for_good", body).await;
    assert_eq!(answer["status"], "RETRY");
    let answer = answer_without_a_sidecar(
        app!(),
        "/_dispatch/kafka-pubsub/doomed-for-good",
        json!("not a CloudEvent"),
    )
    .await;
    assert_eq!(answer["status"], "RETRY");
}

#[event_handler(topic = "replayable", retry = [1])]
async fn fails_until_fixed(e: Flaky, State(fixed): State<Fixed>) -> anyhow::Result<()> {
    anyhow::ensure!(*fixed.0.lock().unwrap(), "not fixed yet for {}", e.user_id);
    Ok(())
}

#[derive(Clone, Default)]
struct Fixed(Arc<Mutex<bool>>);

#[tokio::test(start_paused = true)]
async fn dead_letters_are_replayed_to_their_original_topic() {
    let fixed = Fixed::default();
    let app = TestApp::start(
        app!()
            .with_state(fixed.clone())
            .with_state(Ledger::default()),
    )
    .await;
    app.publish(
        "replayable",
        &Flaky {
            user_id: "a".into(),
        },
    )
    .await
    .unwrap();
    app.publish(
        "replayable",
        &Flaky {
            user_id: "b".into(),
        },
    )
    .await
    .unwrap();
    app.wait_idle().await;
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 2);
    *fixed.0.lock().unwrap() = true;
    // A replay keeps the partition key (the user) of each event.
    let mut keys: Vec<Option<String>> = letters
        .iter()
        .map(|l| l.replay_event("me").partition_key)
        .collect();
    keys.sort();
    assert_eq!(keys, [Some("a".to_owned()), Some("b".to_owned())]);

    use event_runtime::dlq::{replay, ReplayFilter};
    let by_handler = ReplayFilter {
        handler: Some("fails_until_fixed".into()),
        ..Default::default()
    };
    let none = ReplayFilter {
        event_type: Some("other.type".into()),
        ..Default::default()
    };
    assert_eq!(replay(&app.publisher(), &letters, &none).await.matched, 0);
    let future = ReplayFilter {
        since: Some("2999-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    assert_eq!(replay(&app.publisher(), &letters, &future).await.matched, 0);
    let report = replay(&app.publisher(), &letters, &by_handler).await;
    assert_eq!(
        (report.matched, report.replayed, report.failed.len()),
        (2, 2, 0)
    );
    app.wait_idle().await;
    let successes: Vec<_> = app
        .runs_of("fails_until_fixed")
        .into_iter()
        .filter(|r| r.outcome == "success")
        .collect();
    assert_eq!(successes.len(), 2, "both replayed events handled");
    let mut replayed_ids: Vec<&str> = successes.iter().map(|r| r.event_id.as_str()).collect();
    let mut original_ids: Vec<&str> = letters.iter().map(|l| l.event.id.as_str()).collect();
    replayed_ids.sort_unstable();
    original_ids.sort_unstable();
    assert_eq!(
        replayed_ids, original_ids,
        "replayed with their original ids"
    );
    assert_eq!(app.dead_letters("dlq").len(), 2, "no new dead letters");
}
