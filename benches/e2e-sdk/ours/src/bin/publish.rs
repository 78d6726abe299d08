//! Publishes N CloudEvents (type bench.event, data {"n":i}) to kafka-pubsub/bench-events through
//! daprd's publish API, CONC requests in flight. Usage: bench-publish DAPR_HTTP_PORT N CONC
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let port: u16 = a[1].parse().unwrap();
    let n: u64 = a[2].parse().unwrap();
    let conc: u64 = a[3].parse().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1.0/publish/kafka-pubsub/bench-events");
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, next, failed) = (client.clone(), url.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = serde_json::json!({
                    "specversion": "1.0", "id": format!("bench-{i}"), "source": "bench-publisher",
                    "type": "bench.event", "datacontenttype": "application/json", "data": {"n": i}
                });
                let mut ok = false;
                for _ in 0..5 {
                    let r = client
                        .post(format!("{url}?metadata.partitionKey=k{i}"))
                        .header("content-type", "application/cloudevents+json")
                        .body(body.to_string())
                        .send()
                        .await;
                    if matches!(&r, Ok(resp) if resp.status().is_success()) {
                        ok = true;
                        break;
                    }
                }
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let f = failed.load(Ordering::Relaxed);
    println!("published {} of {n} in {secs:.2}s ({:.0}/s), {f} failed", n - f, (n - f) as f64 / secs);
    if f > 0 {
        std::process::exit(1);
    }
}
