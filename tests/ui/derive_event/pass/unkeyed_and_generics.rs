// `unkeyed` types, an unkeyed enum with a unit variant and one holding an unkeyed body, `#[event(type)]` on variants,
// and a generic event type.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "system.tick", version = "1.0", unkeyed)]
pub struct Tick {
    pub at: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "kind")]
#[event(version = "1.0", unkeyed)]
pub enum Signal {
    #[event(type = "signal.ping")]
    Ping,
    #[serde(rename = "signal.data")]
    Data(Payload),
    #[event(type = "signal.note")]
    Note { text: String },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(body, unkeyed)]
pub struct Payload {
    pub value: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "wrapped", version = "1.0")]
#[serde(bound(serialize = "", deserialize = ""))]
pub struct Wrapped<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    pub user_id: u64,
    pub inner: T,
}

fn main() {
    assert_eq!(Tick { at: "now".into() }.partition_key(), None);
    assert_eq!(Signal::TYPES, ["signal.ping", "signal.data", "signal.note"]);
    assert_eq!(Signal::FIELDS, ["kind"]);
    assert_eq!(Signal::Data(Payload { value: 1 }).partition_key(), None);
    assert_eq!(Signal::Ping.event_type(), "signal.ping");
    assert_eq!(Signal::Data(Payload { value: 1 }).event_type(), "signal.data");
    assert_eq!(Signal::Note { text: "x".into() }.partition_key(), None);
    let w = Wrapped { user_id: 42, inner: vec![1u8] };
    assert_eq!(w.partition_key().as_deref(), Some("42"));
    assert_eq!(<Wrapped<Vec<u8>> as Event>::TYPES, ["wrapped"]);
}
