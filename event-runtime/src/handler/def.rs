//! The registration each `#[event_handler]` submits, and what the runtime resolves it into.

use futures::future::BoxFuture;

use crate::event::outcome::Outcome;
use crate::event::Event;
use crate::handler::delivery::{Delivery, EventArg};

/// The generated adapter: decodes the delivery, calls the user's function, maps its result.
pub(crate) type HandlerFn = fn(Delivery) -> BoxFuture<'static, Outcome>;

/// The generated adapter of a batch handler: one call for a bulk delivery's events, one
/// outcome per event, in order.
pub(crate) type BatchFn = fn(Vec<Delivery>) -> BoxFuture<'static, Vec<Outcome>>;

/// How failed runs are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// Acknowledge the delivery and re-publish the event to a retry topic, run when due
    /// (non-blocking; the key's later events wait for it unless the handler is `unordered`).
    Delayed,
    /// Wait and run again in place, holding the delivery (keeps per-key order; short schedules only).
    Inline,
}

/// What a handler that keeps per-key order does with a key's later events once an earlier one
/// is dead-lettered (`on_dead_letter = "release" | "hold"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDeadLetter {
    /// Run them, in their order: the key keeps flowing, without the dead-lettered event.
    Release,
    /// Keep them parked until the dead letter is replayed and succeeds.
    Hold,
}

/// Dapr bulk-subscribe settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkConfig {
    /// `maxMessagesCount`.
    pub max_messages: u32,
    /// `maxAwaitDurationMs`.
    pub max_await_ms: u32,
}

/// The longest total inline retry schedule, in seconds: past this a delivery would be held so
/// long that Dapr's or Kafka's own timeouts fight ours, so such schedules must be delayed.
/// `#[event_handler]` checks it at compile time with a copy (`event-macros/src/mirror.rs`) that
/// `tests/tests/macro_mirror.rs` keeps equal to this one.
pub const INLINE_RETRY_LIMIT_SECS: u64 = 60;

/// One registered handler, as `#[event_handler]` submits it (a `const` value).
///
/// Built with `const` builder methods so that the generated registration reads like a sentence.
#[derive(Debug, Clone, Copy)]
pub struct HandlerDef {
    /// The function's name.
    pub(crate) name: &'static str,
    /// `module_path!()` of the function.
    pub(crate) module: &'static str,
    /// Explicit pubsub component name (else the app-wide default).
    pub(crate) pubsub: Option<&'static str>,
    /// The topic.
    pub(crate) topic: &'static str,
    /// Explicit route (else derived from topic and function name).
    pub(crate) route: Option<&'static str>,
    /// CloudEvent types the handler's event type accepts.
    pub(crate) event_types: &'static [&'static str],
    /// The tag field of an internally tagged enum event.
    pub(crate) event_tag: Option<&'static str>,
    /// The event's schema version.
    pub(crate) event_version: &'static str,
    /// Field names of the event (for key templates).
    pub(crate) event_fields: &'static [&'static str],
    /// The Rust name of the event type, for messages.
    pub(crate) event_type_name: &'static str,
    /// Delays in seconds between attempts; empty means no retries.
    pub(crate) retry: &'static [u64],
    /// Inline or delayed retries.
    pub(crate) retry_mode: RetryMode,
    /// Dead-letter topic (else the app-wide default).
    pub(crate) dlq: Option<&'static str>,
    /// Whether the handler runs at most once per idempotency key.
    pub(crate) idempotent: bool,
    /// Key template (else the CloudEvent id).
    pub(crate) idempotency_key: Option<&'static str>,
    /// Bulk subscription.
    pub(crate) bulk: Option<BulkConfig>,
    /// Subscribe with `rawPayload`.
    pub(crate) raw_payload: bool,
    /// Extra subscription metadata.
    pub(crate) metadata: &'static [(&'static str, &'static str)],
    /// Per-run timeout in seconds (else the app-wide default).
    pub(crate) timeout_secs: Option<u64>,
    /// At most this many deliveries run at once, in lanes by partition key (else no limit).
    pub(crate) concurrency: Option<u32>,
    /// Delayed retries give up per-key order (`unordered`).
    pub(crate) unordered: bool,
    /// What a dead-lettered event does to its key's later events (`on_dead_letter`).
    pub(crate) after_dead_letter: AfterDeadLetter,
    /// Reads a body whose data is this handler's event type in one pass (set by
    /// [`HandlerDef::event`]).
    #[doc(hidden)]
    pub(crate) read_typed: Option<crate::wire::cloudevent::ReadTyped>,
    /// The fields an `idempotency_key` template is rendered over: the handler's event as it reads
    /// it (upcast from an older version), as JSON (set by [`HandlerDef::idempotency_key()`]).
    #[doc(hidden)]
    pub(crate) key_fields:
        Option<fn(&crate::wire::cloudevent::CloudEvent) -> Option<serde_json::Value>>,
    /// The generated adapter.
    pub(crate) call: HandlerFn,
    /// The generated batch adapter, for a handler whose first argument is `Vec<T>` or
    /// `Batch<T>` (set by [`HandlerDef::batch`]).
    #[doc(hidden)]
    pub(crate) call_batch: Option<BatchFn>,
}

