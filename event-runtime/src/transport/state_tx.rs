//! One state transaction, `POST /v1.0/state/{store}/transaction`, and through it Dapr's state
//! outbox. The guide is the public `dapr` module's page (`docs/dapr-state-outbox.md`).

use serde::Serialize;
use serde_json::{json, Value};

use crate::event::Event;
use crate::transport::dapr::{dapr_error, DaprClient};
use crate::wire::cloudevent::EXT_VERSION;
use crate::wire::names::{check_component, check_state_key, encode, InvalidName};

/// The operations of one state transaction, executed all or nothing by
/// [`DaprClient::execute_state_transaction`].
///
/// On a state store component with the outbox enabled, daprd publishes a CloudEvent for every
/// [`upsert`](StateTransaction::upsert) (none for a delete) once the transaction is saved; its
/// data is the saved value, or the event given with [`publish`](StateTransaction::publish).
#[derive(Debug, Clone, Default)]
pub struct StateTransaction {
    operations: Vec<Operation>,
    /// The first value that could not be encoded, reported when the transaction is executed.
    encode_error: Option<(String, String)>,
    /// A `publish` with no upsert of its own right before it, reported likewise.
    misplaced_event: bool,
}

#[derive(Debug, Clone)]
enum Operation {
    Upsert {
        key: String,
        value: Value,
        etag: Option<String>,
        event: Option<Projection>,
    },
    Delete {
        key: String,
    },
}

/// An event daprd's outbox publishes instead of the value saved under the same key.
#[derive(Debug, Clone)]
struct Projection {
    ty: String,
    version: String,
    data: Value,
}

