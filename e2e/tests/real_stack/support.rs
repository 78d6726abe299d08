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
