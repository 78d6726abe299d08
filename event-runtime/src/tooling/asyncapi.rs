//! An [AsyncAPI 3.0.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0) document
//! for an app: a channel per topic, a `receive` operation per handler, a `send` operation per
//! event type the app publishes, and the JSON Schema of every event as a message payload.
//!
//! ```
//! use event_runtime::schema::SchemaEntry;
//! use event_runtime::tooling::asyncapi::asyncapi;
//!
//! let mut created = SchemaEntry::new(
//!     "todo::TaskCreated",
//!     ["task.created"],
//!     "1.0",
//!     serde_json::json!({"type": "object", "required": ["task_id"]}),
//! );
//! created.published_to = vec!["task-events".into()];
//! let doc = asyncapi("Todo", &[], &[created]);
//! assert_eq!(doc["asyncapi"], "3.0.0");
//! assert_eq!(doc["channels"]["task-events"]["address"], "task-events");
//! assert_eq!(doc["operations"]["send.task-events.task.created"]["action"], "send");
//! ```

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::handler::def::RetryMode;
use crate::handler::registry::ResolvedHandler;
use crate::tooling::schema::SchemaEntry;

/// The AsyncAPI version written.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// `#/$defs/X` → `#/components/schemas/X`, everywhere in `v`.
fn rewrite_defs_refs(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    Value::String(r) if k == "$ref" && r.starts_with("#/$defs/") => {
                        *r = r.replacen("#/$defs/", "#/components/schemas/", 1);
                    }
                    _ => rewrite_defs_refs(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_defs_refs),
        _ => {}
    }
}

/// A key usable in `channels`, `operations` and `components` (`^[a-zA-Z0-9.\-_]+$`): every
/// other character becomes `_`, and `::` becomes `.`.
///
/// ```
/// use event_runtime::tooling::asyncapi::key;
/// assert_eq!(key("task.completed"), "task.completed");
/// assert_eq!(key("app::handlers::on_x"), "app.handlers.on_x");
/// assert_eq!(key("a b/c~d"), "a_b_c_d");
/// ```
pub fn key(s: &str) -> String {
    let s = s.replace("::", ".");
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".to_owned()
    } else {
        out
    }
}

/// The AsyncAPI 3.0.0 document of an app whose handlers are `handlers` and whose event types
/// are `schemas`:
/// - `channels`: one per topic a handler receives from or an event is published to, `address`
///   the topic, `messages` one per event type (a `$ref` to `components/messages`);
/// - `operations`: `receive.<handler>` per handler (with its pubsub, route, retries and DLQ
///   under `x-event-runtime`), `send.<topic>.<type>` per published topic and type;
/// - `components.messages`: one per event type, `payload` a `$ref` to
///   `components/schemas/<rust name>`, CloudEvent attributes as `headers`, the CloudEvent `id`
///   as `correlationId`;
/// - `components.schemas`: each event's JSON Schema, and `CloudEventAttributes`.
///
/// An event type a handler takes but no schema describes gets a message with an open object
/// payload. `info.version` is `1.0.0`; set `doc["info"]["version"]` to your own.
pub fn asyncapi(app_title: &str, handlers: &[ResolvedHandler], schemas: &[SchemaEntry]) -> Value {
    let mut doc = Builder::new(schemas);
    for h in handlers {
        doc.add_receive(h);
    }
    for s in schemas {
        doc.add_sends(s);
    }
    doc.finish(app_title)
}

/// The document while it is written: the schemas it describes, and what is filled in so far.
struct Builder<'s> {
    schemas: &'s [SchemaEntry],
    /// Event type → the schemas describing it (one per version).
    versions: BTreeMap<&'s str, Vec<usize>>,
    /// Each schema's key under `components.schemas`.
    schema_keys: Vec<String>,
    /// `components.messages`.
    messages: Map<String, Value>,
    /// Channel key → (address, message keys).
    channels: BTreeMap<String, (String, Vec<String>)>,
    /// `operations`.
    operations: Map<String, Value>,
}

impl<'s> Builder<'s> {
    /// An empty document for `schemas`.
    fn new(schemas: &'s [SchemaEntry]) -> Self {
        Builder {
            schemas,
            versions: versions_by_type(schemas),
            schema_keys: schema_keys(schemas),
            messages: Map::new(),
            channels: BTreeMap::new(),
            operations: Map::new(),
        }
    }