impl StateTransaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Saves `value` (as JSON) under `key`. On an outbox store, daprd also publishes it, as the
    /// `data` of a CloudEvent of type `com.dapr.event.sent`, unless [`publish`](Self::publish)
    /// follows.
    pub fn upsert(self, key: &str, value: impl Serialize) -> Self {
        self.push_upsert(key, value, None)
    }

    /// [`upsert`](Self::upsert) only if the stored value still has `etag` (first-write
    /// concurrency); otherwise the store refuses the whole transaction (`ERR_STATE_TRANSACTION`).
    ///
    /// On an outbox store a refusal comes after daprd wrote its internal outbox message. With
    /// daprd 1.16.5, Redis then publishes the refused event all the same, and PostgreSQL never
    /// publishes it but stalls every later outbox event of the store behind it (the `dapr`
    /// module, "Dapr's state outbox"). Check the ETag before the transaction there, rather than in it.
    pub fn upsert_if_match(self, key: &str, value: impl Serialize, etag: &str) -> Self {
        self.push_upsert(key, value, Some(etag.to_owned()))
    }

    /// Deletes `key`. A delete publishes nothing, outbox or not.
    pub fn delete(mut self, key: &str) -> Self {
        self.operations.push(Operation::Delete {
            key: key.to_owned(),
        });
        self
    }

    /// The event the outbox publishes for the upsert just before, instead of its value: Dapr's
    /// outbox projection. The CloudEvent gets the event's type, its version (`eventversion`) and
    /// its data; daprd chooses the `id` (`outbox-<uuid>`) and ignores any other.
    ///
    /// One event per transaction: daprd 1.16 drops projections from the operation list while it
    /// walks that list, which mishandles a second one. Without an upsert before it, or for a
    /// second event, [`DaprClient::execute_state_transaction`] fails with
    /// [`StateTransactionError::Invalid`] before sending anything.
    pub fn publish<E: Event>(mut self, event: &E) -> Self {
        let projection = match serde_json::to_value(event) {
            Ok(data) => Projection {
                ty: event.event_type().to_owned(),
                version: E::VERSION.to_owned(),
                data,
            },
            Err(e) => {
                self.encode_error
                    .get_or_insert((event.event_type().to_owned(), e.to_string()));
                return self;
            }
        };
        match self.operations.last_mut() {
            Some(Operation::Upsert { event: slot, .. }) if slot.is_none() => {
                *slot = Some(projection);
            }
            // No upsert right before, or it already has its event: reported by `check`.
            _ => self.misplaced_event = true,
        }
        self
    }

    fn push_upsert(mut self, key: &str, value: impl Serialize, etag: Option<String>) -> Self {
        let value = serde_json::to_value(value).unwrap_or_else(|e| {
            self.encode_error
                .get_or_insert((key.to_owned(), e.to_string()));
            Value::Null
        });
        self.operations.push(Operation::Upsert {
            key: key.to_owned(),
            value,
            etag,
            event: None,
        });
        self
    }

    /// Whether the transaction has no operation.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Refuses what daprd would mishandle, and names that break the rules, before any request.
    fn check(&self, store: &str) -> Result<(), StateTransactionError> {
        let invalid = |message: &str| StateTransactionError::Invalid {
            store: store.to_owned(),
            message: message.to_owned(),
        };
        check_component("state store", store).map_err(|e| StateTransactionError::InvalidName {
            store: store.to_owned(),
            source: Box::new(e),
        })?;
        if let Some((key, message)) = &self.encode_error {
            return Err(StateTransactionError::Encode {
                store: store.to_owned(),
                key: key.clone(),
                message: message.clone(),
            });
        }
        if self.misplaced_event {
            return Err(invalid(
                "publish(event) must follow an upsert that has no event yet",
            ));
        }
        let mut events = 0;
        for op in &self.operations {
            let key = match op {
                Operation::Upsert { key, event, .. } => {
                    events += usize::from(event.is_some());
                    key
                }
                Operation::Delete { key } => key,
            };
            check_state_key(key).map_err(|e| StateTransactionError::InvalidName {
                store: store.to_owned(),
                source: Box::new(e),
            })?;
        }
        if events > 1 {
            return Err(invalid(
                "one published event per transaction: daprd 1.16 mishandles a second outbox projection",
            ));
        }
        Ok(())
    }

    /// The request body daprd expects.
    fn body(&self) -> Value {
        let mut operations = Vec::new();
        for op in &self.operations {
            match op {
                Operation::Upsert {
                    key,
                    value,
                    etag,
                    event,
                } => {
                    // `contentType` (a request field, not metadata, which daprd would copy into
                    // the CloudEvent) makes daprd publish JSON data, not Go's `%v` of the value.
                    let mut request =
                        json!({"key": key, "value": value, "contentType": "application/json"});
                    if let Some(etag) = etag {
                        request["etag"] = json!(etag);
                        request["options"] = json!({"concurrency": "first-write"});
                    }
                    if let Some(p) = event {
                        // The upsert's metadata becomes CloudEvent attributes of what is published.
                        request["metadata"] = json!({"type": p.ty, EXT_VERSION: p.version});
                    }
                    operations.push(json!({"operation": "upsert", "request": request}));
                    if let Some(p) = event {
                        operations.push(json!({"operation": "upsert", "request": {
                            "key": key, "value": p.data, "contentType": "application/json",
                            "metadata": {"outbox.projection": "true"},
                        }}));
                    }
                }
                Operation::Delete { key } => {
                    operations.push(json!({"operation": "delete", "request": {"key": key}}));
                }
            }
        }
        json!({ "operations": operations })
    }
}

/// A state transaction that failed; nothing of it was saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateTransactionError {
    /// The store name or a key breaks its rule: refused before any request.
    #[error("state transaction on {store} refused before reaching the sidecar: {source}")]
    InvalidName {
        /// The store.
        store: String,
        /// The rule broken.
        source: Box<InvalidName>,
    },
    /// A value or an event could not be encoded as JSON: refused before any request.
    #[error("state transaction on {store}: cannot encode `{key}` as JSON: {message}")]
    Encode {
        /// The store.
        store: String,
        /// The key (or the event type) whose value failed.
        key: String,
        /// serde's message.
        message: String,
    },
    /// The transaction is one daprd would mishandle: refused before any request.
    #[error("state transaction on {store} refused: {message}")]
    Invalid {
        /// The store.
        store: String,
        /// What is wrong.
        message: String,
    },
    /// The sidecar could not be reached or did not answer in time.
    #[error("state transaction on {store} failed: cannot reach the Dapr sidecar: {message}")]
    Unreachable {
        /// The store.
        store: String,
        /// What went wrong.
        message: String,
    },
    /// daprd refused the transaction: `ERR_STATE_TRANSACTION` (500: the store refused it, e.g.
    /// an ETag mismatch; on an outbox store see [`StateTransaction::upsert_if_match`]),
    /// `ERR_PUBLISH_OUTBOX` (500: the outbox's internal message could not be written; nothing
    /// was saved, so trying again is safe), `ERR_STATE_STORE_NOT_FOUND` (400),
    /// `ERR_STATE_STORE_NOT_SUPPORTED` (500: the store has no transactions), ...
    #[error("state transaction on {store} failed: Dapr answered {status} {error_code}: {message}")]
    Rejected {
        /// The store.
        store: String,
        /// HTTP status.
        status: u16,
        /// daprd's `errorCode` (empty when the body had none).
        error_code: String,
        /// daprd's `message`.
        message: String,
    },
}

