//! Reading a JSON Schema as Pydantic (`model_json_schema()`), schemars and AsyncAPI tools write
//! it: `$ref`s into the same document (`$defs`, `definitions`, `components/schemas`), `type`,
//! `enum`/`const`, `anyOf`/`oneOf`/`allOf`, `format`, `properties`, `required`, `items`.

use std::collections::BTreeMap;

use serde_json::Value;

/// How deep `$ref`s and combinators are followed before giving up (a recursive schema).
const MAX_DEPTH: usize = 32;

/// The schema that admits anything, for a `$ref` that does not resolve.
static ANYTHING: Value = Value::Bool(true);

/// The kinds of JSON value a schema admits, or a Rust type can hold: a set of
/// null, boolean, integer, number (not an integer), string, array and object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Kinds(u8);

impl Kinds {
    pub const NONE: Kinds = Kinds(0);
    pub const NULL: Kinds = Kinds(1);
    pub const BOOLEAN: Kinds = Kinds(2);
    pub const INTEGER: Kinds = Kinds(4);
    /// A number with a fraction; JSON Schema's `number` is `INTEGER | FRACTION`.
    pub const FRACTION: Kinds = Kinds(8);
    pub const STRING: Kinds = Kinds(16);
    pub const ARRAY: Kinds = Kinds(32);
    pub const OBJECT: Kinds = Kinds(64);
    pub const NUMBER: Kinds = Kinds(4 | 8);
    pub const ALL: Kinds = Kinds(127);

    pub fn union(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }

    pub fn intersect(self, other: Kinds) -> Kinds {
        Kinds(self.0 & other.0)
    }

    pub fn minus(self, other: Kinds) -> Kinds {
        Kinds(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0
    }

    /// The kinds by their JSON Schema names: `integer`, `number`, `null`, ...
    pub fn describe(self) -> String {
        let mut names = Vec::new();
        for (kind, name) in [
            (Kinds::STRING, "string"),
            (Kinds::INTEGER, "integer"),
            (Kinds::BOOLEAN, "boolean"),
            (Kinds::ARRAY, "array"),
            (Kinds::OBJECT, "object"),
            (Kinds::NULL, "null"),
        ] {
            if self.contains(kind) {
                names.push(name);
            }
        }
        if self.contains(Kinds::FRACTION) {
            // `number` includes the integers: say it once.
            names.retain(|n| *n != "integer");
            names.insert(0, "number");
        }
        names.join(" or ")
    }

    fn of_type_name(name: &str) -> Kinds {
        match name {
            "null" => Kinds::NULL,
            "boolean" => Kinds::BOOLEAN,
            "integer" => Kinds::INTEGER,
            "number" => Kinds::NUMBER,
            "string" => Kinds::STRING,
            "array" => Kinds::ARRAY,
            "object" => Kinds::OBJECT,
            _ => Kinds::ALL,
        }
    }

    fn of_value(value: &Value) -> Kinds {
        match value {
            Value::Null => Kinds::NULL,
            Value::Bool(_) => Kinds::BOOLEAN,
            Value::Number(n) if n.is_i64() || n.is_u64() => Kinds::INTEGER,
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => Kinds::INTEGER,
            Value::Number(_) => Kinds::FRACTION,
            Value::String(_) => Kinds::STRING,
            Value::Array(_) => Kinds::ARRAY,
            Value::Object(_) => Kinds::OBJECT,
        }
    }
}

/// A schema document: `$ref`s resolve against its root.
pub struct Doc<'a> {
    root: &'a Value,
}

impl<'a> Doc<'a> {
    pub fn new(root: &'a Value) -> Self {
        Doc { root }
    }

