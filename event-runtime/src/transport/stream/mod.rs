//! Streaming subscriptions over gRPC: the app dials daprd's `SubscribeTopicEventsAlpha1` and
//! receives a topic's events on the stream, answering each by its id. daprd then needs no route
//! into the app (no inbound port).
//!
//! The client and its messages (feature `grpc`); `app/stream.rs` runs deliveries on it. daprd
//! sends its reading of the record, not the record's metadata: no key, partition, offset or
//! headers travel on the stream (see the `tooling` docs, "Deliveries over gRPC streams").

pub(crate) mod proto;

use futures::StreamExt as _;
use proto::{
    subscribe_request, subscribe_response, SubscribeTopicEventsRequestAlpha1,
    SubscribeTopicEventsRequestInitialAlpha1, SubscribeTopicEventsRequestProcessedAlpha1,
    SubscribeTopicEventsResponseAlpha1, TopicEventRequest, TopicEventResponse,
    TopicEventResponseStatus,
};
use tonic::codegen::http::uri::PathAndQuery;

/// The method's path on daprd's gRPC API.
const METHOD: &str = "/dapr.proto.runtime.v1.Dapr/SubscribeTopicEventsAlpha1";

/// How many answers may wait to be sent before `answer` waits.
const ANSWERS_IN_FLIGHT: usize = 256;

/// Why a stream could not be opened or went on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// daprd's address is not a URI, or cannot be reached.
    #[error("cannot reach daprd's gRPC API at {endpoint}: {message}")]
    Connect {
        /// The address.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// daprd refused the subscription or ended the stream with an error.
    #[error("daprd answered {0}")]
    Status(#[from] tonic::Status),
    /// daprd's first message was not the acknowledgement of the subscription.
    #[error("daprd did not acknowledge the subscription")]
    NotAcknowledged,
    /// The stream is closed: no answer can be sent.
    #[error("the stream is closed")]
    Closed,
}

/// One open subscription: the events daprd sends, and the way back for their answers.
pub struct Subscription {
    answers: Answers,
    events: tonic::Streaming<SubscribeTopicEventsResponseAlpha1>,
}

/// The way back of a subscription, for answering events from other tasks.
#[derive(Clone)]
pub struct Answers(tokio::sync::mpsc::Sender<SubscribeTopicEventsRequestAlpha1>);

/// Dapr's answer to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Done: daprd acknowledges the record.
    Success,
    /// daprd delivers it again.
    Retry,
    /// daprd drops it.
    Drop,
}

/// Subscribes to `topic` on `pubsub` through daprd at `endpoint` (`http://127.0.0.1:50001`),
/// with `metadata` (`rawPayload: "true"` hands over each record's bytes), sending `token` as
/// `dapr-api-token` when there is one. Returns once daprd has acknowledged the subscription.
pub async fn subscribe(
    endpoint: &str,
    token: Option<&str>,
    pubsub: &str,
    topic: &str,
    metadata: impl IntoIterator<Item = (String, String)>,
) -> Result<Subscription, StreamError> {
    let connect = |message: String| StreamError::Connect {
        endpoint: endpoint.to_owned(),
        message,
    };
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| connect(e.to_string()))?
        .connect()
        .await
        .map_err(|e| connect(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| connect(e.to_string()))?;

    let (answers, outgoing) = tokio::sync::mpsc::channel(ANSWERS_IN_FLIGHT);
    let initial = SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(subscribe_request::Type::InitialRequest(
            SubscribeTopicEventsRequestInitialAlpha1 {
                pubsub_name: pubsub.to_owned(),
                topic: topic.to_owned(),
                metadata: metadata.into_iter().collect(),
                dead_letter_topic: None,
            },
        )),
    };
    answers
        .send(initial)
        .await
        .map_err(|_| StreamError::Closed)?;
    let outgoing = futures::stream::unfold(outgoing, |mut rx| async move {
        rx.recv().await.map(|message| (message, rx))
    });
    let mut request = tonic::Request::new(outgoing);
    if let Some(token) = token {
        let value = token
            .parse()
            .map_err(|_| connect("the API token is not ASCII".into()))?;
        request.metadata_mut().insert("dapr-api-token", value);
    }
    let codec = tonic_prost::ProstCodec::default();
    let response = grpc
        .streaming(request, PathAndQuery::from_static(METHOD), codec)
        .await?;
    let mut events = response.into_inner();
    match events.message().await? {
        Some(SubscribeTopicEventsResponseAlpha1 {
            subscribe_topic_events_response_type: Some(subscribe_response::Type::InitialResponse(_)),
        }) => Ok(Subscription {
            answers: Answers(answers),
            events,
        }),
        _ => Err(StreamError::NotAcknowledged),
    }
}

impl Subscription {
    /// The next event; `None` when daprd ended the stream.
    pub async fn next(&mut self) -> Result<Option<TopicEventRequest>, StreamError> {
        while let Some(message) = self.events.next().await {
            if let Some(subscribe_response::Type::EventMessage(event)) =
                message?.subscribe_topic_events_response_type
            {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// Answers the event `id`.
    pub async fn answer(&self, id: &str, answer: Answer) -> Result<(), StreamError> {
        self.answers.answer(id, answer).await
    }

    /// The way back, for answering from other tasks.
    pub fn answers(&self) -> Answers {
        self.answers.clone()
    }
}

impl Answers {
    /// Answers the event `id`.
    pub async fn answer(&self, id: &str, answer: Answer) -> Result<(), StreamError> {
        let status = match answer {
            Answer::Success => TopicEventResponseStatus::Success,
            Answer::Retry => TopicEventResponseStatus::Retry,
            Answer::Drop => TopicEventResponseStatus::Drop,
        };
        let message = SubscribeTopicEventsRequestAlpha1 {
            subscribe_topic_events_request_type: Some(subscribe_request::Type::EventProcessed(
                SubscribeTopicEventsRequestProcessedAlpha1 {
                    id: id.to_owned(),
                    status: Some(TopicEventResponse {
                        status: status as i32,
                    }),
                },
            )),
        };
        self.0.send(message).await.map_err(|_| StreamError::Closed)
    }
}
