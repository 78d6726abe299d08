// Batch handlers: `Vec<T>` or `Batch<T>` first, on a bulk subscription, with extractors and
// any result for the whole batch or one per event.
use event_runtime::{event_handler, Batch, Event, Outcome, State, Topic};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "metric.sample", version = "1.0")]
pub struct Sample {
    pub user_id: String,
    pub value: i64,
}

#[event_handler(topic = "samples", bulk)]
async fn whole(_samples: Vec<Sample>) -> anyhow::Result<()> {
    Ok(())
}

#[event_handler(topic = "samples-each", bulk(max_messages = 500, max_await_ms = 20))]
async fn each(samples: Batch<Sample>, Topic(_topic): Topic, State(_n): State<u32>) -> Vec<Outcome> {
    samples.iter().map(|_| Outcome::Success).collect()
}

#[event_handler(topic = "samples-results", bulk)]
async fn results(samples: event_runtime::Batch<Sample>) -> Vec<Result<(), std::io::Error>> {
    samples.iter().map(|_| Ok(())).collect()
}

fn main() {
    let defs = event_runtime::__private::registered();
    for name in ["whole", "each", "results"] {
        let def = defs.iter().find(|d| d.name() == name).unwrap();
        assert_eq!(def.registration()["batch"], true, "{name}");
        assert_eq!(def.registration()["event_type_name"], serde_json::json!("Sample"));
    }
}
