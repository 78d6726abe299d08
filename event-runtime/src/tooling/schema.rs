//! The schema registry: every `#[derive(Event)]` type, its CloudEvent types, version and JSON
//! Schema, and the topics it is consumed from.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::config::Config;
use crate::handler::registry::AppError;

/// One event type as `#[derive(Event)]` registers it.
#[derive(Debug, Clone, Copy)]
pub struct EventDef {
    /// The Rust type's name.
    pub rust_name: &'static str,
    /// `module_path!()` of the type.
    pub module: &'static str,
    /// CloudEvent types.
    pub types: &'static [&'static str],
    /// `major.minor`.
    pub version: &'static str,
    /// JSON Schema of the data.
    pub schema: fn() -> serde_json::Value,
    /// The older type it upcasts from, if any.
    pub upcast_from: Option<&'static str>,
}

inventory::collect!(EventDef);

/// One event type's schema: an entry of [`schemas`], and what an AsyncAPI document
/// ([`asyncapi`](crate::tooling::asyncapi::asyncapi)) describes.
///
/// ```
/// use event_runtime::schema::SchemaEntry;
///
/// let entry = SchemaEntry::new("todo::TaskArchived", ["task.archived"], "1.2", serde_json::json!({}));
/// assert_eq!(entry.name(), "TaskArchived");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SchemaEntry {
    /// The Rust type (`module::Name`).
    pub rust_type: String,
    /// CloudEvent types (one for a struct, one per variant of an enum).
    pub event_types: Vec<String>,
    /// `major.minor`.
    pub version: String,
    /// Topics the program's handlers consume it from.
    pub consumed_from: Vec<String>,
    /// Topics the app declares it publishes it to (`App::publishes`). Only an app knows them:
    /// empty in [`schemas`], filled in the app's AsyncAPI document.
    pub published_to: Vec<String>,
    /// The older Rust type it upcasts from.
    pub upcast_from: Option<String>,
    /// JSON Schema of the data.
    pub schema: serde_json::Value,
}

impl SchemaEntry {
    /// An entry consumed from and published to no topic, upcast from nothing.
    pub fn new(
        rust_type: impl Into<String>,
        event_types: impl IntoIterator<Item = impl Into<String>>,
        version: impl Into<String>,
        schema: serde_json::Value,
    ) -> Self {
        SchemaEntry {
            rust_type: rust_type.into(),
            event_types: event_types.into_iter().map(Into::into).collect(),
            version: version.into(),
            consumed_from: Vec::new(),
            published_to: Vec::new(),
            upcast_from: None,
            schema,
        }
    }

    /// The type's name without its module (`TaskArchived`).
    pub fn name(&self) -> &str {
        self.rust_type
            .rsplit("::")
            .next()
            .unwrap_or(&self.rust_type)
    }
}

pub(crate) fn defs() -> Vec<&'static EventDef> {
    let mut all: Vec<&'static EventDef> = inventory::iter::<EventDef>.into_iter().collect();
    all.sort_by_key(|d| (d.types.first().copied(), d.version, d.module, d.rust_name));
    all
}

/// Every registered event type, with its schema and the topics handlers consume it from.
///
/// ```
/// use event_runtime::Event;
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.archived", version = "1.2")]
/// pub struct TaskArchived { pub task_id: i64, pub user_id: String }
///
/// let all = event_runtime::schema::schemas();
/// let entry = all.iter().find(|s| s.event_types == ["task.archived"]).unwrap();
/// assert_eq!(entry.version, "1.2");
/// ```
pub fn schemas() -> Vec<SchemaEntry> {
    let handlers = crate::handler::def::registered();
    defs()
        .into_iter()
        .map(|d| {
            let consumed_from: BTreeSet<String> = handlers
                .iter()
                .filter(|h| h.event_types == d.types && h.event_version == d.version)
                .map(|h| h.topic.to_owned())
                .collect();
            let rust_type = format!("{}::{}", d.module, d.rust_name);
            let mut entry =
                SchemaEntry::new(rust_type, d.types.iter().copied(), d.version, (d.schema)());
            entry.consumed_from = consumed_from.into_iter().collect();
            entry.upcast_from = d.upcast_from.map(str::to_owned);
            entry
        })
        .collect()
}

/// Two Rust types must not claim one CloudEvent type at one version: a reader could not know
/// which schema the data follows. Only the whole program sees every type, so this is checked when
/// an app starts.
pub fn check_unique() -> Result<(), AppError> {
    let all = defs();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if a.version != b.version {
                continue;
            }
            if let Some(ty) = a.types.iter().find(|t| b.types.contains(t)) {
                return Err(AppError::DuplicateEventVersion {
                    event_type: (*ty).to_owned(),
                    version: a.version.to_owned(),
                    first: format!("{}::{}", a.module, a.rust_name),
                    second: format!("{}::{}", b.module, b.rust_name),
                });
            }
        }
    }
    Ok(())
}

