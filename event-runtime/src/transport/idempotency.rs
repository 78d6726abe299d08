//! Idempotency: an `idempotent` handler runs at most once per key.
//! The guide is the public `idempotency` module's page (`docs/idempotency.md`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::transport::dapr::{DaprClient, StateError};

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// We hold the key now: run the handler, then [`IdempotencyStore::complete`] or
    /// [`IdempotencyStore::release`].
    Acquired(ClaimToken),
    /// A run with this key already succeeded: skip.
    Done,
    /// Another delivery holds the key right now (its lease has not run out): try later.
    Busy,
}

/// Proof of a held claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    /// The key.
    pub key: String,
    /// Our owner id.
    pub owner: String,
    /// The store's version of our claim, for compare-and-set.
    pub etag: Option<String>,
}

/// Where idempotency keys live. Claims are compare-and-set with a lease, so a holder that
/// crashed is taken over once its lease runs out.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for `lease`.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StateError>>;
    /// Marks a claimed key done, kept for `retention`.
    fn complete<'a>(
        &'a self,
        token: &'a ClaimToken,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Gives a claimed key up so a retry can run.
    fn release<'a>(&'a self, token: &'a ClaimToken) -> BoxFuture<'a, Result<(), StateError>>;
}

/// Past this many keys, the in-memory store drops expired ones (each time it doubles).
const PRUNE_AT: usize = 4096;

#[derive(Debug, Clone)]
struct MemEntry {
    done: bool,
    owner: String,
    expires: tokio::time::Instant,
}

/// The in-memory store of embedded mode and tests (leases follow tokio's clock).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    entries: Arc<Mutex<HashMap<String, MemEntry>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `key` is marked done.
    pub fn is_done(&self, key: &str) -> bool {
        let now = tokio::time::Instant::now();
        self.lock()
            .get(key)
            .is_some_and(|e| e.done && e.expires > now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MemEntry>> {
        // A poisoned map is still a consistent map: every update is a single insert or remove.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StateError>> {
        Box::pin(async move {
            let now = tokio::time::Instant::now();
            let mut map = self.lock();
            // Expired keys are dropped now and then, so the map holds what the retention keeps.
            if map.len() >= PRUNE_AT && map.len().is_power_of_two() {
                map.retain(|_, e| e.expires > now);
            }
            match map.get(key) {
                Some(e) if e.expires > now && e.done => Ok(Claim::Done),
                Some(e) if e.expires > now => Ok(Claim::Busy),
                _ => {
                    let owner = uuid::Uuid::new_v4().to_string();
                    map.insert(
                        key.to_owned(),
                        MemEntry {
                            done: false,
                            owner: owner.clone(),
                            expires: now + lease,
                        },
                    );
                    Ok(Claim::Acquired(ClaimToken {
                        key: key.to_owned(),
                        owner,
                        etag: None,
                    }))
                }
            }
        })
    }

    fn complete<'a>(
        &'a self,
        token: &'a ClaimToken,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let expires = tokio::time::Instant::now() + retention;
            self.lock().insert(
                token.key.clone(),
                MemEntry {
                    done: true,
                    owner: token.owner.clone(),
                    expires,
                },
            );
            Ok(())
        })
    }

    fn release<'a>(&'a self, token: &'a ClaimToken) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut map = self.lock();
            if map
                .get(&token.key)
                .is_some_and(|e| e.owner == token.owner && !e.done)
            {
                map.remove(&token.key);
            }
            Ok(())
        })
    }
}

/// Idempotency keys in a Dapr state store (`state.in-memory`, `state.redis`, `state.postgresql`).
///
/// The stores disagree on insert-if-absent (contract §6), so a claim is a real compare-and-set:
/// a first write with `first-write` concurrency when the key is absent, otherwise a write with
/// the ETag just read; a 409 or the store's own conflict error means someone else won.
#[derive(Debug, Clone)]
pub struct DaprStateStore {
    client: DaprClient,
    store: String,
}

impl DaprStateStore {
    /// Keys in `store`, through `client`.
    pub fn new(client: DaprClient, store: &str) -> Self {
        DaprStateStore {
            client,
            store: store.to_owned(),
        }
    }

