//! Helpers every scenario uses: ids, ledger lines, the state store.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{lines, Scenario};
use serde_json::Value;

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(crate) fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// `ok` lines per `event_id`.
pub(crate) fn ok_counts(l: &[Value], handler: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in lines(l, handler, "ok") {
        *m.entry(v["event_id"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    m
}

/// The `seq` of each user's `ok` lines, in ledger order (appends are ordered across processes).
pub(crate) fn seqs_by_user<'a>(oks: &[&'a Value]) -> BTreeMap<&'a str, Vec<u64>> {
    let mut by_user: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for v in oks {
        by_user
            .entry(v["user"].as_str().unwrap_or(""))
            .or_default()
            .push(v["seq"].as_u64().unwrap_or(u64::MAX));
    }
    by_user
}

/// A number from the environment, else `default`.
pub(crate) fn env_count<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A replica whose idempotency claims lease for `lease` s (and whose handlers time out before
/// that), so that a claim a SIGKILLed replica held is taken over quickly.
pub(crate) fn short_lease(lease: u64) -> e2e::PairOpts {
    e2e::PairOpts {
        app_env: vec![
            ("EVENTS_CLAIM_LEASE_SECS".into(), lease.to_string()),
            (
                "EVENTS_HANDLER_TIMEOUT_SECS".into(),
                (lease - 1).to_string(),
            ),
        ],
        ..Default::default()
    }
}

pub(crate) fn has_ok(l: &[Value], handler: &str, ids: &[String]) -> bool {
    let c = ok_counts(l, handler);
    ids.iter().all(|id| c.contains_key(id))
}

pub(crate) fn runs_of<'a>(l: &'a [Value], handler: &str, id: &str) -> Vec<&'a Value> {
    l.iter()
        .filter(|v| v["handler"] == handler && v["event_id"] == id && v["outcome"] != "start")
        .collect()
}

/// The value under `key` in the pair's state store (`statestore`), or null.
pub(crate) async fn state_get(s: &Scenario, p: &e2e::Pair, key: &str) -> Value {
    let enc: String = key
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let resp = s
        .http
        .get(format!("{}/v1.0/state/statestore/{enc}", p.dapr_url()))
        .send()
        .await
        .expect("GET state");
    resp.json().await.unwrap_or(Value::Null)
}

pub(crate) fn t(v: &Value) -> i64 {
    v["time_ms"].as_i64().expect("time_ms")
}

/// A publish through daprd at `dapr_url` to `topic`, with `query` (its `metadata.*` entries), of
/// `body` as JSON: its status and body. An error of the broker (5xx: a fresh producer's metadata
/// is out of date, say) is tried again for up to 30 s; these pauses are between tries of an
/// action, not a wait for an event.
pub(crate) async fn publish_raw(
    s: &Scenario,
    dapr_url: &str,
    topic: &str,
    query: &[(&str, &str)],
    body: &Value,
) -> (u16, String) {
    let deadline = std::time::Instant::now() + secs(30);
    loop {
        let r = s
            .http
            .post(format!("{dapr_url}/v1.0/publish/kafka-pubsub/{topic}"))
            .query(query)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("publish");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        if status < 500 || std::time::Instant::now() > deadline {
            return (status, text);
        }
        s.note(format!("publish to {topic}: {status}, again: {text}"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The events of a scenario that checks the core guarantees on another transport: `users` ×
/// `per_user` work items, ids `<prefix>-<run>-u<user>-<seq>`. Three fail and are retried
/// ((0, 2) and (1, per_user - 3) once, [`CoreEvents::retried_twice`] twice), and
/// [`CoreEvents::permanent`] fails for good.
pub(crate) struct CoreEvents {
    pub(crate) events: Vec<Value>,
    pub(crate) permanent: String,
    pub(crate) retried_twice: String,
}

impl CoreEvents {
    pub(crate) fn new(prefix: &str, run: &str, users: u64, per_user: u64) -> CoreEvents {
        assert!(
            users >= 3 && per_user >= 4,
            "the failing events need three users, four events"
        );
        let id = |u: u64, seq: u64| format!("{prefix}-{run}-u{u}-{seq}");
        let mut events = Vec::new();
        for seq in 0..per_user {
            for u in 0..users {
                let mut e = e2e::work(&id(u, seq), &format!("u{u}"), seq);
                match (u, seq) {
                    (0, 2) => e["fail_until_attempt"] = 2.into(),
                    (1, s) if s == per_user - 3 => e["fail_until_attempt"] = 2.into(),
                    (2, 3) => e["fail_until_attempt"] = 3.into(),
                    (1, s) if s == per_user - 2 => e["permanent"] = true.into(),
                    _ => {}
                }
                events.push(e);
            }
        }
        CoreEvents {
            events,
            permanent: id(1, per_user - 2),
            retried_twice: id(2, 3),
        }
    }

    /// Every event's id but the permanent failure's: the ones to be applied.
    pub(crate) fn applied(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
            .filter(|id| *id != self.permanent)
            .collect()
    }

    /// `handler` applied each of `applied` once and never the permanent failure, and ran the
    /// event that fails twice at attempts 1, 2 and 3.
    pub(crate) fn assert_applied_once(&self, l: &[Value], handler: &str, applied: &[String]) {
        let counts = ok_counts(l, handler);
        assert!(
            applied.iter().all(|id| counts.get(id) == Some(&1)),
            "each applied once: {counts:?}"
        );
        assert!(!counts.contains_key(&self.permanent), "{counts:?}");
        let attempts: Vec<u64> = runs_of(l, handler, &self.retried_twice)
            .iter()
            .filter_map(|v| v["attempt"].as_u64())
            .collect();
        assert_eq!(attempts, [1, 2, 3], "two delayed retries");
    }
}