/// The current schemas as a snapshot: `{"<type>@<version>": <schema>}`, stable order.
pub fn snapshot() -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for entry in schemas() {
        for ty in &entry.event_types {
            map.insert(format!("{ty}@{}", entry.version), entry.schema.clone());
        }
    }
    serde_json::Value::Object(map)
}

/// The breaking changes from snapshot `old` to snapshot `new`: for each event type and major
/// version in both, a removed or retyped property, or a property that became required. A change
/// under a raised major version is not breaking: that is what major versions are for.
///
/// ```
/// use serde_json::json;
/// use event_runtime::schema::breaking_changes;
///
/// let old = json!({"task.completed@1.0": {"properties": {"task_id": {"type": "integer"}}, "required": ["task_id"]}});
/// let retyped = json!({"task.completed@1.1": {"properties": {"task_id": {"type": "string"}}, "required": ["task_id"]}});
/// assert_eq!(breaking_changes(&old, &retyped).len(), 1);
/// let new_major = json!({"task.completed@2.0": {"properties": {"task_id": {"type": "string"}}}});
/// assert!(breaking_changes(&old, &new_major).is_empty());
/// ```
pub fn breaking_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let split = |k: &str| -> Option<(String, u64)> {
        let (ty, version) = k.rsplit_once('@')?;
        Some((ty.to_owned(), crate::event::version::major(version)?))
    };
    let empty = serde_json::Map::new();
    let (old, new) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut out = Vec::new();
    for (new_key, new_schema) in new {
        let Some((ty, major)) = split(new_key) else {
            continue;
        };
        for (old_key, old_schema) in old {
            if split(old_key) != Some((ty.clone(), major)) {
                continue;
            }
            let (Some(old_object), Some(new_object)) =
                (object_of(old_schema, &ty), object_of(new_schema, &ty))
            else {
                continue;
            };
            for (name, old_prop) in &old_object.properties {
                match new_object.properties.get(name) {
                    None => out.push(format!(
                        "{new_key}: property `{name}` of {old_key} was removed"
                    )),
                    Some(p) if p.get("type") != old_prop.get("type") => out.push(format!(
                        "{new_key}: property `{name}` changed type from {} to {}",
                        old_prop.get("type").unwrap_or(&Value::Null),
                        p.get("type").unwrap_or(&Value::Null)
                    )),
                    Some(_) => {}
                }
            }
            for name in &new_object.required {
                if !old_object.required.contains(name) {
                    out.push(format!("{new_key}: property `{name}` is newly required"));
                }
            }
        }
    }
    out
}

/// What the data of one event type holds: its properties and the names it requires.
#[derive(Default)]
struct Object<'a> {
    properties: std::collections::BTreeMap<&'a str, &'a serde_json::Value>,
    required: Vec<&'a str>,
}

/// The object event type `ty` follows in `schema`: the schema itself, or for an enum the branch
/// of its `oneOf` whose tag is `ty`, with what `$ref` and `allOf` bring in (as schemars writes a
/// variant that holds a body). `None` when no one branch is `ty`'s.
fn object_of<'a>(schema: &'a serde_json::Value, ty: &str) -> Option<Object<'a>> {
    use serde_json::Value;
    let mut object = Object::default();
    let Some(branches) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    else {
        gather(schema, schema, &mut object, 0);
        return Some(object);
    };
    let tagged = |branch: &&'a Value| {
        let mut o = Object::default();
        gather(schema, branch, &mut o, 0);
        o.properties.values().any(|p| {
            p.get("const").and_then(Value::as_str) == Some(ty)
                || p.get("enum")
                    .and_then(Value::as_array)
                    .is_some_and(|e| e.iter().any(|v| v.as_str() == Some(ty)))
        })
    };
    let branch = match branches.iter().filter(tagged).collect::<Vec<_>>()[..] {
        [one] => one,
        _ => return None,
    };
    gather(schema, branch, &mut object, 0);
    Some(object)
}

/// Adds the properties and required names of `node` to `into`, following local `$ref`s (into
/// `root`'s `$defs` or `definitions`) and `allOf`, a few levels deep.
fn gather<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
    into: &mut Object<'a>,
    depth: usize,
) {
    use serde_json::Value;
    if depth > 8 {
        return;
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            into.properties.insert(name, prop);
        }
    }
    if let Some(required) = node.get("required").and_then(Value::as_array) {
        into.required
            .extend(required.iter().filter_map(Value::as_str));
    }
    if let Some(target) = node.get("$ref").and_then(Value::as_str).and_then(|r| {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))?;
        root.get("$defs")
            .or_else(|| root.get("definitions"))?
            .get(name)
    }) {
        gather(root, target, into, depth + 1);
    }
    for part in node
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        gather(root, part, into, depth + 1);
    }
}

