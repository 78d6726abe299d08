//! The messages of daprd's `SubscribeTopicEventsAlpha1` (package `dapr.proto.runtime.v1`), as
//! prost types written by hand: the few this stream uses, with the field numbers of Dapr 1.16's
//! `dapr.proto` and `appcallback.proto`. Written out, not generated, so that building the crate
//! needs no `protoc` and no copy of Dapr's proto tree.

/// What the app sends: the subscription first, then one answer per event.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SubscribeTopicEventsRequestAlpha1 {
    #[prost(oneof = "subscribe_request::Type", tags = "1, 2")]
    pub(crate) subscribe_topic_events_request_type: Option<subscribe_request::Type>,
}

pub(crate) mod subscribe_request {
    /// The request's one field.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Type {
        #[prost(message, tag = "1")]
        InitialRequest(super::SubscribeTopicEventsRequestInitialAlpha1),
        #[prost(message, tag = "2")]
        EventProcessed(super::SubscribeTopicEventsRequestProcessedAlpha1),
    }
}

/// The subscription: component, topic, metadata (`rawPayload`), and daprd's own dead-letter
/// topic (not used: the framework dead-letters itself).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SubscribeTopicEventsRequestInitialAlpha1 {
    #[prost(string, tag = "1")]
    pub(crate) pubsub_name: String,
    #[prost(string, tag = "2")]
    pub(crate) topic: String,
    #[prost(map = "string, string", tag = "3")]
    pub(crate) metadata: std::collections::HashMap<String, String>,
    #[prost(string, optional, tag = "4")]
    pub(crate) dead_letter_topic: Option<String>,
}

/// The answer to one event, by its id.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SubscribeTopicEventsRequestProcessedAlpha1 {
    #[prost(string, tag = "1")]
    pub(crate) id: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) status: Option<TopicEventResponse>,
}

/// SUCCESS, RETRY or DROP.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TopicEventResponse {
    #[prost(enumeration = "TopicEventResponseStatus", tag = "1")]
    pub(crate) status: i32,
}

/// Dapr's three answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum TopicEventResponseStatus {
    Success = 0,
    Retry = 1,
    Drop = 2,
}

/// What daprd sends: an acknowledgement of the subscription, then the events.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SubscribeTopicEventsResponseAlpha1 {
    #[prost(oneof = "subscribe_response::Type", tags = "1, 2")]
    pub(crate) subscribe_topic_events_response_type: Option<subscribe_response::Type>,
}

pub(crate) mod subscribe_response {
    /// The response's one field.
    // Every message but the first is an event: boxing it would cost each an allocation.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Type {
        #[prost(message, tag = "1")]
        InitialResponse(super::SubscribeTopicEventsResponseInitialAlpha1),
        #[prost(message, tag = "2")]
        EventMessage(super::TopicEventRequest),
    }
}

/// daprd's acknowledgement of the subscription (no fields).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub(crate) struct SubscribeTopicEventsResponseInitialAlpha1 {}

/// One event, as daprd parsed it. With `rawPayload`, `data` is the record's bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicEventRequest {
    /// The CloudEvent `id` (daprd's own for a rawPayload record), which the answer names.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `source`.
    #[prost(string, tag = "2")]
    pub source: String,
    /// `type`.
    #[prost(string, tag = "3")]
    pub r#type: String,
    /// `specversion`.
    #[prost(string, tag = "4")]
    pub spec_version: String,
    /// `datacontenttype`.
    #[prost(string, tag = "5")]
    pub data_content_type: String,
    /// The data: with `rawPayload`, the record's bytes.
    #[prost(bytes = "bytes", tag = "7")]
    pub data: prost::bytes::Bytes,
    /// The topic.
    #[prost(string, tag = "6")]
    pub topic: String,
    /// The component.
    #[prost(string, tag = "8")]
    pub pubsub_name: String,
    /// The route daprd would have called.
    #[prost(string, tag = "9")]
    pub path: String,
    /// The CloudEvent's other attributes.
    #[prost(message, optional, tag = "10")]
    pub extensions: Option<prost_types::Struct>,
}
