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

/// An entry of the broker's metadata: its name as text (a bulk entry's metadata key) and as a
/// header name made at compile time, so that reading a delivery's header parses no name.
pub(crate) struct MetaName {
    text: &'static str,
    header: HeaderName,
}

impl MetaName {
    const fn new(text: &'static str) -> Self {
        MetaName {
            text,
            header: HeaderName::from_static(text),
        }
    }
}

/// The Kafka record key Dapr passes along.
pub(crate) static KEY: MetaName = MetaName::new("__key");
static TOPIC: MetaName = MetaName::new("__topic");
static PARTITION: MetaName = MetaName::new("__partition");
static OFFSET: MetaName = MetaName::new("__offset");
/// Our publisher's version header.
static VERSION: MetaName = MetaName::new(crate::wire::cloudevent::EXT_VERSION);
static TRACEPARENT: MetaName = MetaName::new("traceparent");
static TRACESTATE: MetaName = MetaName::new("tracestate");
/// The CloudEvents Kafka binding's binary-mode headers.
static CE_SPECVERSION: MetaName = MetaName::new("ce_specversion");
static CE_ID: MetaName = MetaName::new("ce_id");
static CE_SOURCE: MetaName = MetaName::new("ce_source");
static CE_TYPE: MetaName = MetaName::new("ce_type");
static CE_TIME: MetaName = MetaName::new("ce_time");
static CE_SUBJECT: MetaName = MetaName::new("ce_subject");
static CE_VERSION: MetaName = MetaName::new("ce_eventversion");
static CE_PARTITIONKEY: MetaName = MetaName::new("ce_partitionkey");
static CE_TRACEPARENT: MetaName = MetaName::new("ce_traceparent");
static CE_TRACESTATE: MetaName = MetaName::new("ce_tracestate");

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
        let origin = Origin::Headers(headers);
        RecordMeta {
            key: origin.get(&KEY).map(str::to_owned),
            origin,
        }
    }

    pub(crate) fn from_entry(metadata: Map<String, Value>) -> Self {
        let origin = Origin::Entry(metadata);
        RecordMeta {
            key: origin.get(&KEY).map(str::to_owned),
            origin,
        }
    }

    /// `ce` with what the broker carried beside it, where its envelope is silent (see
    /// [`with_broker_meta`]).
    pub(crate) fn complete(&self, ce: &mut CloudEvent) {
        with_broker_meta(ce, |name| self.origin.get(name));
    }

    /// The record's partition and offset, when the broker says them (Kafka does).
    pub(crate) fn position(&self) -> Option<(u32, i64)> {
        let partition = self.origin.get(&PARTITION)?.parse().ok()?;
        Some((partition, self.origin.get(&OFFSET)?.parse().ok()?))
    }

    /// `topic/partition/offset`, when the broker says them.
    pub(crate) fn coordinates(&self) -> Option<String> {
        let get = |name| self.origin.get(name);
        let (partition, offset) = (get(&PARTITION)?, get(&OFFSET)?);
        Some(format!(
            "{}/{partition}/{offset}",
            get(&TOPIC).unwrap_or("")
        ))
    }
}

impl Origin {
    /// One entry of the broker's metadata, as text.
    fn get(&self, name: &MetaName) -> Option<&str> {
        match self {
            Origin::Headers(h) => h.get(&name.header).and_then(|v| v.to_str().ok()),
            Origin::Entry(m) => entry_meta(m, name),
        }
    }
}

/// The entry `name` of a bulk entry's metadata, as text.
pub(crate) fn entry_meta<'a>(metadata: &'a Map<String, Value>, name: &MetaName) -> Option<&'a str> {
    metadata.get(name.text).and_then(Value::as_str)
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
            process(rt.clone(), target, ce, retry, (meta.key, at), None).await
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
    Event(Arc<CloudEvent>, RetryState),
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
            Ok(mut ce) => {
                meta.complete(&mut ce);
                Read::Event(Arc::new(ce), RetryState::first())
            }
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
                    with_version(&mut ce, opened.state.version.as_deref());
                    Read::Event(Arc::new(ce), opened.state)
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
    ce: &mut CloudEvent,
    get: impl Fn(&MetaName) -> Option<&'a str>,
) {
    binary_mode(ce, &get);
    with_version(ce, get(&VERSION));
    // Only a context the broker carried can replace the envelope's, so without one the
    // envelope's is not even parsed.
    let Some(carried) = get(&TRACEPARENT) else {
        return;
    };
    if !ce.traceparent.as_deref().is_some_and(trace::names_a_trace) {
        let carried = TraceContext::received(Some(carried), get(&TRACESTATE));
        if carried.traceparent.is_some() {
            ce.traceparent = carried.traceparent;
            ce.tracestate = carried.tracestate;
        }
    }
}

/// A record that is no CloudEvent but carries its attributes as `ce_*` record headers: the
/// CloudEvents Kafka protocol binding's binary mode (the default of CloudEvents' own SDKs and of
/// Knative's Kafka sink), whose record value is the event's data. The event is then the one the
/// headers describe (its id, source, type, time, subject, and the
/// extensions the framework reads: version, partition key and trace context), not Dapr's wrapper
/// of an unknown record. Anything else passes as it is.
fn binary_mode<'a>(ce: &mut CloudEvent, get: &impl Fn(&MetaName) -> Option<&'a str>) {
    if !ce.is_bare() {
        return;
    }
    let (Some(_), Some(id), Some(source), Some(ty)) = (
        get(&CE_SPECVERSION),
        get(&CE_ID).filter(|v| !v.is_empty()),
        get(&CE_SOURCE).filter(|v| !v.is_empty()),
        get(&CE_TYPE).filter(|v| !v.is_empty()),
    ) else {
        return;
    };
    ce.id = id.to_owned();
    ce.source = source.to_owned();
    ce.ty = ty.to_owned();
    let text = |name| get(name).map(str::to_owned);
    if let Some(time) = text(&CE_TIME) {
        ce.time = Some(time);
    }
    if let Some(subject) = text(&CE_SUBJECT) {
        ce.extensions
            .insert("subject".into(), Value::String(subject));
    }
    for (ext, name) in [
        (crate::wire::cloudevent::EXT_VERSION, &CE_VERSION),
        ("partitionkey", &CE_PARTITIONKEY),
    ] {
        if let Some(v) = get(name) {
            ce.extensions
                .insert(ext.to_owned(), Value::String(v.to_owned()));
        }
    }
    if let Some(tp) = get(&CE_TRACEPARENT).filter(|t| trace::names_a_trace(t)) {
        ce.traceparent = Some(tp.to_owned());
        ce.tracestate = text(&CE_TRACESTATE);
    }
}

/// The version the broker carried beside the record (our publisher's header, a bulk entry's
/// metadata, a retry's bookkeeping); an extension in the envelope wins.
fn with_version(ce: &mut CloudEvent, version: Option<&str>) {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_binary_mode_version_header_is_the_extension_behind_ce() {
        let extension = crate::wire::cloudevent::EXT_VERSION;
        assert_eq!(super::CE_VERSION.text, format!("ce_{extension}"));
        assert_eq!(super::VERSION.text, extension);
    }
}