impl HandlerDef {
    /// A handler of `topic` with every option at its default.
    pub const fn new(
        name: &'static str,
        module: &'static str,
        topic: &'static str,
        call: HandlerFn,
    ) -> Self {
        HandlerDef {
            name,
            module,
            pubsub: None,
            topic,
            route: None,
            event_types: &[],
            event_tag: None,
            event_version: "",
            event_fields: &[],
            event_type_name: "",
            retry: &[],
            retry_mode: RetryMode::Delayed,
            dlq: None,
            idempotent: false,
            idempotency_key: None,
            bulk: None,
            raw_payload: false,
            metadata: &[],
            timeout_secs: None,
            concurrency: None,
            unordered: false,
            after_dead_letter: AfterDeadLetter::Release,
            read_typed: None,
            key_fields: None,
            call,
            call_batch: None,
        }
    }

    /// Takes the event description from the handler's first argument (an event or an envelope).
    pub const fn event<A: EventArg>(mut self, type_name: &'static str) -> Self {
        self.event_types = <A::Event as Event>::TYPES;
        self.event_tag = <A::Event as Event>::TAG;
        self.event_version = <A::Event as Event>::VERSION;
        self.event_fields = <A::Event as Event>::FIELDS;
        self.event_type_name = type_name;
        self.read_typed = Some(crate::wire::cloudevent::read_typed::<A::Event>);
        self
    }

    /// Sets the pubsub component.
    pub const fn pubsub(mut self, pubsub: &'static str) -> Self {
        self.pubsub = Some(pubsub);
        self
    }

    /// Sets the route.
    pub const fn route(mut self, route: &'static str) -> Self {
        self.route = Some(route);
        self
    }

    /// Sets the retry schedule (seconds between attempts).
    pub const fn retry(mut self, delays: &'static [u64]) -> Self {
        self.retry = delays;
        self
    }

    /// Sets the retry mode.
    pub const fn retry_mode(mut self, mode: RetryMode) -> Self {
        self.retry_mode = mode;
        self
    }

    /// Sets the dead-letter topic.
    pub const fn dlq(mut self, topic: &'static str) -> Self {
        self.dlq = Some(topic);
        self
    }

    /// Makes the handler idempotent, keyed by `key` (a template) or by the CloudEvent id. A
    /// template given here is rendered over the data as it arrived; see
    /// [`HandlerDef::idempotency_key()`].
    pub const fn idempotent(mut self, key: Option<&'static str>) -> Self {
        self.idempotent = true;
        self.idempotency_key = key;
        self
    }

    /// Makes the handler idempotent, keyed by `template` rendered over the event as the handler
    /// reads it (its first argument's event type, upcast from an older version). Only handlers
    /// with a template compile that rendering.
    pub const fn idempotency_key<A: EventArg>(mut self, template: &'static str) -> Self {
        self.key_fields = Some(crate::event::version::fields_of::<A::Event>);
        self.idempotent(Some(template))
    }

