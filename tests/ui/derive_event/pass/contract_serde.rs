// serde's names and defaults as serde applies them: `rename_all` on an enum names its variants'
// tag values, `rename_all_fields` its fields; `#[serde(default)]` on a struct makes every field
// optional, so `retries` (optional in the schema) may be a plain `u32`.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "kind", rename_all = "snake_case", rename_all_fields = "camelCase")]
#[event(version = "1.0", contract = "contracts/snake.schema.json")]
pub enum SnakeEvent {
    #[event(type = "task.created")]
    TaskCreated { task_id: i64, user_id: String },
    #[event(type = "task.deleted")]
    TaskDeleted { task_id: i64, user_id: String },
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, Event)]
#[serde(default)]
#[event(type = "rules.defaulted", version = "1.0", contract = "contracts/rules.schema.json")]
pub struct Defaulted {
    pub user_id: String,
    pub retries: u32,
}

fn main() {}
