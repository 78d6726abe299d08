//! What the promise tests share: a router that records every request made to it, and the
//! answer, so a test sees exactly what the embedded broker asked of the app.

// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use serde_json::Value;
use tokio::time::Instant;

/// One request made to the router, with its answer and when both happened (tokio's clock).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: StatusCode,
    pub answer: Value,
    pub started: Instant,
    pub answered: Instant,
}

impl Exchange {
    /// The request body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Every exchange, in the order the requests arrived.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<(usize, Exchange)>>>, Arc<Mutex<usize>>);

impl Recorded {
    pub fn all(&self) -> Vec<Exchange> {
        let mut all = self.0.lock().unwrap().clone();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, e)| e).collect()
    }
}

/// `router`, recording every request made to it in `recorded`.
pub fn recording(router: Router, recorded: Recorded) -> Router {
    router.layer(axum::middleware::from_fn_with_state(recorded, record))
}

async fn record(State(recorded): State<Recorded>, request: Request, next: Next) -> Response {
    let seq = {
        let mut n = recorded.1.lock().unwrap();
        *n += 1;
        *n
    };
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let (method, path, headers) = (
        parts.method.clone(),
        parts.uri.path().to_owned(),
        parts.headers.clone(),
    );
    let response = next
        .run(Request::from_parts(parts, Body::from(body.clone())))
        .await;
    let (parts, answer) = response.into_parts();
    let answer = axum::body::to_bytes(answer, usize::MAX).await.unwrap();
    recorded.0.lock().unwrap().push((
        seq,
        Exchange {
            method,
            path,
            headers,
            body,
            status: parts.status,
            answer: serde_json::from_slice(&answer).unwrap_or(Value::Null),
            started,
            answered: Instant::now(),
        },
    ));
    Response::from_parts(parts, Body::from(answer))
}

/// The app of `module`'s handlers and its submodules' (see `app!` in `main.rs`).
pub fn app_of(module: &str) -> event_runtime::App {
    let inside = format!("{module}::");
    event_runtime::App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.module() == module || h.module().starts_with(&inside)),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The process-wide tracing subscriber, one per process: the `broker` tests read the spans'
/// names and fields from `spans`, and with `otel` the `trace_context` tests read what the
/// OpenTelemetry layer exported from `otel`.
pub struct Subscriber {
    pub spans: SpanLog,
    #[cfg(feature = "otel")]
    pub otel: opentelemetry_sdk::trace::InMemorySpanExporter,
    #[cfg(feature = "otel")]
    _provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

/// Installs the process-wide subscriber on first use.
pub fn subscriber() -> &'static Subscriber {
    static SUBSCRIBER: std::sync::OnceLock<Subscriber> = std::sync::OnceLock::new();
    SUBSCRIBER.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        let spans = SpanLog::default();
        let subscriber = tracing_subscriber::registry().with(Spans(spans.clone()));
        #[cfg(feature = "otel")]
        {
            use opentelemetry::trace::TracerProvider as _;
            let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let tracer = provider.tracer("event-runtime-test");
            let subscriber = subscriber.with(tracing_opentelemetry::layer().with_tracer(tracer));
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            Subscriber {
                spans,
                otel: exporter,
                _provider: provider,
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            Subscriber { spans }
        }
    })
}

pub type SpanLog = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// Records the name and the fields of every span opened.
pub struct Spans(pub SpanLog);

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), fields.0));
    }
}
