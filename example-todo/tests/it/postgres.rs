//! The service on a real PostgreSQL: the same scenarios as on SQLite. Run it with
//! `example-todo/scripts/postgres-test.sh`, which starts a throwaway server and sets
//! `TODO_TEST_POSTGRES_URL`.

use crate::common;

use example_todo::db::Db;

fn url() -> String {
    std::env::var("TODO_TEST_POSTGRES_URL")
        .expect("TODO_TEST_POSTGRES_URL is not set: run example-todo/scripts/postgres-test.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run example-todo/scripts/postgres-test.sh"]
async fn the_service_on_postgresql() {
    // Two replicas starting together: the migrations run once, under the advisory lock.
    let url = url();
    let (a, b) = tokio::join!(Db::connect(&url), Db::connect(&url));
    let (db, _) = (a.unwrap(), b.unwrap());
    assert_eq!(db.backend(), "postgres");
    let s = common::start_on(db).await;
    // One after the other: the scheduler's tick sees every due reminder in the database.
    common::recurring_task_scenario(&s).await;
    common::crud_scenario(&s).await;
    common::reminder_scenario(&s).await;
    common::dlq_scenario(&s).await;
    common::unique_event_scenario(&s.db).await;
    // A completed, deleted or changed task's reminder is cancelled.
    common::cancelled_reminder_scenario(&s).await;
    // Two replays racing on the same dead letters: each re-published once.
    common::concurrent_replay_scenario(&s).await;
    let again = Db::connect(&url)
        .await
        .expect("reconnect: migrations already applied");
    assert!(!again.audit_log().await.unwrap().is_empty());
}
