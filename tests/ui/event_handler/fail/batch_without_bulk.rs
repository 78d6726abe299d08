use event_runtime::{event_handler, Batch, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "metric.sample", version = "1.0")]
pub struct Sample {
    pub user_id: String,
    pub value: i64,
}

#[event_handler(topic = "samples")]
async fn not_bulk(_samples: Vec<Sample>) {}

#[event_handler(topic = "samples-2", bulk, idempotent)]
async fn idempotent_batch(_samples: Batch<Sample>) {}

fn main() {}