    /// The schema for a type at a version: that version's, else the only one there is.
    fn schema_for(&self, ty: &str, version: Option<&str>) -> Option<usize> {
        let candidates = self.versions.get(ty)?;
        candidates
            .iter()
            .copied()
            .find(|&i| Some(self.schemas[i].version.as_str()) == version)
            .or_else(|| (candidates.len() == 1).then(|| candidates[0]))
    }

    /// A message's key: the type, with the version appended when the type has several.
    fn message_key(&self, ty: &str, version: Option<&str>) -> String {
        match version {
            Some(v) if self.versions.get(ty).is_some_and(|c| c.len() > 1) => {
                format!("{}.v{}", key(ty), key(v))
            }
            _ => key(ty),
        }
    }

    /// The message of `ty` at `version`, added to `components.messages` when new; its key.
    fn add_message(&mut self, ty: &str, version: Option<&str>) -> String {
        let schema = self.schema_for(ty, version);
        let schemas = self.schemas;
        let version = schema.map(|i| schemas[i].version.as_str()).or(version);
        let k = self.message_key(ty, version);
        if !self.messages.contains_key(&k) {
            let (title, payload) = match schema {
                Some(i) => (
                    schemas[i].name().to_owned(),
                    json!({"$ref": format!("#/components/schemas/{}", self.schema_keys[i])}),
                ),
                None => (ty.to_owned(), json!({"type": "object"})),
            };
            self.messages
                .insert(k.clone(), message(ty, title, payload, version));
        }
        k
    }

    /// The channel of `topic`, added when new, with message `msg` when given; its key.
    fn add_to_channel(&mut self, topic: &str, msg: Option<&str>) -> String {
        let ck = key(topic);
        let entry = self
            .channels
            .entry(ck.clone())
            .or_insert_with(|| (topic.to_owned(), Vec::new()));
        if let Some(msg) = msg {
            if !entry.1.iter().any(|m| m == msg) {
                entry.1.push(msg.to_owned());
            }
        }
        ck
    }

    /// The `receive` operation of handler `h`, with its channel and messages.
    fn add_receive(&mut self, h: &ResolvedHandler) {
        let def = h.def;
        let ck = self.add_to_channel(def.topic, None);
        let mut refs = Vec::new();
        for ty in def.event_types {
            let mk = self.add_message(ty, Some(def.event_version));
            self.add_to_channel(def.topic, Some(&mk));
            refs.push(message_ref(&ck, &mk));
        }
        let retry = json!({
            "delaysSecs": def.retry,
            "mode": match def.retry_mode { RetryMode::Delayed => "delayed", RetryMode::Inline => "inline" },
        });
        self.operations.insert(
            format!("receive.{}", key(&def.qualified_name())),
            json!({
                "action": "receive",
                "channel": {"$ref": format!("#/channels/{ck}")},
                "summary": format!("Handled by `{}`.", def.qualified_name()),
                "messages": refs,
                "x-event-runtime": {
                    "handler": def.qualified_name(),
                    "pubsub": h.pubsub,
                    "route": h.route,
                    "deadLetterTopic": h.dlq,
                    "retry": retry,
                    "idempotent": def.idempotent,
                },
            }),
        );
    }

    /// The `send` operations of event `s`: one per topic it is published to and type.
    fn add_sends(&mut self, s: &SchemaEntry) {
        for topic in &s.published_to {
            for ty in &s.event_types {
                let mk = self.add_message(ty, Some(&s.version));
                let ck = self.add_to_channel(topic, Some(&mk));
                self.operations.insert(
                    format!("send.{ck}.{mk}"),
                    json!({
                        "action": "send",
                        "channel": {"$ref": format!("#/channels/{ck}")},
                        "summary": format!("Publishes `{ty}` ({}).", s.name()),
                        "messages": [message_ref(&ck, &mk)],
                    }),
                );
            }
        }
    }