    async fn try_claim(&self, key: &str, lease: Duration) -> Result<Claim, StateError> {
        let now = crate::clock::now_ms();
        let current = self.client.get_state(&self.store, key).await?;
        let etag = match &current {
            Some((v, _)) if v.get("status").and_then(Value::as_str) == Some("done") => {
                return Ok(Claim::Done)
            }
            Some((v, _))
                if v.get("until")
                    .and_then(Value::as_u64)
                    .is_some_and(|u| u > now) =>
            {
                return Ok(Claim::Busy)
            }
            Some((_, etag)) => etag.clone(),
            None => None,
        };
        let owner = uuid::Uuid::new_v4().to_string();
        let value =
            json!({"status": "claimed", "owner": owner, "until": now + lease.as_millis() as u64});
        // The TTL outlives the lease so an expired claim is still seen (and taken over by CAS).
        let saved = self
            .client
            .save_state(&self.store, key, &value, etag.as_deref(), Some(lease * 2))
            .await;
        match saved {
            Ok(true) => {}
            Ok(false) => return Ok(Claim::Busy),
            // An insert that lost the race fails with a store-specific error (redis and
            // postgresql answer 500, contract §6): if the key exists now, someone else won.
            Err(e) if etag.is_none() && e.status == Some(500) => {
                return match self.client.get_state(&self.store, key).await? {
                    Some(_) => Ok(Claim::Busy),
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
        // Read back: the ETag of our own write, and proof that ours is the write that stands.
        match self.client.get_state(&self.store, key).await? {
            Some((v, etag)) if v.get("owner").and_then(Value::as_str) == Some(owner.as_str()) => {
                Ok(Claim::Acquired(ClaimToken {
                    key: key.to_owned(),
                    owner,
                    etag,
                }))
            }
            _ => Ok(Claim::Busy),
        }
    }
}

impl IdempotencyStore for DaprStateStore {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StateError>> {
        Box::pin(self.try_claim(key, lease))
    }

    fn complete<'a>(
        &'a self,
        token: &'a ClaimToken,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let value =
                json!({"status": "done", "owner": token.owner, "at": crate::clock::now_rfc3339()});
            if !self
                .client
                .save_state(
                    &self.store,
                    &token.key,
                    &value,
                    token.etag.as_deref(),
                    Some(retention),
                )
                .await?
            {
                tracing::warn!(key = %token.key, "idempotency claim was taken over before completion (lease too short for this handler?)");
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, token: &'a ClaimToken) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(
            self.client
                .delete_state(&self.store, &token.key, token.etag.as_deref()),
        )
    }
}

/// Renders an `idempotency_key` template over the event's fields.
///
/// Each value is escaped, so that distinct values never render alike: `%`, and every character
/// the template itself uses outside its placeholders, are percent-encoded, and a missing or null
/// field is `%00`. So `{a}-{b}` of `a = "x-y", b = "z"` and of `a = "x", b = "y-z"` differ.
pub(crate) fn render_key(template: &str, data: &Value) -> String {
    let literal: Vec<char> = literal_chars(template);
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        match data.get(&after[..close]) {
            Some(Value::String(s)) => escape_into(&mut out, s, &literal),
            Some(Value::Null) | None => out.push_str("%00"),
            Some(v) => escape_into(&mut out, &v.to_string(), &literal),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The characters a template uses outside its placeholders.
fn literal_chars(template: &str) -> Vec<char> {
    let mut chars = Vec::new();
    let mut depth = 0;
    for c in template.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 && !chars.contains(&c) => chars.push(c),
            _ => {}
        }
    }
    chars
}

fn escape_into(out: &mut String, value: &str, literal: &[char]) {
    for c in value.chars() {
        if c == '%' || literal.contains(&c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_keys_fill_the_placeholders_and_never_render_alike() {
        use serde_json::json;
        let key = |d| render_key("{event_type}-{task_id}", &d);
        assert_eq!(
            key(json!({"event_type": "task.completed", "task_id": 7})),
            "task.completed-7"
        );
        assert_ne!(
            key(json!({"event_type": "a-b", "task_id": "c"})),
            key(json!({"event_type": "a", "task_id": "b-c"}))
        );
    }

    #[test]
    fn renders_templates() {
        let data = json!({"event_type": "task.completed", "task_id": 123, "timestamp": "2025-01-01T00:00:00Z"});
        assert_eq!(
            render_key("{event_type}-{task_id}-{timestamp}", &data),
            "task.completed-123-2025%2D01%2D01T00:00:00Z"
        );
        assert_eq!(render_key("x-{missing}-y", &data), "x-%00-y");
        let ambiguous = [
            json!({"a": "x-y", "b": "z"}),
            json!({"a": "x", "b": "y-z"}),
            json!({"a": "x-y-z", "b": null}),
            json!({"a": "x-y-z", "b": ""}),
            json!({"a": "%00", "b": ""}),
        ];
        let keys: std::collections::HashSet<String> =
            ambiguous.iter().map(|d| render_key("{a}-{b}", d)).collect();
        assert_eq!(keys.len(), ambiguous.len(), "{keys:?}");
        // A missing field and a null one are the same: neither has a value.
        assert_eq!(
            render_key("{a}-{b}", &json!({"a": "x"})),
            render_key("{a}-{b}", &json!({"a": "x", "b": null}))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_keys_are_pruned() {
        let store = MemoryStore::new();
        for i in 0..PRUNE_AT - 1 {
            store
                .claim(&format!("k{i}"), Duration::from_secs(1))
                .await
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        store
            .claim("one-more", Duration::from_secs(1))
            .await
            .unwrap();
        store
            .claim("and-another", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            store.lock().len() <= 2,
            "expired keys stay: {}",
            store.lock().len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn memory_claims_are_exclusive_and_leases_expire() {
        let store = MemoryStore::new();
        let lease = Duration::from_secs(10);
        let Claim::Acquired(t) = store.claim("k", lease).await.unwrap() else {
            panic!("first claim")
        };
        assert_eq!(store.claim("k", lease).await.unwrap(), Claim::Busy);
        tokio::time::advance(Duration::from_secs(11)).await;
        let Claim::Acquired(t2) = store.claim("k", lease).await.unwrap() else {
            panic!("take-over")
        };
        // The crashed holder's release must not free the new holder's claim.
        store.release(&t).await.unwrap();
        assert_eq!(store.claim("k", lease).await.unwrap(), Claim::Busy);
        store.complete(&t2, Duration::from_secs(100)).await.unwrap();
        assert_eq!(store.claim("k", lease).await.unwrap(), Claim::Done);
    }
}
