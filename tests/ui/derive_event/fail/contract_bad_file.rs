// A contract that cannot be read, is not JSON, is not an object's schema, or whose message is
// missing: an error at the attribute, each one reported.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a.missing", version = "1.0", contract = "contracts/missing.schema.json")]
pub struct Missing { pub user_id: String }

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a.invalid", version = "1.0", contract = "contracts/invalid.json")]
pub struct Invalid { pub user_id: String }

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a.string", version = "1.0", contract = "contracts/string.schema.json")]
pub struct NotAnObject { pub user_id: String }

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a.no-message", version = "1.0", contract = "contracts/todo.asyncapi.json")]
pub struct NoMessage { pub user_id: String }

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a.unknown", version = "1.0", contract = "contracts/todo.asyncapi.json", message = "TaskArchived")]
pub struct UnknownMessage { pub user_id: String }

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a.schema", version = "1.0", contract = "contracts/rules.schema.json", message = "Rules")]
pub struct MessageOfASchema { pub user_id: String }

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a.alone", version = "1.0", message = "TaskEvent")]
pub struct MessageAlone { pub user_id: String }

fn main() {}
