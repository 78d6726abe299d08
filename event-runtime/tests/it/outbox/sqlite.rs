//! The outbox on SQLite: the scenarios of `outbox_support`, and the relay inside a `TestApp`.
#![cfg(feature = "sqlx")]

use super::{Db, ItemAdded, TOPIC};
use event_runtime::event_handler;
use event_runtime::testing::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_out_in_commit_order_per_key() {
    super::commit_order_per_key(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_commits_goes_out_in_few_rounds_and_a_quiet_one_at_once() {
    super::a_burst_goes_out_in_few_rounds(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_publishes_nothing() {
    super::rollback_publishes_nothing(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_while_the_sidecar_is_down_go_out_in_order_once_it_is_back() {
    super::publisher_down_then_back(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_the_buckets_and_publish_each_event_once() {
    super::two_relays(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_rows_are_deleted_after_their_retention() {
    super::retention(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_claims_an_event_once_per_committed_transaction() {
    super::inbox(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replicas_buckets_are_taken_over_when_its_leases_run_out() {
    super::crashed_replicas_buckets_are_taken_over(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_relay_cannot_read_is_refused_and_nothing_is_written() {
    super::an_event_the_relay_cannot_read_is_refused(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_bucket_does_not_starve_the_others() {
    super::a_stuck_bucket_does_not_starve_the_others(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_sidecar_refuses_for_good_is_set_aside_and_can_be_replayed() {
    super::a_refused_row_is_set_aside_and_replayed(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_is_set_aside_at_once() {
    super::an_unreadable_row_is_set_aside_at_once(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_never_sets_a_row_aside() {
    super::a_transient_failure_never_sets_a_row_aside(&Db::sqlite().await).await;
}

/// Consumes what the outbox publishes in the `TestApp` test.
#[event_handler(topic = "items")]
async fn on_item_added(_event: ItemAdded) -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_app_relays_the_outbox_and_waits_for_it() {
    let db = Db::sqlite().await;
    let outbox = db
        .outbox()
        .with_poll_interval(std::time::Duration::from_secs(3600));
    outbox.migrate().await.unwrap();
    let app = TestApp::start(app!().with_outbox(outbox.clone())).await;
    for n in 0..3 {
        db.write(&outbox, "ann", n, true).await;
    }
    // No poll for an hour: the commits woke the relay, and `wait_idle` waited for it.
    app.wait_idle().await;
    assert_eq!(app.runs_of("on_item_added").len(), 3);
    let ns: Vec<u64> = app
        .published_to(TOPIC)
        .iter()
        .map(|e| e.data["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [0, 1, 2]);
    assert_eq!(outbox.stats().await.unwrap().pending, 0);
}
