// Every key together, on a handler declared inside a function body.
use event_runtime::{event_handler, Event};
use serde_json::json;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "order.placed", version = "2.13")]
pub struct OrderPlaced {
    pub event_id: String,
    pub order_id: u64,
    #[event(partition_key)]
    pub customer: String,
    #[serde(rename = "placedAt")]
    pub placed_at: String,
}

fn main() {
    /// Documented, and with attributes of its own: both are kept.
    #[allow(unused_variables)]
    #[event_handler(
        topic = "orders",
        pubsub = "kafka-pubsub",
        route = "/api/events/order-placed",
        retry = [1, 2, 4, 8],
        retry_mode = "inline",
        dlq = "orders.dlq",
        idempotent,
        idempotency_key = "{order_id}-{placedAt}",
        bulk(max_messages = 50, max_await_ms = 200),
        raw_payload,
        metadata(priority = "high", rawPayload = "true"),
        timeout = 30,
        concurrency = 4,
    )]
    async fn on_order_placed(event: OrderPlaced) -> anyhow::Result<()> {
        Ok(())
    }

    #[event_handler(topic = "orders", route = "/bulk-defaults", bulk, idempotent)]
    async fn bulk_defaults(_event: OrderPlaced) {}

    #[event_handler(topic = "orders", route = "/held", retry = [30], on_dead_letter = "hold")]
    async fn held(_event: OrderPlaced) {}

    #[event_handler(topic = "orders", route = "/unordered", retry = [30], unordered)]
    async fn unordered(_event: OrderPlaced) {}

    let order = OrderPlaced { event_id: "e-1".into(), order_id: 1, customer: "c-1".into(), placed_at: "now".into() };
    assert_eq!(order.partition_key().as_deref(), Some("c-1"));
    assert_eq!(order.event_id().as_deref(), Some("e-1"));
    assert_eq!(OrderPlaced::FIELDS, ["event_id", "order_id", "customer", "placedAt"]);

    let defs = event_runtime::__private::registered();
    let def = defs.iter().find(|d| d.name() == "on_order_placed").unwrap();
    assert_eq!(def.registration()["topic"], serde_json::json!("orders"));
    assert_eq!(def.registration()["pubsub"], serde_json::json!("kafka-pubsub"));
    assert_eq!(def.registration()["route"], serde_json::json!("/api/events/order-placed"));
    assert_eq!(def.registration()["retry"], serde_json::json!([1, 2, 4, 8]));
    assert_eq!(def.registration()["retry_mode"], serde_json::json!("Inline"));
    assert_eq!(def.registration()["dlq"], serde_json::json!("orders.dlq"));
    assert_eq!(def.registration()["idempotent"], true);
    assert_eq!(def.registration()["idempotency_key"], serde_json::json!("{order_id}-{placedAt}"));
    assert_eq!(def.registration()["bulk"], json!({"max_messages": 50, "max_await_ms": 200}));
    assert_eq!(def.registration()["raw_payload"], true);
    assert_eq!(def.registration()["metadata"], serde_json::json!([("priority", "high"), ("rawPayload", "true")]));
    assert_eq!(def.registration()["timeout_secs"], serde_json::json!(30));
    assert_eq!(def.registration()["concurrency"], serde_json::json!(4));
    assert_eq!(def.registration()["event_version"], serde_json::json!("2.13"));
    assert_eq!(def.registration()["event_type_name"], serde_json::json!("OrderPlaced"));
    assert!(!def.module().is_empty());

    let def = defs.iter().find(|d| d.name() == "bulk_defaults").unwrap();
    assert_eq!(def.registration()["bulk"], json!({"max_messages": 100, "max_await_ms": 1000}));
    assert_eq!(def.registration()["idempotent"], true);
    assert!(def.registration()["idempotency_key"].is_null());
    assert_eq!(def.registration()["retry_mode"], serde_json::json!("Delayed"));
    assert_eq!(def.registration()["unordered"], false);
    assert_eq!(def.registration()["on_dead_letter"], json!("Release"));

    let def = defs.iter().find(|d| d.name() == "held").unwrap();
    assert_eq!(def.registration()["on_dead_letter"], json!("Hold"));
    let def = defs.iter().find(|d| d.name() == "unordered").unwrap();
    assert_eq!(def.registration()["unordered"], true);
}
