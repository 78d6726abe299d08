use event_runtime::event_handler;

#[event_handler(topic = "task-events")]
struct OnTaskCompleted;

fn main() {
    let _ = OnTaskCompleted;
}