    /// The whole document, titled `app_title`.
    fn finish(self, app_title: &str) -> Value {
        json!({
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": app_title,
                "version": "1.0.0",
                "description": format!("Events of {app_title}, as CloudEvents over Dapr pub/sub."),
            },
            "defaultContentType": "application/json",
            "channels": channels(self.channels),
            "operations": self.operations,
            "components": {
                "messages": self.messages,
                "schemas": components_schemas(self.schemas, &self.schema_keys),
            },
        })
    }
}

/// Event type → the schemas describing it (one per version).
fn versions_by_type(schemas: &[SchemaEntry]) -> BTreeMap<&str, Vec<usize>> {
    let mut versions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in schemas.iter().enumerate() {
        for ty in &s.event_types {
            versions.entry(ty.as_str()).or_default().push(i);
        }
    }
    versions
}

/// Component keys: the Rust name, with the version appended when two schemas share it.
fn schema_keys(schemas: &[SchemaEntry]) -> Vec<String> {
    schemas
        .iter()
        .map(|s| {
            let k = key(s.name());
            let shared = schemas
                .iter()
                .any(|o| key(o.name()) == k && o.version != s.version);
            if shared {
                format!("{k}.v{}", key(&s.version))
            } else {
                k
            }
        })
        .collect()
}

/// `components.schemas`: `CloudEventAttributes`, then each event's schema under its key.
fn components_schemas(schemas: &[SchemaEntry], schema_keys: &[String]) -> Map<String, Value> {
    let mut components_schemas = Map::new();
    components_schemas.insert("CloudEventAttributes".into(), cloud_event_attributes());
    for (s, k) in schemas.iter().zip(schema_keys) {
        // schemars puts nested types under the schema's own `$defs` and refers to them as
        // `#/$defs/X`: hoist them into `components.schemas` so the refs resolve in the document.
        let mut schema = s.schema.clone();
        if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|o| o.remove("$defs")) {
            for (name, mut def) in defs {
                rewrite_defs_refs(&mut def);
                components_schemas.entry(name).or_insert(def);
            }
        }
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
        }
        rewrite_defs_refs(&mut schema);
        components_schemas.entry(k.clone()).or_insert(schema);
    }
    components_schemas
}

/// A message of CloudEvent type `ty`, its `payload` and `title`, and its version when known.
fn message(ty: &str, title: String, payload: Value, version: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(ty));
    m.insert("title".into(), json!(title));
    m.insert(
        "summary".into(),
        json!(format!("CloudEvent of type `{ty}`.")),
    );
    m.insert("contentType".into(), json!("application/json"));
    m.insert(
        "headers".into(),
        json!({"$ref": "#/components/schemas/CloudEventAttributes"}),
    );
    m.insert(
        "correlationId".into(),
        json!({"description": "The CloudEvent id.", "location": "$message.header#/id"}),
    );
    m.insert("payload".into(), payload);
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        m.insert("x-event-version".into(), json!(v));
    }
    Value::Object(m)
}

/// A `$ref` to message `mk` of channel `ck`.
fn message_ref(ck: &str, mk: &str) -> Value {
    json!({"$ref": format!("#/channels/{ck}/messages/{mk}")})
}

/// `channels`: each with its address and `$ref`s to its messages.
fn channels(channels: BTreeMap<String, (String, Vec<String>)>) -> Map<String, Value> {
    channels
        .into_iter()
        .map(|(ck, (address, msgs))| {
            let msgs: Map<String, Value> = msgs
                .into_iter()
                .map(|mk| {
                    let r = json!({"$ref": format!("#/components/messages/{mk}")});
                    (mk, r)
                })
                .collect();
            (ck, json!({"address": address, "messages": msgs}))
        })
        .collect()
}

/// The CloudEvent attributes that travel with each message.
fn cloud_event_attributes() -> Value {
    json!({
        "type": "object",
        "required": ["id", "source", "type", "specversion"],
        "properties": {
            "id": {"type": "string", "description": "Event id; redeliveries and retries keep it."},
            "source": {"type": "string", "description": "The publishing app."},
            "type": {"type": "string", "description": "The event type."},
            "specversion": {"type": "string", "const": "1.0"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"type": "string"},
            "traceparent": {"type": "string", "description": "W3C trace context."},
            "tracestate": {"type": "string"},
            "partitionKey": {"type": "string", "description": "Kafka record key."},
        },
    })
}

