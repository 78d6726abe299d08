//! The outbox on a real PostgreSQL: the scenarios of `outbox_support`, each in its own schema.
//! Run them with `example-todo/scripts/postgres-test.sh`, which starts a throwaway server and
//! sets `TODO_TEST_POSTGRES_URL`.
#![cfg(feature = "sqlx")]

use super::Db;

async fn db() -> Db {
    let url = std::env::var("TODO_TEST_POSTGRES_URL")
        .expect("TODO_TEST_POSTGRES_URL is not set: run example-todo/scripts/postgres-test.sh");
    Db::postgres(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn events_go_out_in_commit_order_per_key() {
    super::commit_order_per_key(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn a_burst_of_commits_goes_out_in_few_rounds_and_a_quiet_one_at_once() {
    super::a_burst_goes_out_in_few_rounds(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn a_rolled_back_transaction_publishes_nothing() {
    super::rollback_publishes_nothing(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn writes_while_the_sidecar_is_down_go_out_in_order_once_it_is_back() {
    super::publisher_down_then_back(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn two_relays_share_the_buckets_and_publish_each_event_once() {
    super::two_relays(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn sent_rows_are_deleted_after_their_retention() {
    super::retention(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn the_inbox_claims_an_event_once_per_committed_transaction() {
    super::inbox(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn a_crashed_replicas_buckets_are_taken_over_when_its_leases_run_out() {
    super::crashed_replicas_buckets_are_taken_over(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn an_event_the_relay_cannot_read_is_refused_and_nothing_is_written() {
    super::an_event_the_relay_cannot_read_is_refused(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn a_stuck_bucket_does_not_starve_the_others() {
    super::a_stuck_bucket_does_not_starve_the_others(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn a_row_the_sidecar_refuses_for_good_is_set_aside_and_can_be_replayed() {
    super::a_refused_row_is_set_aside_and_replayed(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn an_unreadable_row_is_set_aside_at_once() {
    super::an_unreadable_row_is_set_aside_at_once(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn a_transient_failure_never_sets_a_row_aside() {
    super::a_transient_failure_never_sets_a_row_aside(&db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn replicas_migrating_together_create_the_tables_once() {
    let db = db().await;
    let (a, b) = (db.outbox(), db.outbox());
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    a.migrate().await.unwrap();
    assert_eq!(a.stats().await.unwrap().pending, 0);
}
