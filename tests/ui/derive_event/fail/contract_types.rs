// A type that cannot hold the schema's values is an error at the field's type, and every field
// is reported. A type the macro cannot see into (`Kind`) is never an error.
use std::collections::HashMap;

use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    A,
    B,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "rules.checked", version = "1.0", contract = "contracts/rules.schema.json")]
pub struct Rules {
    pub count: String,
    pub ratio: i64,
    pub name: i32,
    pub flag: String,
    pub tags: Vec<i64>,
    pub scores: HashMap<String, String>,
    pub note: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
    pub text: chrono::DateTime<chrono::Utc>,
    pub kind: Kind,
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "rules.nullable", version = "1.0", contract = "contracts/rules.schema.json")]
pub struct NotNullable {
    #[serde(default)]
    pub note: String,
    pub user_id: String,
}

fn main() {}
