//! Deliveries over daprd's streaming subscriptions (`EVENTS_TRANSPORT=grpc-stream`, feature
//! `grpc`): one stream per subscription, retry topics included, each event run through the same
//! pipeline as an HTTP delivery and answered on its stream by its id.
//!
//! The stream carries daprd's reading of the record, not the record's Kafka metadata: no key,
//! partition, offset or headers. An event's version and key then come from the event itself,
//! and a handler that keeps per-key order asks the store for every delivery (as on Redis).

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::task::JoinSet;

use crate::app::App;
use crate::handler::registry::Target;
use crate::pipeline::{deliver, Answer as PipelineAnswer, Runtime};
use crate::transport::stream::{self, Answer, Answers};
use crate::wire::bulk::Status;

/// The longest wait between two tries to open a stream.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The app's streams, open until the app shuts down or [`stop`](StreamDeliveries::stop); what
/// [`App::start_streams`] returns (its example shows both).
#[must_use = "the streams close when this is dropped"]
pub struct StreamDeliveries {
    streams: JoinSet<()>,
}

impl StreamDeliveries {
    /// Closes the streams. Deliveries already running finish; their answers are lost with the
    /// streams, so daprd delivers those events again (idempotent handlers skip them).
    pub async fn stop(mut self) {
        self.streams.abort_all();
        while self.streams.join_next().await.is_some() {}
    }
}

impl App {
    /// Opens the app's streaming deliveries when it takes them (`EVENTS_TRANSPORT=grpc-stream`,
    /// on Dapr): one stream per subscription to daprd's gRPC API (`DAPR_GRPC_ENDPOINT`, else
    /// `DAPR_GRPC_PORT`), each opened again after an error. `None` otherwise.
    ///
    /// [`App::serve`] does this itself; an app that serves [`App::router`] with its own server
    /// calls it beside, as it would start the outbox's relay, and closes the streams when its
    /// server stops:
    ///
    /// ```no_run
    /// # async fn run() -> anyhow::Result<()> {
    /// use event_runtime::App;
    ///
    /// let app = App::new();
    /// let streams = app.start_streams(); // `None` unless EVENTS_TRANSPORT=grpc-stream on Dapr
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app.router()).await?;
    /// if let Some(streams) = streams {
    ///     streams.stop().await;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Where [`App::router`] panics.
    pub fn start_streams(&self) -> Option<StreamDeliveries> {
        if !self.streamed() {
            return None;
        }
        let rt = self.runtime();
        let endpoint = self.run.settings.dapr_grpc_endpoint.clone();
        let token = self.io.dapr.api_token();
        let mut streams = JoinSet::new();
        for t in 0..rt.registry.topics.len() {
            let (rt, endpoint, token) = (rt.clone(), endpoint.clone(), token.clone());
            streams.spawn(async move { keep_open(rt, t, &endpoint, token.as_deref()).await });
        }
        Some(StreamDeliveries { streams })
    }
}

/// One subscription's stream, opened again after each error, until shutdown.
async fn keep_open(rt: Arc<Runtime>, t: usize, endpoint: &str, token: Option<&str>) {
    let sub = &rt.registry.topics[t];
    let mut stopping = rt.shutdown.subscribe();
    let mut backoff = Duration::from_millis(250);
    while !*stopping.borrow() {
        let metadata = sub
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([("rawPayload".to_owned(), "true".to_owned())]);
        match stream::subscribe(endpoint, token, &sub.pubsub, &sub.topic, metadata).await {
            Ok(mut events) => {
                tracing::info!(pubsub = %sub.pubsub, topic = %sub.topic, "streaming subscription open");
                backoff = Duration::from_millis(250);
                let answers = events.answers();
                loop {
                    let next = tokio::select! {
                        next = events.next() => next,
                        _ = stopping.wait_for(|stopping| *stopping) => return,
                    };
                    match next {
                        Ok(Some(event)) => {
                            let (rt, answers) = (rt.clone(), answers.clone());
                            tokio::spawn(deliver_one(rt, t, event.id, event.data, answers));
                        }
                        Ok(None) => {
                            tracing::warn!(topic = %sub.topic, "daprd ended the stream: opening it again");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(topic = %sub.topic, error = %e, "the stream failed: opening it again");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(topic = %sub.topic, error = %e, ?backoff, "cannot open the stream yet");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs one event and answers it on its stream. An answer that cannot be sent (the stream is
/// gone) is not lost work: daprd delivers the event again.
async fn deliver_one(
    rt: Arc<Runtime>,
    t: usize,
    id: String,
    record: axum::body::Bytes,
    answers: Answers,
) {
    let answer = match deliver(rt, Target::Topic(t), HeaderMap::new(), record).await {
        PipelineAnswer::One(Status::Success) => Answer::Success,
        PipelineAnswer::One(Status::Drop) => Answer::Drop,
        PipelineAnswer::One(Status::Retry) | PipelineAnswer::Bulk(_) => Answer::Retry,
    };
    if let Err(e) = answers.answer(&id, answer).await {
        tracing::warn!(%id, error = %e, "the answer could not be sent: daprd delivers the event again");
    }
}