/// The AsyncAPI document of `handlers`, with every registered event type's schema and the
/// declared publish targets.
pub(crate) fn document(
    app_id: &str,
    handlers: &[ResolvedHandler],
    published: &[crate::tooling::scopes::Published],
) -> serde_json::Value {
    let mut schemas = crate::tooling::schema::schemas();
    for entry in &mut schemas {
        entry.published_to = published
            .iter()
            .filter(|p| entry.event_types.iter().any(|t| t == p.event_type))
            .map(|p| p.topic.clone())
            .collect();
    }
    asyncapi(app_id, handlers, &schemas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::def::HandlerDef;
    use crate::handler::registry::Registry;

    fn noop(_: crate::Delivery) -> futures::future::BoxFuture<'static, crate::Outcome> {
        Box::pin(async { crate::Outcome::Success })
    }

    static ON_TASK: HandlerDef = HandlerDef {
        event_types: &["task.created", "task.deleted"],
        event_type_name: "TaskEvent",
        retry: &[30, 300],
        idempotent: true,
        ..HandlerDef::new("on_task", "todo::handlers", "task-events", noop)
    };
    static ON_REMINDER: HandlerDef = HandlerDef {
        event_types: &["reminder.due"],
        event_type_name: "ReminderDue",
        ..HandlerDef::new("on_reminder", "todo::handlers", "reminders", noop)
    };
    static ON_UNKNOWN: HandlerDef = HandlerDef {
        event_types: &["audit/Entry v2"],
        ..HandlerDef::new("on_audit", "todo::audit", "audit", noop)
    };

    fn entry(
        rust_type: &str,
        types: &[&str],
        version: &str,
        schema: Value,
        topics: &[&str],
    ) -> SchemaEntry {
        let mut entry = SchemaEntry::new(rust_type, types.iter().copied(), version, schema);
        entry.published_to = topics.iter().map(|t| (*t).to_owned()).collect();
        entry
    }

    fn schemas() -> Vec<SchemaEntry> {
        vec![
            entry(
                "todo::TaskEvent",
                &["task.created", "task.deleted"],
                "1.0",
                json!({"oneOf": [{"type": "object"}, {"type": "object"}]}),
                &["task-events"],
            ),
            entry(
                "todo::ReminderDue",
                &["reminder.due"],
                "1.1",
                json!({"type": "object", "properties": {"task_id": {"type": "integer"}}}),
                &["reminders", "notifications"],
            ),
        ]
    }

    fn document() -> Value {
        let reg = Registry::resolve_app(
            &[&ON_TASK, &ON_REMINDER, &ON_UNKNOWN],
            crate::config::DEFAULT_APP_ID,
            "kafka-pubsub",
            "dlq",
        )
        .unwrap();
        asyncapi("Todo service", &reg.handlers, &schemas())
    }

    /// Resolves a local `$ref` (`#/a/b`) with JSON Pointer unescaping.
    fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
        doc.pointer(r.strip_prefix('#')?)
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn top_level_structure() {
        let doc = document();
        assert_eq!(doc["asyncapi"], "3.0.0");
        assert_eq!(doc["info"]["title"], "Todo service");
        assert!(doc["info"]["version"].is_string());
        for k in ["channels", "operations", "components"] {
            assert!(doc[k].is_object(), "{k}");
        }
        assert!(doc["components"]["messages"].is_object());
        assert!(doc["components"]["schemas"].is_object());
    }

    #[test]
    fn every_ref_resolves() {
        let doc = document();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 10);
        for r in refs {
            assert!(r.starts_with("#/"), "{r}");
            assert!(resolve(&doc, &r).is_some(), "unresolved {r}");
        }
    }

    #[test]
    fn operations_reference_their_channels_messages() {
        let doc = document();
        let ops = doc["operations"].as_object().unwrap();
        for (name, op) in ops {
            let action = op["action"].as_str().unwrap();
            assert!(matches!(action, "send" | "receive"), "{name}");
            let ch = op["channel"]["$ref"].as_str().unwrap();
            let ch_prefix = format!("{ch}/messages/");
            assert!(resolve(&doc, ch).is_some(), "{name}: {ch}");
            for m in op["messages"].as_array().unwrap() {
                let r = m["$ref"].as_str().unwrap();
                assert!(r.starts_with(&ch_prefix), "{name}: {r} not in {ch}");
            }
        }
        let recv = &ops["receive.todo.handlers.on_task"];
        assert_eq!(recv["channel"]["$ref"], "#/channels/task-events");
        assert_eq!(recv["messages"].as_array().unwrap().len(), 2);
        assert_eq!(recv["x-event-runtime"]["deadLetterTopic"], "dlq");
        assert_eq!(
            recv["x-event-runtime"]["retry"]["delaysSecs"],
            json!([30, 300])
        );
        assert_eq!(
            ops["send.notifications.reminder.due"]["channel"]["$ref"],
            "#/channels/notifications"
        );
        assert!(ops.contains_key("send.task-events.task.deleted"));
        assert!(ops.contains_key("receive.todo.audit.on_audit"));
    }

    static ON_ARCHIVED: HandlerDef = HandlerDef {
        event_types: &["task.archived"],
        event_version: "1.2",
        ..HandlerDef::new("on_archived", "todo::handlers", "task-events", noop)
    };

    #[test]
    fn several_versions_of_one_type_get_one_message_each() {
        let reg = Registry::resolve_app(
            &[&ON_ARCHIVED],
            crate::config::DEFAULT_APP_ID,
            "kafka-pubsub",
            "dlq",
        )
        .unwrap();
        let schema = |version: &str, prop: &str| {
            entry(
                "todo::TaskArchived",
                &["task.archived"],
                version,
                json!({"type": "object", "required": [prop]}),
                &["task-events"],
            )
        };
        let doc = asyncapi(
            "Todo",
            &reg.handlers,
            &[schema("1.1", "old"), schema("1.2", "new")],
        );
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        for r in &refs {
            assert!(resolve(&doc, r).is_some(), "unresolved {r}");
        }
        let msgs = &doc["components"]["messages"];
        assert_eq!(
            msgs["task.archived.v1.1"]["payload"]["$ref"],
            "#/components/schemas/TaskArchived.v1.1"
        );
        assert_eq!(msgs["task.archived.v1.2"]["x-event-version"], "1.2");
        assert_eq!(
            doc["components"]["schemas"]["TaskArchived.v1.2"]["required"],
            json!(["new"])
        );
        let recv = &doc["operations"]["receive.todo.handlers.on_archived"];
        assert_eq!(
            recv["messages"],
            json!([{"$ref": "#/channels/task-events/messages/task.archived.v1.2"}])
        );
        assert_eq!(
            doc["channels"]["task-events"]["messages"]
                .as_object()
                .unwrap()
                .len(),
            2
        );
        assert!(doc["operations"]
            .as_object()
            .unwrap()
            .contains_key("send.task-events.task.archived.v1.1"));
    }

    #[test]
    fn channels_messages_and_schemas() {
        let doc = document();
        let ch = &doc["channels"];
        assert_eq!(ch["task-events"]["address"], "task-events");
        assert_eq!(
            ch["task-events"]["messages"]["task.created"]["$ref"],
            "#/components/messages/task.created"
        );
        assert_eq!(ch["notifications"]["address"], "notifications");
        let msgs = &doc["components"]["messages"];
        let created = &msgs["task.created"];
        assert_eq!(created["name"], "task.created");
        assert_eq!(created["title"], "TaskEvent");
        assert_eq!(created["contentType"], "application/json");
        assert_eq!(created["payload"]["$ref"], "#/components/schemas/TaskEvent");
        assert_eq!(msgs["reminder.due"]["x-event-version"], "1.1");
        // A type without a schema: sanitized key, open payload.
        let odd = &msgs["audit_Entry_v2"];
        assert_eq!(odd["name"], "audit/Entry v2");
        assert_eq!(odd["payload"]["type"], "object");
        let key_ok = |k: &str| {
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        for section in [
            &doc["channels"],
            &doc["operations"],
            msgs,
            &doc["components"]["schemas"],
        ] {
            for k in section.as_object().unwrap().keys() {
                assert!(key_ok(k), "{k}");
            }
        }
        assert_eq!(
            doc["components"]["schemas"]["ReminderDue"]["properties"]["task_id"]["type"],
            "integer"
        );
    }
}
