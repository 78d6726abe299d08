//! Tracing: one trace from publisher to handler to its own publish.

use std::time::{Duration, Instant};

use e2e::{work, PairOpts, RawRecord, Scenario};
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------- 19

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s19_one_trace_from_the_publisher_through_daprd_and_the_handler_to_its_own_publish() {
    let mut s = Scenario::new("s19");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let id = format!("s19-{run}");
    // An upstream publisher's span: its own trace id and span id, and a vendor's tracestate.
    let trace_id = format!("{run}{run}{run}{run}");
    let parent_id = format!("{run}{run}");
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    let tracestate = format!("e2e=s19{run}");
    let event = work(&id, "user-19", 0);
    // Straight to daprd's publish API, as a service with another SDK would; a 5xx (Kafka's "not
    // the leader" just after the topic was made) is tried again.
    let metadata = [
        ("metadata.cloudevent.id", id.as_str()),
        ("metadata.cloudevent.type", "e2e.work"),
        ("metadata.cloudevent.source", "upstream"),
        ("metadata.cloudevent.traceparent", traceparent.as_str()),
        ("metadata.cloudevent.tracestate", tracestate.as_str()),
        ("metadata.partitionKey", "user-19"),
    ];
    let (status, body) = publish_raw(&s, &p.dapr_url(), "s19-in", &metadata, &event).await;
    assert!(
        (200..300).contains(&status),
        "daprd never took the publish: {status} {body}"
    );

    let forwarded = format!("{id}-fwd");
    let l = s
        .wait_ledger("the forwarded event handled", secs(60), |l| {
            has_ok(l, "s19_sink", std::slice::from_ref(&forwarded))
        })
        .await;
    let received = |handler: &str, id: &str| -> (String, String) {
        let v = runs_of(&l, handler, id)[0];
        (
            v["traceparent"].as_str().unwrap_or_default().to_owned(),
            v["tracestate"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let ids = |tp: &str| -> (String, String) {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "a W3C traceparent: {tp:?}");
        (parts[1].to_owned(), parts[2].to_owned())
    };
    // The handler got the publisher's context through daprd and Kafka, as sent.
    let (tp_in, ts_in) = received("s19_forward", &id);
    assert_eq!(tp_in, traceparent);
    assert_eq!(ts_in, tracestate);
    // Its own publish, through daprd and Kafka again: the same trace, a span of its own.
    let (tp_out, ts_out) = received("s19_sink", &forwarded);
    let (out_trace, out_parent) = ids(&tp_out);
    assert_eq!(out_trace, trace_id, "one trace id end to end");
    assert_ne!(out_parent, parent_id);
    assert_eq!(ts_out, tracestate, "the tracestate kept end to end");

    // The spans the app exported (feature `otel`): the delivery is the child of the publisher's
    // span, and the handler's publish names the delivery's span; the next delivery is its child.
    // (A span is exported when it ends, just after its handler wrote the ledger.)
    let first = delivery_span(&s, &p, &id).await;
    assert_eq!(first["trace_id"], trace_id.as_str(), "{first}");
    assert_eq!(first["parent_span_id"], parent_id.as_str(), "{first}");
    assert_eq!(first["tracestate"], tracestate.as_str(), "{first}");
    assert_eq!(first["span_id"], out_parent.as_str(), "{first}");
    let second = delivery_span(&s, &p, &forwarded).await;
    assert_eq!(second["trace_id"], trace_id.as_str(), "{second}");
    assert_eq!(second["parent_span_id"], first["span_id"], "{second}");
    s.note(format!(
        "trace {trace_id}: publisher {parent_id} -> delivery {} -> publish -> delivery {}",
        first["span_id"], second["span_id"]
    ));

    // A record Kafka's own Java producer wrote, as an instrumented service with a plain Kafka
    // client does: a CloudEvent whose envelope names no trace, and the producer's context in
    // `traceparent` and `tracestate` record headers. daprd passes the headers on to the app, and
    // the delivery continues that trace.
    let run2 = uid();
    let kafka_id = format!("s19k-{run2}");
    let (k_trace_id, k_parent_id) = (run2.repeat(4), run2.repeat(2));
    let k_traceparent = format!("00-{k_trace_id}-{k_parent_id}-01");
    let k_tracestate = format!("e2e=s19k{run2}");
    let record = json!({"specversion": "1.0", "id": kafka_id, "type": "e2e.work",
        "source": "a-kafka-producer", "datacontenttype": "application/json",
        "data": work(&kafka_id, "user-19", 1)});
    s.produce(
        "s19-in",
        &[RawRecord {
            key: Some(b"user-19".to_vec()),
            value: record.to_string().into_bytes(),
            headers: vec![
                ("traceparent".into(), k_traceparent.clone().into_bytes()),
                ("tracestate".into(), k_tracestate.clone().into_bytes()),
            ],
        }],
    );
    let l = s
        .wait_ledger("the Kafka producer's record handled", secs(60), |l| {
            has_ok(l, "s19_forward", std::slice::from_ref(&kafka_id))
        })
        .await;
    let v = runs_of(&l, "s19_forward", &kafka_id)[0];
    assert_eq!(v["traceparent"], k_traceparent.as_str(), "{v}");
    assert_eq!(v["tracestate"], k_tracestate.as_str(), "{v}");
    let delivery = delivery_span(&s, &p, &kafka_id).await;
    assert_eq!(delivery["trace_id"], k_trace_id.as_str(), "{delivery}");
    assert_eq!(
        delivery["parent_span_id"],
        k_parent_id.as_str(),
        "{delivery}"
    );
    assert_eq!(delivery["tracestate"], k_tracestate.as_str(), "{delivery}");
}

/// The `delivery` span of `event_id` the app exported (`GET /control/spans`), once it has ended;
/// panics after 5 s without it.
async fn delivery_span(s: &Scenario, p: &e2e::Pair, event_id: &str) -> Value {
    let deadline = Instant::now() + secs(5);
    loop {
        let spans: Vec<Value> = s
            .http
            .get(format!("{}/control/spans", p.app_url()))
            .send()
            .await
            .expect("GET /control/spans")
            .json()
            .await
            .expect("spans");
        let found = spans
            .iter()
            .find(|sp| sp["name"] == "delivery" && sp["attributes"]["event_id"] == event_id);
        match found {
            Some(span) => return span.clone(),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            None => panic!("no delivery span of {event_id}: {spans:?}"),
        }
    }
}
