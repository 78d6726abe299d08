// An enum's tag must be required by the schema (serde reads the variant from it), and a variant
// named by `rename_all` is checked by that name, the error at the variant.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0", contract = "contracts/rules.schema.json")]
pub enum Untagged {
    #[serde(rename = "rules.checked")]
    Checked { user_id: String },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "kind", rename_all = "snake_case", rename_all_fields = "camelCase")]
#[event(version = "1.0", contract = "contracts/snake.schema.json")]
pub enum SnakeEvent {
    #[event(type = "task.created")]
    TaskCreated { task_id: i64, user_id: String },
    #[event(type = "task.archived")]
    TaskArchived { task_id: i64, user_id: String },
}

fn main() {}
