//! A second broker: the core guarantees on Redis Streams (`pubsub.redis`), through daprd.

use e2e::{lines, PairOpts, Scenario};

use crate::support::*;

// ---------------------------------------------------------------------------------------- 29

/// Three users' events on Redis Streams: some fail once or twice and go up the delayed-retry
/// ladder (Redis streams of their own), one fails for good and is dead-lettered, duplicates are
/// skipped, and a message that is not JSON, written with `XADD`, is dead-lettered with its exact
/// bytes without holding the stream. Each user's events are applied once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s29_redis_streams_retries_dlq_idempotency_order_and_a_poison_message() {
    use base64::Engine as _;
    let mut s = Scenario::on_redis_streams("s29");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();

    let poison = b"\xff not JSON, written with XADD".to_vec();
    s.xadd("s29-events", &poison);
    let core = CoreEvents::new("s29", &run, 3, 8);
    let (events, permanent) = (&core.events, &core.permanent);
    let r = s.publish(&p, "s29-events", events).await;
    assert_eq!(r["published"], events.len(), "{r}");
    // Duplicates of three events: the same ids again.
    let r = s.publish(&p, "s29-events", &events[..3]).await;
    assert_eq!(r["published"], 3, "{r}");

    let want = core.applied();
    s.wait_ledger(
        "every event applied, the permanent one dead-lettered",
        secs(120),
        |l| has_ok(l, "s29_work", &want) && lines(l, "s29_dead_letters", "dead_letter").len() >= 2,
    )
    .await;
    s.settle(secs(4), secs(60)).await;
    let l = s.ledger();

    core.assert_applied_once(&l, "s29_work", &want);
    // The duplicates were delivered, and skipped: their events ran once.
    let requests = s.requests();
    for e in &events[..3] {
        let delivered = requests
            .iter()
            .filter(|r| {
                r["path"] == "/_dispatch/redis-pubsub/s29-events" && r["event_id"] == e["event_id"]
            })
            .count();
        assert_eq!(
            delivered, 2,
            "{} and its duplicate delivered",
            e["event_id"]
        );
    }
    // Redis carries the publish metadata beside the message, so the version arrives with it.
    assert!(requests
        .iter()
        .filter(|r| r["path"] == "/_dispatch/redis-pubsub/s29-events" && r["event_id"].is_string())
        .all(|r| r["eventversion"] == "1.0"));

    let oks = lines(&l, "s29_work", "ok");
    for (user, seqs) in seqs_by_user(&oks) {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs, sorted,
            "{user}'s events in order across their retries"
        );
    }

    let letters = lines(&l, "s29_dead_letters", "dead_letter");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&poison);
    let of_poison: Vec<_> = letters
        .iter()
        .filter(|v| v["dl_record"] == b64.as_str())
        .collect();
    assert_eq!(
        of_poison.len(),
        1,
        "the XADD message, exact bytes: {letters:?}"
    );
    assert_eq!(of_poison[0]["dl_topic"], "s29-events");
    assert!(
        letters.iter().any(|v| v["event_id"] == permanent.as_str()),
        "the permanent failure: {letters:?}"
    );
    assert_eq!(letters.len(), 2, "nothing else dead-lettered: {letters:?}");
}
