// What a body may not be, and what a variant may not hold.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(body, type = "task.created", version = "1.0")]
pub struct Named {
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(body)]
pub struct Keyless {
    pub task_id: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(body)]
pub struct Tuple(pub String);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(body, unkeyed)]
pub struct Unkeyed {
    pub task_id: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plain {
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum Keyed {
    #[serde(rename = "a")]
    A(Unkeyed),
    #[serde(rename = "b")]
    B(Plain),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0", unkeyed)]
#[serde(bound(serialize = "", deserialize = ""))]
pub enum Generic<T: Send + Sync + 'static> {
    #[serde(rename = "a")]
    A(Unkeyed),
    #[serde(rename = "b")]
    B { value: std::marker::PhantomData<T> },
}

fn main() {}