    /// `schema` with its `$ref`s followed (a ref that does not resolve is left as it is, and
    /// then constrains nothing).
    pub fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..MAX_DEPTH {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(reference) => match self.pointer(reference) {
                    Some(target) => schema = target,
                    None => return &ANYTHING,
                },
                None => return schema,
            }
        }
        &ANYTHING
    }

    /// A local reference, `#/$defs/TaskEvent`; `None` for another document's.
    fn pointer(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    /// The kinds of value `schema` admits; `None` when it does not constrain them.
    pub fn kinds(&self, schema: &'a Value) -> Option<Kinds> {
        self.kinds_at(schema, 0)
    }

    fn kinds_at(&self, schema: &'a Value, depth: usize) -> Option<Kinds> {
        if depth > MAX_DEPTH {
            return None;
        }
        let schema = self.resolve(schema);
        let object = match schema {
            Value::Bool(false) => return Some(Kinds::NONE),
            Value::Object(object) => object,
            _ => return None,
        };
        let mut constraints: Vec<Kinds> = Vec::new();
        match object.get("type") {
            Some(Value::String(name)) => constraints.push(Kinds::of_type_name(name)),
            Some(Value::Array(names)) => constraints.push(
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(Kinds::of_type_name)
                    .fold(Kinds::NONE, Kinds::union),
            ),
            _ => {}
        }
        if let Some(value) = object.get("const") {
            constraints.push(Kinds::of_value(value));
        }
        if let Some(Value::Array(values)) = object.get("enum") {
            constraints.push(
                values
                    .iter()
                    .map(Kinds::of_value)
                    .fold(Kinds::NONE, Kinds::union),
            );
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = object.get(key) {
                let kinds: Option<Vec<Kinds>> = branches
                    .iter()
                    .map(|b| self.kinds_at(b, depth + 1))
                    .collect();
                if let Some(kinds) = kinds {
                    constraints.push(kinds.into_iter().fold(Kinds::NONE, Kinds::union));
                }
            }
        }
        if let Some(Value::Array(branches)) = object.get("allOf") {
            constraints.extend(branches.iter().filter_map(|b| self.kinds_at(b, depth + 1)));
        }
        let mut kinds = constraints.into_iter().reduce(Kinds::intersect)?;
        if object.get("nullable") == Some(&Value::Bool(true)) {
            kinds = kinds.union(Kinds::NULL);
        }
        Some(kinds)
    }

    /// Whether every string `schema` admits is a `format: date-time`.
    pub fn strings_are_date_times(&self, schema: &'a Value) -> bool {
        self.date_times_at(schema, 0)
    }

    fn date_times_at(&self, schema: &'a Value, depth: usize) -> bool {
        let schema = self.resolve(schema);
        if schema.get("format").and_then(Value::as_str) == Some("date-time") {
            return true;
        }
        let branches = self.alternatives(schema);
        depth < MAX_DEPTH
            && !branches.is_empty()
            && branches.iter().all(|b| {
                !self.kinds(b).is_none_or(|k| k.contains(Kinds::STRING))
                    || self.date_times_at(b, depth + 1)
            })
    }

    /// The `anyOf`/`oneOf` branches of `schema`.
    fn alternatives(&self, schema: &'a Value) -> Vec<&'a Value> {
        ["anyOf", "oneOf"]
            .iter()
            .filter_map(|key| schema.get(key).and_then(Value::as_array))
            .flatten()
            .collect()
    }

    /// The schema of an array's items: `items`, also inside an `anyOf` (Pydantic's
    /// `Optional[list[int]]`).
    pub fn items(&self, schema: &'a Value) -> Option<&'a Value> {
        let schema = self.resolve(schema);
        schema.get("items").filter(|i| i.is_object()).or_else(|| {
            self.alternatives(schema)
                .into_iter()
                .find_map(|b| self.resolve(b).get("items").filter(|i| i.is_object()))
        })
    }

    /// The schema of an object's values: `additionalProperties`, also inside an `anyOf`.
    pub fn values(&self, schema: &'a Value) -> Option<&'a Value> {
        let schema = self.resolve(schema);
        let own = |s: &'a Value| s.get("additionalProperties").filter(|v| v.is_object());
        own(schema).or_else(|| {
            self.alternatives(schema)
                .into_iter()
                .find_map(|b| own(self.resolve(b)))
        })
    }

    /// The object alternatives of `schema`: itself when it has `properties`, else those of its
    /// `anyOf`/`oneOf` branches (a discriminated union), flattened.
    pub fn objects(&self, schema: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        self.objects_at(schema, 0, &mut out);
        out
    }

    fn objects_at(&self, schema: &'a Value, depth: usize, out: &mut Vec<&'a Value>) {
        let schema = self.resolve(schema);
        if depth > MAX_DEPTH || !schema.is_object() {
            return;
        }
        if !self.properties(schema).is_empty() {
            out.push(schema);
            return;
        }
        for branch in self.alternatives(schema) {
            self.objects_at(branch, depth + 1, out);
        }
    }

    /// `properties`, with those of `allOf` parts.
    pub fn properties(&self, schema: &'a Value) -> BTreeMap<&'a str, &'a Value> {
        let schema = self.resolve(schema);
        let mut out = BTreeMap::new();
        for part in std::iter::once(schema).chain(self.all_of(schema)) {
            if let Some(Value::Object(props)) = part.get("properties") {
                for (name, prop) in props {
                    out.entry(name.as_str()).or_insert(prop);
                }
            }
        }
        out
    }

    /// `required`, with that of `allOf` parts.
    pub fn required(&self, schema: &'a Value) -> Vec<String> {
        let schema = self.resolve(schema);
        std::iter::once(schema)
            .chain(self.all_of(schema))
            .filter_map(|part| part.get("required").and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    fn all_of(&self, schema: &'a Value) -> Vec<&'a Value> {
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(|parts| parts.iter().map(|p| self.resolve(p)).collect())
            .unwrap_or_default()
    }

    /// The string values `property` may take (`Literal[...]` as `enum` or `const`, also through
    /// `anyOf`); `None` when it is not limited to a list.
    pub fn allowed_strings(&self, property: &'a Value) -> Option<Vec<String>> {
        let property = self.resolve(property);
        if let Some(value) = property.get("const") {
            return Some(value.as_str().map(str::to_owned).into_iter().collect());
        }
        if let Some(Value::Array(values)) = property.get("enum") {
            return Some(
                values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            );
        }
        let branches = self.alternatives(property);
        if branches.is_empty() {
            return None;
        }
        let mut all = Vec::new();
        for branch in branches {
            if self.kinds(branch) == Some(Kinds::NULL) {
                continue;
            }
            all.extend(self.allowed_strings(branch)?);
        }
        Some(all)
    }

    /// `discriminator.mapping` of a union: tag value → the branch it names.
    pub fn discriminator(&self, schema: &'a Value, tag: &str) -> Option<Vec<(String, &'a Value)>> {
        let schema = self.resolve(schema);
        let discriminator = schema.get("discriminator")?;
        if discriminator.get("propertyName").and_then(Value::as_str) != Some(tag) {
            return None;
        }
        let mapping = discriminator.get("mapping")?.as_object()?;
        Some(
            mapping
                .iter()
                .filter_map(|(value, reference)| {
                    let target = self.pointer(reference.as_str()?)?;
                    Some((value.clone(), target))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_follow_refs_and_unions() {
        let root = json!({
            "$defs": {"When": {"type": "string", "format": "date-time"}},
            "properties": {
                "a": {"anyOf": [{"$ref": "#/$defs/When"}, {"type": "null"}]},
                "b": {"type": "number"},
                "c": {"enum": ["x", "y"]},
                "d": {},
            }
        });
        let doc = Doc::new(&root);
        let prop = |name: &str| &root["properties"][name];
        assert_eq!(doc.kinds(prop("a")), Some(Kinds::STRING.union(Kinds::NULL)));
        assert!(doc.strings_are_date_times(prop("a")));
        assert_eq!(doc.kinds(prop("b")), Some(Kinds::NUMBER));
        assert_eq!(doc.kinds(prop("c")), Some(Kinds::STRING));
        assert_eq!(doc.allowed_strings(prop("c")).unwrap(), ["x", "y"]);
        assert_eq!(doc.kinds(prop("d")), None);
        assert_eq!(Kinds::NUMBER.describe(), "number");
        assert_eq!(
            Kinds::STRING.union(Kinds::NULL).describe(),
            "string or null"
        );
    }
}
