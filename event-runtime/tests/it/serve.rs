//! `serve` on a real socket: health, subscriptions, a delivery, and a graceful shutdown that
//! answers RETRY to a delivery still waiting on an inline retry.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_runtime::{event_handler, Event, State};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "job.run", version = "1.0", unkeyed)]
pub struct Job {
    pub fail: bool,
}

#[derive(Clone, Default)]
struct Failures(Arc<AtomicU32>);

#[event_handler(topic = "jobs", retry = [30], retry_mode = "inline")]
async fn run_job(job: Job, State(failures): State<Failures>) -> anyhow::Result<()> {
    if job.fail {
        failures.0.fetch_add(1, Ordering::SeqCst);
        anyhow::bail!("job failed");
    }
    Ok(())
}

#[tokio::test]
async fn serves_and_shuts_down_gracefully() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let failures = Failures::default();
    let app = app!()
        .with_mode(event_runtime::Mode::Embedded)
        .with_state(failures.clone());
    let handle = app.shutdown_handle();
    let server = tokio::spawn(app.serve_on(listener, axum::Router::new()));
    let http = reqwest::Client::new();

    let health: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let subs: Value = http
        .get(format!("{base}/dapr/subscribe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(subs[0]["topic"], "jobs");

    let event = |fail: bool| json!({"specversion":"1.0","id":format!("j-{fail}"),"type":"job.run","source":"t","data":{"fail":fail}});
    let ok: Value = http
        .post(format!("{base}/events/jobs/run_job"))
        .json(&event(false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["status"], "SUCCESS");

    // This delivery fails and waits 30 s for its inline retry; shutting down cuts the wait short.
    let waiting = {
        let (http, url, body) = (
            http.clone(),
            format!("{base}/events/jobs/run_job"),
            event(true),
        );
        tokio::spawn(async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while failures.0.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the failing run happened and its retry wait began");
    handle.shutdown();
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered promptly")
        .unwrap();
    assert_eq!(
        answer["status"], "RETRY",
        "not finished, so the broker must keep it"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
}

#[derive(Clone, Default)]
struct Slow {
    started: Arc<tokio::sync::Notify>,
    finished: Arc<AtomicU32>,
}

#[event_handler(topic = "slow-jobs")]
async fn slow_job(_job: Job, State(slow): State<Slow>) {
    slow.started.notify_one();
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.finished.fetch_add(1, Ordering::SeqCst);
}

/// A handler running when shutdown begins runs to its end, its delivery answers SUCCESS (the
/// broker may forget it), and `serve` returns.
#[tokio::test]
async fn a_handler_running_at_shutdown_finishes_and_answers_success() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let slow = Slow::default();
    let app = app!()
        .with_mode(event_runtime::Mode::Embedded)
        .with_state(Failures::default())
        .with_state(slow.clone());
    let handle = app.shutdown_handle();
    let server = tokio::spawn(app.serve_on(listener, axum::Router::new()));
    let started = slow.started.notified();
    let delivery = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{base}/events/slow-jobs/slow_job"))
            .json(&json!({"specversion":"1.0","id":"s-1","type":"job.run","source":"t","data":{"fail":false}}))
            .send(),
    );
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("the handler started");
    handle.shutdown();
    let answer: Value = tokio::time::timeout(Duration::from_secs(10), delivery)
        .await
        .expect("answered")
        .unwrap()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "SUCCESS");
    assert_eq!(
        slow.finished.load(Ordering::SeqCst),
        1,
        "the handler ran to its end"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
}

/// A connection that stays open (a client that connected and never sent, say) does not hold
/// the shutdown: `serve` returns once in-flight deliveries could have ended (a handler timeout,
/// and 5 s).
#[tokio::test]
async fn an_open_connection_does_not_hold_the_shutdown_past_its_grace() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app!()
        .with_mode(event_runtime::Mode::Embedded)
        .with_state(Failures::default())
        .with_state(Slow::default())
        .with_handler_timeout(Duration::from_secs(1));
    let handle = app.shutdown_handle();
    let server = tokio::spawn(app.serve_on(listener, axum::Router::new()));
    // Connected, half a request sent: the server waits for the rest.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut idle, b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the server has accepted it
    let began = std::time::Instant::now();
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("serve returns despite the open connection")
        .unwrap()
        .unwrap();
    let took = began.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    drop(idle);
}
