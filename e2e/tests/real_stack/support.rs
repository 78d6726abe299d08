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