impl StateTransactionError {
    /// daprd's `errorCode`, when it answered with one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            StateTransactionError::Rejected { error_code, .. } if !error_code.is_empty() => {
                Some(error_code)
            }
            _ => None,
        }
    }
}

/// The internal topic daprd's outbox publishes to first (`{namespace}{app_id}{topic}outbox`, on
/// the `outboxPubsub` component), then reads back to check the state before publishing to
/// `outboxPublishTopic`. Create it before daprd starts where Kafka does not create topics, or
/// where a consumer would miss a topic created after its group joined.
pub fn outbox_internal_topic(namespace: &str, app_id: &str, publish_topic: &str) -> String {
    format!("{namespace}{app_id}{publish_topic}outbox")
}

impl DaprClient {
    /// `POST /v1.0/state/{store}/transaction`: every operation of `transaction`, all or nothing.
    /// On a store with Dapr's outbox, each upsert is also published, after the transaction, by
    /// daprd (the `dapr` module, "Dapr's state outbox": what arrives, and what happens when the
    /// store refuses).
    ///
    /// ```no_run
    /// use event_runtime::dapr::{DaprClient, StateTransaction};
    /// use event_runtime::Event;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Event)]
    /// #[event(type = "order.placed", version = "1.0", unkeyed)]
    /// struct OrderPlaced {
    ///     order_id: String,
    /// }
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let dapr = DaprClient::from_config(&event_runtime::config::Config::from_env()?);
    /// let order = serde_json::json!({"id": "o-1", "status": "placed"});
    /// let tx = StateTransaction::new()
    ///     .upsert("order-o-1", &order)
    ///     .publish(&OrderPlaced { order_id: "o-1".into() })
    ///     .delete("cart-o-1");
    /// dapr.execute_state_transaction("orders", &tx).await?;
    /// # Ok(()) }
    /// ```
    pub async fn execute_state_transaction(
        &self,
        store: &str,
        transaction: &StateTransaction,
    ) -> Result<(), StateTransactionError> {
        transaction.check(store)?;
        let path = format!("/v1.0/state/{}/transaction", encode(store));
        let resp = self
            .request(reqwest::Method::POST, &path)
            .json(&transaction.body())
            .send()
            .await
            .map_err(|e| StateTransactionError::Unreachable {
                store: store.to_owned(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let (error_code, message) = dapr_error(&resp.text().await.unwrap_or_default());
        Err(StateTransactionError::Rejected {
            store: store.to_owned(),
            status: status.as_u16(),
            error_code,
            message,
        })
    }

    /// Saves `value` under `key` and, on a store with Dapr's outbox, publishes `event` once the
    /// value is saved: [`DaprClient::execute_state_transaction`] of
    /// `StateTransaction::new().upsert(key, value).publish(event)`. daprd answers once the value
    /// is saved; the event follows about a second later (daprd checks the state first).
    pub async fn save_state_and_publish<E: Event>(
        &self,
        store: &str,
        key: &str,
        value: impl Serialize,
        event: &E,
    ) -> Result<(), StateTransactionError> {
        let tx = StateTransaction::new().upsert(key, value).publish(event);
        self.execute_state_transaction(store, &tx).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize, crate::Event)]
    #[event(type = "order.placed", version = "2.1", unkeyed)]
    struct OrderPlaced {
        order_id: String,
    }

    /// What the fake sidecar received: method, path and query, token, body.
    type Seen = Arc<Mutex<Vec<(Method, String, Option<String>, Value)>>>;

    /// A fake daprd on 127.0.0.1:0 answering every request with `status` and `body`.
    async fn fake_sidecar(status: u16, body: &'static str) -> (DaprClient, Seen) {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, bytes: axum::body::Bytes| {
                let record = record.clone();
                async move {
                    let token = headers
                        .get("dapr-api-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    record
                        .lock()
                        .unwrap()
                        .push((method, uri.to_string(), token, json));
                    (StatusCode::from_u16(status).unwrap(), body).into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (DaprClient::new(&base, Some("tok".into())), seen)
    }

    #[tokio::test]
    async fn save_state_and_publish_sends_the_upsert_and_its_projection() {
        let (dapr, seen) = fake_sidecar(204, "").await;
        let event = OrderPlaced {
            order_id: "o-1".into(),
        };
        dapr.save_state_and_publish("orders", "order-o-1", json!({"status": "placed"}), &event)
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        let (method, path, token, body) = &seen[0];
        assert_eq!(
            (method, path.as_str(), token.as_deref()),
            (&Method::POST, "/v1.0/state/orders/transaction", Some("tok"))
        );
        assert_eq!(
            body,
            &json!({"operations": [
                {"operation": "upsert", "request": {
                    "key": "order-o-1", "value": {"status": "placed"},
                    "contentType": "application/json",
                    "metadata": {"type": "order.placed", "eventversion": "2.1"},
                }},
                {"operation": "upsert", "request": {
                    "key": "order-o-1", "value": {"order_id": "o-1"},
                    "contentType": "application/json",
                    "metadata": {"outbox.projection": "true"},
                }},
            ]})
        );
    }

    #[tokio::test]
    async fn a_transaction_keeps_its_order_and_deletes_publish_nothing() {
        let (dapr, seen) = fake_sidecar(204, "").await;
        let tx = StateTransaction::new()
            .upsert_if_match("a", 1, "7")
            .delete("b");
        dapr.execute_state_transaction("store", &tx).await.unwrap();
        assert_eq!(
            seen.lock().unwrap()[0].3,
            json!({"operations": [
                {"operation": "upsert", "request": {
                    "key": "a", "value": 1, "contentType": "application/json",
                    "etag": "7", "options": {"concurrency": "first-write"},
                }},
                {"operation": "delete", "request": {"key": "b"}},
            ]})
        );
    }

    #[tokio::test]
    async fn a_refusal_names_daprds_error_code() {
        let (dapr, _) = fake_sidecar(
            500,
            r#"{"errorCode":"ERR_STATE_TRANSACTION","message":"possible etag mismatch"}"#,
        )
        .await;
        let tx = StateTransaction::new().upsert_if_match("a", 1, "9");
        let err = dapr
            .execute_state_transaction("store", &tx)
            .await
            .unwrap_err();
        assert_eq!(err.error_code(), Some("ERR_STATE_TRANSACTION"));
        assert_eq!(
            err.to_string(),
            "state transaction on store failed: Dapr answered 500 ERR_STATE_TRANSACTION: possible etag mismatch"
        );
    }

    #[tokio::test]
    async fn what_daprd_would_mishandle_is_refused_before_any_request() {
        let (dapr, seen) = fake_sidecar(204, "").await;
        let ev = |id: &str| OrderPlaced {
            order_id: id.into(),
        };
        let two_events = StateTransaction::new()
            .upsert("a", 1)
            .publish(&ev("1"))
            .upsert("b", 2)
            .publish(&ev("2"));
        let no_upsert = StateTransaction::new().delete("a").publish(&ev("1"));
        let bad_key = StateTransaction::new().upsert("a||b", 1);
        for (tx, store) in [
            (two_events, "s"),
            (no_upsert, "s"),
            (bad_key, "s"),
            (StateTransaction::new(), "bad/store"),
        ] {
            let err = dapr
                .execute_state_transaction(store, &tx)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    StateTransactionError::Invalid { .. }
                        | StateTransactionError::InvalidName { .. }
                ),
                "{err}"
            );
        }
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn the_internal_topic_is_namespace_app_topic_outbox() {
        assert_eq!(
            outbox_internal_topic("", "orders-app", "orders"),
            "orders-appordersoutbox"
        );
    }
}
