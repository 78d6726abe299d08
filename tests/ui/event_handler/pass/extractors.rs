// Every extractor after the event, `Envelope<T>` as the event, and patterns in arguments.
use event_runtime::{
    event_handler, Attempt, Envelope, Event, EventId, EventTime, EventType, PubsubName, Publisher, Source,
    State, Topic, TraceContext,
};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.created", version = "1.0")]
pub struct TaskCreated {
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Clone, Default)]
struct Counter(std::sync::Arc<std::sync::atomic::AtomicU64>);

#[allow(clippy::too_many_arguments)]
#[event_handler(topic = "task-events")]
async fn every_extractor(
    event: TaskCreated,
    EventId(id): EventId,
    source: Source,
    ty: EventType,
    time: EventTime,
    topic: Topic,
    pubsub: PubsubName,
    trace: TraceContext,
    Attempt(attempt): Attempt,
    publisher: Publisher,
    State(counter): State<Counter>,
) {
    let _ = (event, id, source, ty, time, topic, pubsub, trace, attempt, publisher);
    counter.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[event_handler(topic = "task-events", route = "/events/enveloped")]
async fn enveloped(event: Envelope<TaskCreated>, _: Attempt) {
    let _ = (event.id, event.data.task_id);
}

fn main() {
    let names: Vec<_> = event_runtime::__private::registered().iter().map(|d| d.name()).collect();
    assert_eq!(names, ["enveloped", "every_extractor"]);
    for def in event_runtime::__private::registered() {
        assert_eq!(def.registration()["event_types"], serde_json::json!(["task.created"]));
    }
}
