use event_runtime::{event_handler, Batch, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "metric.sample", version = "1.0")]
pub struct Sample {
    pub user_id: String,
    pub value: i64,
}

#[event_handler(topic = "samples", bulk(max_messages = 1001, max_await_ms = 50))]
async fn too_many(_samples: Batch<Sample>) {}

fn main() {}
