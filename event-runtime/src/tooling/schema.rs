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

/// An entry of [`schemas`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SchemaEntry {
    /// The Rust type (`module::Name`).
    pub rust_type: String,
    /// CloudEvent types.
    pub event_types: Vec<String>,
    /// `major.minor`.
    pub version: String,
    /// Topics the program's handlers consume it from.
    pub consumed_from: Vec<String>,
    /// The older Rust type it upcasts from.
    pub upcast_from: Option<String>,
    /// JSON Schema of the data.
    pub schema: serde_json::Value,
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
            SchemaEntry {
                rust_type: format!("{}::{}", d.module, d.rust_name),
                event_types: d.types.iter().map(|t| (*t).to_owned()).collect(),
                version: d.version.to_owned(),
                consumed_from: consumed_from.into_iter().collect(),
                upcast_from: d.upcast_from.map(str::to_owned),
                schema: (d.schema)(),
            }
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
            let props = |s: &Value| {
                s.get("properties")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            let required = |s: &Value| -> Vec<String> {
                s.get("required")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (old_props, new_props) = (props(old_schema), props(new_schema));
            for (name, old_prop) in &old_props {
                match new_props.get(name) {
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
            let old_required = required(old_schema);
            for name in required(new_schema) {
                if !old_required.contains(&name) {
                    out.push(format!("{new_key}: property `{name}` is newly required"));
                }
            }
        }
    }
    out
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
}