    /// Subscribes in bulk.
    pub const fn bulk(mut self, max_messages: u32, max_await_ms: u32) -> Self {
        self.bulk = Some(BulkConfig {
            max_messages,
            max_await_ms,
        });
        self
    }

    /// Subscribes with `rawPayload`.
    pub const fn raw_payload(mut self) -> Self {
        self.raw_payload = true;
        self
    }

    /// Adds subscription metadata.
    pub const fn metadata(mut self, metadata: &'static [(&'static str, &'static str)]) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the per-run timeout.
    pub const fn timeout_secs(mut self, secs: u64) -> Self {
        self.timeout_secs = Some(secs);
        self
    }

    /// Runs at most `n` deliveries at once, in `n` lanes chosen by partition key, so that the
    /// events of one key keep their order (`n` is at least 1; 0 counts as 1).
    pub const fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(if n == 0 { 1 } else { n });
        self
    }

    /// Gives up per-key order on delayed retries: a key's later events run while an earlier
    /// one waits on the retry ladder.
    pub const fn unordered(mut self) -> Self {
        self.unordered = true;
        self
    }

    /// What a dead-lettered event does to its key's later events (default: release them).
    pub const fn on_dead_letter(mut self, then: AfterDeadLetter) -> Self {
        self.after_dead_letter = then;
        self
    }

    /// Whether a key's later events wait while an earlier one is on the retry ladder: delayed
    /// retries keep per-key order unless the handler is `unordered` (a batch handler runs a
    /// whole batch in one call, so it cannot hold one event back).
    pub(crate) fn keeps_order(&self) -> bool {
        self.retry_mode == RetryMode::Delayed
            && !self.retry.is_empty()
            && !self.unordered
            && self.call_batch.is_none()
    }

    /// Takes bulk deliveries whole, through `call` (a batch handler's; `call` then runs a
    /// single delivery as a batch of one).
    #[doc(hidden)]
    pub const fn batch(mut self, call: BatchFn) -> Self {
        self.call_batch = Some(call);
        self
    }

    /// The function's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The topic.
    pub fn topic(&self) -> &'static str {
        self.topic
    }

    /// `module_path!()` of the function.
    pub fn module(&self) -> &'static str {
        self.module
    }

    /// `module::function`.
    pub fn qualified_name(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }

    /// What the macro registered, as JSON: for the macro's own tests, which check each
    /// attribute's effect without the fields being public.
    #[doc(hidden)]
    pub fn registration(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "module": self.module, "pubsub": self.pubsub, "topic": self.topic,
            "route": self.route, "event_types": self.event_types, "event_tag": self.event_tag,
            "event_version": self.event_version, "event_fields": self.event_fields,
            "event_type_name": self.event_type_name, "retry": self.retry,
            "retry_mode": format!("{:?}", self.retry_mode), "dlq": self.dlq,
            "idempotent": self.idempotent, "idempotency_key": self.idempotency_key,
            "bulk": self.bulk.map(|b| serde_json::json!({
                "max_messages": b.max_messages, "max_await_ms": b.max_await_ms})),
            "raw_payload": self.raw_payload, "metadata": self.metadata,
            "timeout_secs": self.timeout_secs, "concurrency": self.concurrency,
            "batch": self.call_batch.is_some(), "unordered": self.unordered,
            "on_dead_letter": format!("{:?}", self.after_dead_letter),
        })
    }

    /// Whether this handler takes events of CloudEvent type `ty`.
    pub fn accepts(&self, ty: &str) -> bool {
        self.event_types.contains(&ty)
    }
}

inventory::collect!(HandlerDef);

/// Every handler registered in the program, in a stable order (module, then name).
pub fn registered() -> Vec<&'static HandlerDef> {
    let mut all: Vec<&'static HandlerDef> = inventory::iter::<HandlerDef>.into_iter().collect();
    all.sort_by(|a, b| (a.module, a.name).cmp(&(b.module, b.name)));
    all
}
