//! Reading what arrived: a record's bytes and the broker's metadata about it, into an event
//! with its retry bookkeeping (verified, and only on this app's retry topics), or a reason why not.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::handler::registry::Target;
use crate::pipeline::dead_letter::dead_letter_undecodable;
use crate::pipeline::retry::bookkeeping::{RetryRejected, RetryState};
use crate::pipeline::route::target_topic;
use crate::pipeline::run::process;
use crate::pipeline::Runtime;
use crate::wire::bulk::{BulkRequest, Status, BULK_TYPE};
use crate::wire::cloudevent::{self, CloudEvent};
use crate::wire::trace::{self, TraceContext};
use std::sync::Arc;

/// The Kafka record key Dapr passes along.
static KEY_HEADER: HeaderName = HeaderName::from_static("__key");

/// What the broker said about a record besides its bytes: its key, its version header, its
/// trace context, and where it sits (topic, partition, offset), from the delivery's headers or a
/// bulk entry's metadata. Where it sits is read only by the dead letter of a record no handler
/// takes.
pub(crate) struct RecordMeta {
    pub key: Option<String>,
    origin: Origin,
}

/// Where a record's broker metadata came from.
enum Origin {
    Headers(HeaderMap),
    Entry(Map<String, Value>),
}

impl RecordMeta {
    pub(crate) fn from_headers(headers: HeaderMap) -> Self {
        let get = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        RecordMeta {
            key: get(&KEY_HEADER),
            origin: Origin::Headers(headers),
        }
    }

    pub(crate) fn from_entry(metadata: Map<String, Value>) -> Self {
        let get = |name: &str| {
            metadata
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        RecordMeta {
            key: get("__key"),
            origin: Origin::Entry(metadata),
        }
    }

    /// One entry of the broker's metadata, as text.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        match &self.origin {
            Origin::Headers(h) => h.get(name).and_then(|v| v.to_str().ok()),
            Origin::Entry(m) => m.get(name).and_then(Value::as_str),
        }
    }

    /// `ce` with what the broker carried beside it, where its envelope is silent (see
    /// [`with_broker_meta`]).
    pub(crate) fn complete(&self, ce: CloudEvent) -> CloudEvent {
        with_broker_meta(ce, |name| self.get(name))
    }

    /// The record's partition and offset, when the broker says them (Kafka does).
    pub(crate) fn position(&self) -> Option<(u32, i64)> {
        let partition = self.get("__partition")?.parse().ok()?;
        Some((partition, self.get("__offset")?.parse().ok()?))
    }

    /// `topic/partition/offset`, when the broker says them.
    pub(crate) fn coordinates(&self) -> Option<String> {
        let (partition, offset) = (self.get("__partition")?, self.get("__offset")?);
        Some(format!(
            "{}/{partition}/{offset}",
            self.get("__topic").unwrap_or("")
        ))
    }
}

/// One record, read the general way, to its handler or to the dead-letter topic.
pub(crate) async fn deliver_record(
    rt: &Arc<Runtime>,
    target: Target,
    record: Bytes,
    meta: RecordMeta,
) -> Status {
    match read_record(rt, target, record, &meta) {
        Read::Event(ce, retry) => {
            let at = meta.position();
            process(rt.clone(), target, *ce, retry, (meta.key, at), None).await
        }
        Read::Undecodable(reason, bytes) => {
            Box::pin(dead_letter_undecodable(rt, target, &reason, bytes, &meta)).await
        }
        Read::Foreign(reason) => {
            tracing::warn!(
                topic = target_topic(rt, target).1,
                "{reason}: acknowledged and ignored"
            );
            Status::Success
        }
    }
}

/// What a record turned out to be.
enum Read {
    /// An event, with its retry bookkeeping (a first delivery's, except on this app's retry
    /// topics, where it was verified).
    Event(Box<CloudEvent>, RetryState),
    /// Not an event a handler can take: why, and the exact bytes.
    Undecodable(String, Bytes),
    /// A retry message of another app: not this app's to run or to dead-letter.
    Foreign(String),
}