/// Writes the JSON Schema of every registered event type into `dir` (created if missing), one
/// `<rust-type-in-kebab-case>.schema.json` per Rust type (`TaskCompleted` →
/// `task-completed.schema.json`), as contract files for other services: the other direction of
/// `#[event(contract = "...")]`. Returns the paths written, in the registry's order.
///
/// ```no_run
/// let written = event_runtime::schema::export("target/schemas")?;
/// println!("{} schemas", written.len());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Two registered types whose names give one file name (the same name in two modules) are an
/// `AlreadyExists` error, before anything is written.
pub fn export(dir: impl AsRef<std::path::Path>) -> std::io::Result<Vec<std::path::PathBuf>> {
    let dir = dir.as_ref();
    let mut files: Vec<(std::path::PathBuf, serde_json::Value)> = Vec::new();
    for def in defs() {
        let path = dir.join(format!("{}.schema.json", kebab_case(def.rust_name)));
        if files.iter().any(|(seen, _)| *seen == path) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "two event types export to {}: rename one of the `{}` types",
                    path.display(),
                    def.rust_name
                ),
            ));
        }
        files.push((path, (def.schema)()));
    }
    std::fs::create_dir_all(dir)?;
    for (path, schema) in &files {
        let text = serde_json::to_string_pretty(schema).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// `TaskCompleted` → `task-completed`, `TaskCompletedV1` → `task-completed-v1`.
fn kebab_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.char_indices() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Compares the program's schemas with the snapshot committed at `path` and fails on a breaking
/// change to a published major version. A missing snapshot, or `EVENT_SCHEMAS_UPDATE=1` (read by
/// [`Config::from_env`]; see [`check_snapshot_with`]), writes the current one instead (review
/// and commit it). Call it from a test:
///
/// ```no_run
/// #[test]
/// fn event_schemas_stay_compatible() {
///     event_runtime::schema::check_snapshot("tests/event-schemas.json").unwrap();
/// }
/// ```
pub fn check_snapshot(path: impl AsRef<std::path::Path>) -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    check_snapshot_with(path, &config)
}

/// [`check_snapshot`], rewriting the snapshot when `config.schemas_update` says so.
pub fn check_snapshot_with(
    path: impl AsRef<std::path::Path>,
    config: &Config,
) -> Result<(), String> {
    check_snapshot_updating(path.as_ref(), config.schemas_update)
}

/// [`check_snapshot`], rewriting the snapshot when `update` is set.
pub(crate) fn check_snapshot_updating(path: &std::path::Path, update: bool) -> Result<(), String> {
    let current = snapshot();
    if update || !path.exists() {
        let text = serde_json::to_string_pretty(&current).map_err(|e| e.to_string())?;
        return std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let old: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let breaking = breaking_changes(&old, &current);
    if breaking.is_empty() {
        return Ok(());
    }
    Err(format!(
        "breaking changes to published event versions (raise the major version, or revert):\n  {}\n(EVENT_SCHEMAS_UPDATE=1 rewrites {} once the change is intended)",
        breaking.join("\n  "),
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_kebab_case() {
        assert_eq!(kebab_case("TaskCompleted"), "task-completed");
        assert_eq!(kebab_case("TaskCompletedV1"), "task-completed-v1");
        assert_eq!(kebab_case("Reminder"), "reminder");
    }

    /// An enum's variant, written inline or holding a body (`$ref` beside the tag), as schemars
    /// writes them; `fields` are its properties besides the tag, all required.
    fn variant(tag: &str, fields: &[&str], body: bool) -> serde_json::Value {
        use serde_json::json;
        let props: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|f| ((*f).to_owned(), json!({"type": "string"})))
            .collect();
        let tag_prop = json!({"event_type": {"const": tag, "type": "string"}});
        if body {
            json!({
                "$defs": {"Body": {"type": "object", "properties": props, "required": fields}},
                "oneOf": [
                    {"$ref": "#/$defs/Body", "properties": tag_prop, "required": ["event_type"]},
                    {"properties": {"event_type": {"const": "other"}}},
                ],
            })
        } else {
            let mut all = props;
            all.extend(tag_prop.as_object().unwrap().clone());
            let mut required = fields.to_vec();
            required.push("event_type");
            json!({"oneOf": [
                {"properties": all, "required": required},
                {"properties": {"event_type": {"const": "other"}}},
            ]})
        }
    }

    #[test]
    fn an_enum_is_compared_variant_by_variant_through_its_bodies() {
        use serde_json::json;
        let snapshot = |schema| json!({ "task.created@1.0": schema });
        let inline = snapshot(variant("task.created", &["task_id", "user_id"], false));
        let body = snapshot(variant("task.created", &["task_id", "user_id"], true));
        // The same fields, moved into a body: nothing breaks.
        assert!(breaking_changes(&inline, &body).is_empty());
        // A field the variant had is gone from its body.
        let fewer = snapshot(variant("task.created", &["task_id"], true));
        assert_eq!(
            breaking_changes(&inline, &fewer),
            ["task.created@1.0: property `user_id` of task.created@1.0 was removed"]
        );
        // A new required field inside the body.
        let more = snapshot(variant(
            "task.created",
            &["task_id", "user_id", "title"],
            true,
        ));
        assert_eq!(
            breaking_changes(&body, &more),
            ["task.created@1.0: property `title` is newly required"]
        );
    }
}
