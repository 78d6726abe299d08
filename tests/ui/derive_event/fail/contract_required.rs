// A field the Rust type requires must be one the schema requires: not one it leaves optional
// (`retries` has a default there), nor one it does not have (`priority`). `Option`,
// `#[serde(default)]`, `#[serde(skip)]` and `#[serde(flatten)]` fields are not required.
use event_runtime::Event;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Extra {
    pub anything: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "rules.required", version = "1.0", contract = "contracts/rules.schema.json")]
pub struct Required {
    pub user_id: String,
    pub retries: u32,
    pub priority: u8,
    pub maybe: Option<String>,
    #[serde(default)]
    pub defaulted: String,
    #[serde(skip)]
    pub skipped: String,
    #[serde(flatten)]
    pub extra: Extra,
}

fn main() {}