/// Reads a record. Retry bookkeeping is honoured only on this app's own retry topics, and only
/// when this app signed it; everywhere else a delivery is a first attempt.
fn read_record(rt: &Runtime, target: Target, record: Bytes, meta: &RecordMeta) -> Read {
    let raw_payload = |h: Option<usize>| h.is_some_and(|h| rt.registry.handlers[h].def.raw_payload);
    let sub = match target {
        Target::Topic(t) => Some(&rt.registry.topics[t]),
        Target::Handler(_) => None,
    };
    if !sub.is_some_and(|s| s.is_retry) {
        let raw = match target {
            Target::Handler(h) => raw_payload(Some(h)),
            Target::Topic(t) => rt.registry.topics[t].raw_payload,
        };
        return match CloudEvent::from_record(record.clone(), raw) {
            Ok(ce) => Read::Event(Box::new(meta.complete(ce)), RetryState::first()),
            Err(e) => Read::Undecodable(format!("not a CloudEvent: {e}"), record),
        };
    }
    let tier_secs = sub.map_or(0, |s| s.tier_secs);
    match RetryState::open(&record, &rt.registry.app_id, &rt.signing_key) {
        Ok(opened) if !hop_fits_tier(opened.state.hop_due_ms, tier_secs) => Read::Undecodable(
            format!(
                "retry message whose hop ends later than its {tier_secs} s tier allows: \
                 treated as forged"
            ),
            record,
        ),
        Ok(opened) => {
            let h = opened
                .state
                .handler
                .as_deref()
                .and_then(|name| rt.handlers.iter().position(|h| h.name == name));
            match CloudEvent::from_record(opened.record.clone(), raw_payload(h)) {
                Ok(mut ce) => {
                    // The retry's context (a child of the delivery that scheduled it) wins;
                    // its `tracestate` goes with it.
                    if opened.traceparent.is_some() {
                        ce.traceparent = opened.traceparent;
                        ce.tracestate = opened.tracestate;
                    }
                    let ce = with_version(ce, opened.state.version.as_deref());
                    Read::Event(Box::new(ce), opened.state)
                }
                Err(e) => Read::Undecodable(format!("not a CloudEvent: {e}"), opened.record),
            }
        }
        Err(RetryRejected::Foreign(app)) => {
            Read::Foreign(format!("a retry message of app `{app}`"))
        }
        Err(e @ RetryRejected::Unverified(_)) => Read::Undecodable(e.to_string(), record),
    }
}

/// How much later than its tier a hop may end: the clocks of two replicas may differ by this.
const CLOCK_SKEW_MS: u64 = 60_000;

/// Whether a hop that ends at `hop_due_ms` is one the tier of `tier_secs` could have given: no
/// message holds a retry partition longer than its tier's wait.
fn hop_fits_tier(hop_due_ms: Option<u64>, tier_secs: u64) -> bool {
    hop_due_ms.is_none_or(|due| {
        due <= crate::clock::now_ms() + tier_secs.saturating_mul(1000) + CLOCK_SKEW_MS
    })
}

/// The record a bulk entry holds: the broker's bytes (base64, for rawPayload), or the event's
/// JSON text.
pub(crate) fn entry_record(event: &RawValue) -> Result<Bytes, String> {
    match serde_json::from_str::<String>(event.get()) {
        Ok(b64) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map(Bytes::from)
                .map_err(|e| format!("bulk entry is not valid base64: {e}"))
        }
        Err(_) => Ok(Bytes::from(event.get().to_owned())),
    }
}

