//! A key-value store with compare-and-set, for the framework's own bookkeeping (the per-key
//! order gates): the Dapr state store on a sidecar, a map in embedded mode and tests.
//!
//! Every write names the version it replaces (`None`: the key must not exist yet), so two
//! replicas updating one key never lose each other's write: the loser is told, reads again,
//! and decides again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::transport::dapr::{DaprClient, StateError};

/// The version of a stored value, for compare-and-set.
pub(crate) type Version = String;

/// Where the bookkeeping lives.
#[derive(Clone)]
pub(crate) enum Kv {
    /// A Dapr state store, by name.
    Dapr(DaprClient, Arc<str>),
    /// In memory: this process only.
    Memory(Arc<Mutex<HashMap<String, (Value, u64)>>>),
}

impl Kv {
    /// An empty in-memory store.
    pub(crate) fn memory() -> Self {
        Kv::Memory(Arc::default())
    }

    /// The value under `key` and its version, `None` when absent.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<(Value, Version)>, StateError> {
        match self {
            Kv::Dapr(client, store) => Ok(client
                .get_state(store, key)
                .await?
                .map(|(v, etag)| (v, etag.unwrap_or_default()))),
            Kv::Memory(map) => Ok(lock(map).get(key).map(|(v, n)| (v.clone(), n.to_string()))),
        }
    }

    /// Writes `value` under `key` if the key is still at `version` (`None`: absent).
    /// `Ok(false)`: someone else wrote first.
    pub(crate) async fn put(
        &self,
        key: &str,
        value: &Value,
        version: Option<&str>,
    ) -> Result<bool, StateError> {
        match self {
            Kv::Dapr(client, store) => {
                match client.save_state(store, key, value, version, None).await {
                    Ok(won) => Ok(won),
                    // Some stores (Redis) answer a first write to a key that exists with a plain
                    // error, not a conflict: a key that is there now means someone wrote first.
                    Err(e) if version.is_none() && !e.is_refusal() => {
                        match client.get_state(store, key).await {
                            Ok(Some(_)) => Ok(false),
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Kv::Memory(map) => {
                let mut map = lock(map);
                let current = map.get(key).map(|(_, n)| n.to_string());
                if current.as_deref() != version {
                    return Ok(false);
                }
                let next = map.get(key).map_or(1, |(_, n)| n + 1);
                map.insert(key.to_owned(), (value.clone(), next));
                Ok(true)
            }
        }
    }

    /// Writes `value` under `key`, whatever is there.
    pub(crate) async fn set(&self, key: &str, value: &Value) -> Result<(), StateError> {
        match self {
            Kv::Dapr(client, store) => {
                client.upsert_state(store, key, value).await?;
                Ok(())
            }
            Kv::Memory(map) => {
                let mut map = lock(map);
                let next = map.get(key).map_or(1, |(_, n)| n + 1);
                map.insert(key.to_owned(), (value.clone(), next));
                Ok(())
            }
        }
    }

    /// Deletes `key` if it is still at `version` (`None`: whatever is there). `Ok(false)`:
    /// someone else wrote first.
    pub(crate) async fn delete(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<bool, StateError> {
        match self {
            Kv::Dapr(client, store) => client.delete_state_if(store, key, version).await,
            Kv::Memory(map) => {
                let mut map = lock(map);
                let current = map.get(key).map(|(_, n)| n.to_string());
                if version.is_some() && current.as_deref() != version {
                    return Ok(false);
                }
                map.remove(key);
                Ok(true)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is one insert or remove: a poisoned map is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_write_names_the_version_it_replaces() {
        let kv = Kv::memory();
        assert!(kv.put("k", &json!(1), None).await.unwrap());
        assert!(
            !kv.put("k", &json!(2), None).await.unwrap(),
            "exists already"
        );
        let (v, version) = kv.get("k").await.unwrap().unwrap();
        assert_eq!(v, json!(1));
        assert!(kv.put("k", &json!(3), Some(&version)).await.unwrap());
        assert!(
            !kv.put("k", &json!(4), Some(&version)).await.unwrap(),
            "stale"
        );
        assert!(!kv.delete("k", Some(&version)).await.unwrap(), "stale");
        let (_, version) = kv.get("k").await.unwrap().unwrap();
        assert!(kv.delete("k", Some(&version)).await.unwrap());
        assert!(kv.get("k").await.unwrap().is_none());
    }
}
