// The rules of a struct event's body field, each reported where it is broken.
use event_runtime::Event;

#[derive(serde::Serialize, serde::Deserialize, Event)]
#[event(body)]
pub struct Change {
    pub task_id: i64,
    pub user_id: String,
}

#[derive(serde::Serialize, serde::Deserialize, Event)]
#[event(body, unkeyed)]
pub struct Note {
    pub text: String,
}

// Not flattened: serde would nest its fields under `change`.
#[derive(serde::Serialize, serde::Deserialize, Event)]
#[event(type = "a", version = "1.0")]
pub struct NotFlat {
    #[event(body)]
    pub change: Change,
}

// Two bodies.
#[derive(serde::Serialize, serde::Deserialize, Event)]
#[event(type = "b", version = "1.0")]
pub struct Two {
    #[serde(flatten)]
    #[event(body)]
    pub change: Change,
    #[serde(flatten)]
    #[event(body)]
    pub note: Note,
}

// A body inside a body.
#[derive(serde::Serialize, serde::Deserialize, Event)]
#[event(body)]
pub struct Nested {
    #[serde(flatten)]
    #[event(body)]
    pub change: Change,
}

// A body in a variant's field, not as the variant's one value.
#[derive(serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum InVariant {
    #[serde(rename = "c")]
    C {
        #[serde(flatten)]
        #[event(body)]
        change: Change,
    },
}

// A keyed event whose only key would be an unkeyed body's.
#[derive(serde::Serialize, serde::Deserialize, Event)]
#[event(type = "d", version = "1.0")]
pub struct KeyedByNote {
    #[serde(flatten)]
    #[event(body)]
    pub note: Note,
}

// A generic event holding a body.
#[derive(serde::Serialize, serde::Deserialize, Event)]
#[event(type = "e", version = "1.0")]
pub struct Generic<T: Send + Sync + 'static> {
    #[serde(flatten)]
    #[event(body)]
    pub change: Change,
    pub extra: std::marker::PhantomData<T>,
}

fn main() {}