/// What the broker carried beside a record (a delivery's headers, a bulk entry's metadata; `get`
/// reads one entry), into its event where the envelope is silent: our publisher's version header
/// (see [`with_version`]), and the W3C trace context. The trace is a producer's `traceparent` and
/// `tracestate` Kafka headers (daprd passes every record header on), or daprd's own. What the
/// envelope carries wins; a context that names no trace (daprd's all-zero one when its tracing
/// is off) is ignored.
pub(crate) fn with_broker_meta<'a>(
    ce: CloudEvent,
    get: impl Fn(&str) -> Option<&'a str>,
) -> CloudEvent {
    let ce = binary_mode(ce, &get);
    let mut ce = with_version(ce, get(crate::wire::cloudevent::EXT_VERSION));
    if ce.traceparent.as_deref().and_then(trace::parse).is_none() {
        let carried = TraceContext::received(get("traceparent"), get("tracestate"));
        if carried.traceparent.is_some() {
            ce.traceparent = carried.traceparent;
            ce.tracestate = carried.tracestate;
        }
    }
    ce
}

/// A record that is no CloudEvent but carries its attributes as `ce_*` record headers: the
/// CloudEvents Kafka protocol binding's binary mode (the default of CloudEvents' own SDKs and of
/// Knative's Kafka sink), whose record value is the event's data. The event is then the one the
/// headers describe (its id, source, type, time, subject, and the
/// extensions the framework reads: version, partition key and trace context), not Dapr's wrapper
/// of an unknown record. Anything else passes as it is.
fn binary_mode<'a>(mut ce: CloudEvent, get: &impl Fn(&str) -> Option<&'a str>) -> CloudEvent {
    if !ce.is_bare() {
        return ce;
    }
    let (Some(_), Some(id), Some(source), Some(ty)) = (
        get("ce_specversion"),
        get("ce_id").filter(|v| !v.is_empty()),
        get("ce_source").filter(|v| !v.is_empty()),
        get("ce_type").filter(|v| !v.is_empty()),
    ) else {
        return ce;
    };
    ce.id = id.to_owned();
    ce.source = source.to_owned();
    ce.ty = ty.to_owned();
    let text = |name: &str| get(name).map(str::to_owned);
    ce.time = text("ce_time").or(ce.time);
    if let Some(subject) = text("ce_subject") {
        ce.extensions
            .insert("subject".into(), Value::String(subject));
    }
    for ext in [crate::wire::cloudevent::EXT_VERSION, "partitionkey"] {
        if let Some(v) = get(&format!("ce_{ext}")) {
            ce.extensions
                .insert(ext.to_owned(), Value::String(v.to_owned()));
        }
    }
    if let Some(tp) = get("ce_traceparent").filter(|t| trace::parse(t).is_some()) {
        ce.traceparent = Some(tp.to_owned());
        ce.tracestate = text("ce_tracestate");
    }
    ce
}

/// The version the broker carried beside the record (our publisher's header, a bulk entry's
/// metadata, a retry's bookkeeping); an extension in the envelope wins.
fn with_version(mut ce: CloudEvent, version: Option<&str>) -> CloudEvent {
    if let Some(v) = version {
        if !ce
            .extensions
            .contains_key(crate::wire::cloudevent::EXT_VERSION)
        {
            ce.extensions.insert(
                crate::wire::cloudevent::EXT_VERSION.to_owned(),
                Value::String(v.to_owned()),
            );
        }
    }
    ce
}

/// The bulk batch of a delivery to a topic route, when it is one.
pub(crate) fn bulk_request(rt: &Runtime, target: Target, body: &[u8]) -> Option<BulkRequest> {
    // Dapr sends batches only to a topic subscribed in bulk.
    let Target::Topic(t) = target else {
        return None;
    };
    rt.registry.topics[t].bulk?;
    if !cloudevent::contains(body, BULK_TYPE.as_bytes()) {
        return None;
    }
    serde_json::from_slice::<BulkRequest>(body)
        .ok()
        .filter(|b| b.ty == BULK_TYPE)
}
