// Every key together, on a handler declared inside a function body.
use event_runtime::{event_handler, Event, HandlerDef, RetryMode};

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

    let order = OrderPlaced { event_id: "e-1".into(), order_id: 1, customer: "c-1".into(), placed_at: "now".into() };
    assert_eq!(order.partition_key().as_deref(), Some("c-1"));
    assert_eq!(order.event_id().as_deref(), Some("e-1"));
    assert_eq!(OrderPlaced::FIELDS, ["event_id", "order_id", "customer", "placedAt"]);

    let defs = event_runtime::registered();
    let def: &HandlerDef = defs.iter().find(|d| d.name == "on_order_placed").unwrap();
    assert_eq!(def.topic, "orders");
    assert_eq!(def.pubsub, Some("kafka-pubsub"));
    assert_eq!(def.route, Some("/api/events/order-placed"));
    assert_eq!(def.retry, [1, 2, 4, 8]);
    assert_eq!(def.retry_mode, RetryMode::Inline);
    assert_eq!(def.dlq, Some("orders.dlq"));
    assert!(def.idempotent);
    assert_eq!(def.idempotency_key, Some("{order_id}-{placedAt}"));
    let bulk = def.bulk.unwrap();
    assert_eq!((bulk.max_messages, bulk.max_await_ms), (50, 200));
    assert!(def.raw_payload);
    assert_eq!(def.metadata, [("priority", "high"), ("rawPayload", "true")]);
    assert_eq!(def.timeout_secs, Some(30));
    assert_eq!(def.concurrency, Some(4));
    assert_eq!(def.event_version, "2.13");
    assert_eq!(def.event_type_name, "OrderPlaced");
    assert!(def.module.ends_with("all_keys") || !def.module.is_empty());

    let def = defs.iter().find(|d| d.name == "bulk_defaults").unwrap();
    let bulk = def.bulk.unwrap();
    assert_eq!((bulk.max_messages, bulk.max_await_ms), (100, 1000));
    assert!(def.idempotent && def.idempotency_key.is_none());
    assert_eq!(def.retry_mode, RetryMode::Delayed);
}
