//! Finding and reading the contract file, and choosing the schema in it: the whole file for a
//! JSON Schema, or one message's payload for an AsyncAPI document.

use std::path::PathBuf;

use serde_json::Value;
use syn::LitStr;

use super::schema::Doc;
use crate::ctxt::Ctxt;

/// A contract, read.
pub struct Contract {
    /// The whole document (`$ref`s resolve against it).
    pub root: Value,
    /// The schema of the event's data.
    pub schema: Value,
    /// How messages name it: `contracts/task-event.schema.json (TaskEvent)`.
    pub view: String,
}

/// The contract file: `path` relative to the directory of the crate's `Cargo.toml`
/// (`CARGO_MANIFEST_DIR` while the macro expands), or absolute.
pub fn path(lit: &LitStr) -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(PathBuf::new, PathBuf::from);
    dir.join(lit.value())
}

/// Reads the contract at `lit` and chooses its schema; every problem is an error at `lit` or
/// at `message`.
pub fn load(cx: &Ctxt, lit: &LitStr, message: Option<&LitStr>) -> Option<Contract> {
    let shown = lit.value();
    let text = match std::fs::read_to_string(path(lit)) {
        Ok(text) => text,
        Err(err) => {
            cx.error_spanned_by(
                lit,
                format!("cannot read the contract \"{shown}\" (a path relative to this crate's Cargo.toml): {err}"),
            );
            return None;
        }
    };
    let root: Value = match serde_json::from_str(&text) {
        Ok(root) => root,
        Err(err) => {
            cx.error_spanned_by(
                lit,
                format!("the contract \"{shown}\" is not valid JSON: {err}"),
            );
            return None;
        }
    };
    let (schema, view) = if root.get("asyncapi").is_some() {
        let Some(message) = message else {
            cx.error_spanned_by(
                lit,
                format!(
                    "\"{shown}\" is an AsyncAPI document: name the message to check against, like `message = \"{}\"` (it has {})",
                    message_names(&root).first().map_or("TaskEvent", String::as_str),
                    listed(&message_names(&root))
                ),
            );
            return None;
        };
        let payload = asyncapi_payload(cx, &root, &shown, message)?;
        (payload, format!("{shown} (message {})", message.value()))
    } else {
        if let Some(message) = message {
            cx.error_spanned_by(
                message,
                format!("`message` chooses a message of an AsyncAPI document, but \"{shown}\" is a JSON Schema: remove `message`"),
            );
            return None;
        }
        let view = match root.get("title").and_then(Value::as_str) {
            Some(title) => format!("{shown} ({title})"),
            None => shown.clone(),
        };
        (root.clone(), view)
    };
    let doc = Doc::new(&root);
    if doc.objects(&schema).is_empty() {
        cx.error_spanned_by(
            message.unwrap_or(lit),
            format!("{view} is not the JSON Schema of an object: it has no `properties` to check the fields against"),
        );
        return None;
    }
    Some(Contract { root, schema, view })
}

/// The payload schema of message `name`, as AsyncAPI 2.x and 3.0 documents hold it.
fn asyncapi_payload(cx: &Ctxt, root: &Value, shown: &str, name: &LitStr) -> Option<Value> {
    let wanted = name.value();
    let doc = Doc::new(root);
    let found = messages(root)
        .into_iter()
        .map(|(key, message)| (key, doc.resolve(message)))
        .find(|(key, message)| names_of(key, message).contains(&wanted));
    let Some((_, message)) = found else {
        cx.error_spanned_by(
            name,
            format!(
                "\"{shown}\" has no message \"{wanted}\": it has {}",
                listed(&message_names(root))
            ),
        );
        return None;
    };
    let Some(payload) = message.get("payload") else {
        cx.error_spanned_by(
            name,
            format!("message \"{wanted}\" of \"{shown}\" has no `payload`"),
        );
        return None;
    };
    // AsyncAPI 3.0's multi-format schema: `{"schemaFormat": ..., "schema": {...}}`.
    let payload = match (payload.get("schemaFormat"), payload.get("schema")) {
        (Some(_), Some(schema)) => schema,
        _ => payload,
    };
    Some(payload.clone())
}

/// The messages of the document, by key: `components.messages`, then those written inline in
/// channels (2.x `publish`/`subscribe`, 3.0 `messages`).
fn messages(root: &Value) -> Vec<(String, &Value)> {
    let mut out: Vec<(String, &Value)> = Vec::new();
    if let Some(Value::Object(components)) = root.pointer("/components/messages") {
        out.extend(components.iter().map(|(k, m)| (k.clone(), m)));
    }
    if let Some(Value::Object(channels)) = root.get("channels") {
        for channel in channels.values() {
            for op in ["publish", "subscribe"] {
                if let Some(message) = channel.get(op).and_then(|o| o.get("message")) {
                    match message.get("oneOf").and_then(Value::as_array) {
                        Some(all) => out.extend(all.iter().map(|m| (String::new(), m))),
                        None => out.push((String::new(), message)),
                    }
                }
            }
            if let Some(Value::Object(inline)) = channel.get("messages") {
                out.extend(inline.iter().map(|(k, m)| (k.clone(), m)));
            }
        }
    }
    out
}

/// The names a message answers to: its key, `name`, `title`, `messageId`, and the name of
/// the schema its payload refers to (FastStream names messages after handlers, and their
/// payloads after the Pydantic model).
fn names_of(key: &str, message: &Value) -> Vec<String> {
    let mut names = vec![key.to_owned()];
    for field in ["name", "title", "messageId"] {
        if let Some(name) = message.get(field).and_then(Value::as_str) {
            names.push(name.to_owned());
        }
    }
    if let Some(reference) = message.pointer("/payload/$ref").and_then(Value::as_str) {
        if let Some((_, last)) = reference.rsplit_once('/') {
            names.push(last.to_owned());
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn message_names(root: &Value) -> Vec<String> {
    let mut names: Vec<String> = messages(root)
        .into_iter()
        .filter_map(|(key, message)| names_of(&key, message).into_iter().next())
        .collect();
    names.dedup();
    names
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        return "no messages".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    quoted.join(", ")
}
