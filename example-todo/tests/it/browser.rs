//! The page in a real browser: headless Chromium, driven over the Chrome DevTools Protocol,
//! watches a user's tasks while the test changes them through the API. Run it with
//! `scripts/browser-test.sh` (installs Debian's chromium when missing). Without Chromium the
//! test fails: it does not skip.

use std::process::Stdio;
use std::time::Duration;

use event_runtime::{App, Mode};
use example_todo::db::Db;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(30);

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "Chromium not found at {path}: run scripts/browser-test.sh (it installs Debian's chromium), or set CHROMIUM"
    );
    path
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One page over CDP.
struct Page {
    ws: Ws,
    next_id: u64,
}

impl Page {
    /// Evaluates `expression` in the page, answering its value (JSON).
    async fn eval(&mut self, expression: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({"id": id, "method": "Runtime.evaluate",
                          "params": {"expression": expression, "returnByValue": true}});
        self.ws.send(Message::text(call.to_string())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("CDP answers in time")
                .expect("CDP connection open")
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(
                    v["result"]["exceptionDetails"].is_null(),
                    "{expression}: {v}"
                );
                return v["result"]["result"]["value"].clone();
            }
        }
    }

    /// Polls `expression` until `ok` holds for its value, or fails after [`DEADLINE`].
    async fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = tokio::time::Instant::now();
        loop {
            let v = self.eval(expression).await;
            if ok(&v) {
                return v;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: still {v} after {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const TITLES: &str = "[...document.querySelectorAll('#tasks li')].map(li => li.querySelector('.title').textContent + (li.classList.contains('done') ? ' (done)' : ''))";

#[tokio::test]
#[ignore = "needs Chromium: run scripts/browser-test.sh"]
async fn the_page_updates_live() {
    let chromium = chromium();

    // The service on a free loopback port, embedded broker, in-memory SQLite.
    let db = Db::connect("sqlite::memory:").await.unwrap();
    let service = example_todo::Service::with_app(App::new().with_mode(Mode::Embedded), db);
    let shutdown = service.app.shutdown_handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(service.serve_on(listener));
    let http = reqwest::Client::new();
    // One task before the page opens: it must be listed on load.
    let first: Value = http
        .post(format!("{base}/tasks"))
        .json(&json!({"user_id": "ada", "title": "before the page"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(first["id"].is_i64(), "{first}");

    // Chromium, headless, on a fresh profile, the DevTools port chosen by the OS.
    let profile = std::env::temp_dir().join(format!("todo-chromium-{}", uuid::Uuid::new_v4()));
    let mut browser = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("{base}/?user_id=ada"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {chromium}: {e}"));
    let mut lines = BufReader::new(browser.stderr.take().unwrap()).lines();
    let devtools = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("Chromium exited without a DevTools endpoint")
    })
    .await
    .expect("Chromium starts in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} }); // drain
    let devtools_http = devtools
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // The page's own CDP endpoint.
    let start = tokio::time::Instant::now();
    let page_ws = loop {
        let targets: Value = http
            .get(format!("http://{devtools_http}/json/list"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = targets.as_array().unwrap().iter().find(|t| {
            t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(&base))
        });
        if let Some(p) = page {
            break p["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
        }
        assert!(start.elapsed() < DEADLINE, "no page target: {targets}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (ws, _) = tokio_tungstenite::connect_async(page_ws.as_str())
        .await
        .unwrap();
    let mut page = Page { ws, next_id: 0 };

    // Loaded and subscribed.
    page.wait_for(
        "the page goes live",
        "document.querySelector('#status')?.dataset.live ?? null",
        |v| v == "on",
    )
    .await;
    page.wait_for("the first task is listed", TITLES, |v| {
        *v == json!(["before the page"])
    })
    .await;

    // A task created through the API appears without a reload.
    let created: Value = http
        .post(format!("{base}/tasks"))
        .json(&json!({"user_id": "ada", "title": "buy milk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Someone else's task never shows.
    http.post(format!("{base}/tasks"))
        .json(&json!({"user_id": "bob", "title": "not ada's"}))
        .send()
        .await
        .unwrap();
    page.wait_for("the new task appears", TITLES, |v| {
        *v == json!(["before the page", "buy milk"])
    })
    .await;

    // Completed, then deleted: the page follows.
    let id = &created["id"];
    let resp = http
        .post(format!("{base}/tasks/{id}/complete"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    page.wait_for("it shows done", TITLES, |v| {
        *v == json!(["before the page", "buy milk (done)"])
    })
    .await;
    let resp = http
        .delete(format!("{base}/tasks/{}", first["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    page.wait_for("the deleted task goes", TITLES, |v| {
        *v == json!(["buy milk (done)"])
    })
    .await;
    let reloads = page
        .eval("performance.getEntriesByType('navigation').length")
        .await;
    assert_eq!(reloads, 1, "one navigation: no reload happened");

    browser.kill().await.ok();
    shutdown.shutdown();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("service stops")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(profile);
}
