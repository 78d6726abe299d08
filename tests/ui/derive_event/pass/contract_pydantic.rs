// The reference's Pydantic contracts, as the example reads them: required fields required,
// lenient ones `Option` or `#[serde(default)]`, date-times as `String` or chrono, the tag's
// values among the `Literal`'s, and a discriminated union's variants against their branches.
use event_runtime::Event;

fn version() -> String {
    "1.0".to_owned()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0", contract = "contracts/pydantic/task-event.schema.json")]
pub enum TaskChanged {
    #[serde(rename = "task.created")]
    Created {
        #[serde(default)]
        event_id: String,
        #[serde(default = "version")]
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: chrono::DateTime<chrono::Utc>,
        payload: std::collections::BTreeMap<String, serde_json::Value>,
    },
    #[serde(rename = "task.deleted")]
    Deleted { task_id: i64, user_id: String },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type", rename = "reminder.due")]
#[event(type = "reminder.due", version = "1.0", contract = "contracts/pydantic/reminder-event.schema.json")]
pub struct ReminderDue {
    pub event_id: String,
    pub task_id: u64,
    pub user_id: String,
    pub title: String,
    pub due_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub remind_at: chrono::NaiveDateTime,
    pub timestamp: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0", contract = "contracts/union.schema.json")]
pub enum TaskChange {
    #[serde(rename = "task.created")]
    Created { task_id: i64, user_id: String },
    #[serde(rename = "task.renamed")]
    Renamed { task_id: i64, user_id: String, title: Box<str> },
}

fn main() {}
