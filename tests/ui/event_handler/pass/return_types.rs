// Every supported return type.
use event_runtime::{event_handler, Event, Outcome};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.created", version = "1.0")]
pub struct TaskCreated {
    pub task_id: i64,
    pub user_id: String,
}

#[event_handler(topic = "t", route = "/unit")]
async fn unit(_event: TaskCreated) {}

#[event_handler(topic = "t", route = "/explicit-unit")]
async fn explicit_unit(_event: TaskCreated) -> () {}

#[event_handler(topic = "t", route = "/anyhow")]
async fn with_anyhow(_event: TaskCreated) -> anyhow::Result<()> {
    Ok(())
}

#[event_handler(topic = "t", route = "/io")]
async fn with_io_error(_event: TaskCreated) -> Result<(), std::io::Error> {
    Ok(())
}

#[event_handler(topic = "t", route = "/outcome")]
async fn with_outcome(event: TaskCreated) -> Outcome {
    if event.task_id < 0 {
        return Outcome::dead_letter("negative task id");
    }
    Outcome::Success
}

#[event_handler(topic = "t", route = "/result-outcome")]
async fn with_result_outcome(_event: TaskCreated) -> Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Outcome::drop("not for us"))
}

fn main() {
    assert_eq!(event_runtime::__private::registered().len(), 6);
}
