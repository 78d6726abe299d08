//! A tiny block-style YAML emitter, enough for Kubernetes manifests.
//!
//! It writes only what [`Yaml`] can hold (strings, integers, booleans, maps in insertion order,
//! sequences) and quotes every string that a YAML 1.1 or 1.2 parser could read as anything but
//! that same string: `"true"`, `"on"`, `"604800000"`, `"1e3"`, `"a: b"`, `"#x"` and so on. What
//! Kubernetes' own parser (YAML 1.1 flavoured) would turn into a boolean or a number stays a
//! string.
//!
//! ```
//! use event_runtime::tooling::yaml::Yaml;
//!
//! let doc = Yaml::map([
//!     ("kind", Yaml::str("Subscription")),
//!     ("metadata", Yaml::map([("rawPayload", Yaml::str("true"))])),
//!     ("replicas", Yaml::Int(1)),
//! ]);
//! assert_eq!(doc.to_string(), "kind: Subscription\nmetadata:\n  rawPayload: \"true\"\nreplicas: 1\n");
//! ```

use std::fmt::{self, Write as _};

/// A YAML value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Yaml {
    /// A string; quoted when a parser could misread it.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A mapping, keys in the order given.
    Map(Vec<(String, Yaml)>),
    /// A sequence.
    Seq(Vec<Yaml>),
}

impl Yaml {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        Yaml::Str(s.into())
    }

    /// A mapping from `(key, value)` pairs, in order.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Yaml)>) -> Self {
        Yaml::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A sequence.
    pub fn seq(items: impl IntoIterator<Item = Yaml>) -> Self {
        Yaml::Seq(items.into_iter().collect())
    }

    /// The YAML of a JSON value, as Kubernetes reads a resource's JSON: nulls and empty lists
    /// are left out (`omitempty`), numbers that are no integer stay text.
    ///
    /// ```
    /// use event_runtime::tooling::yaml::Yaml;
    ///
    /// let doc = Yaml::from_json(&serde_json::json!({"topic": "t", "rules": [], "partitions": 3, "dlq": null}));
    /// assert_eq!(doc.to_string(), "partitions: 3\ntopic: t\n"); // keys in serde_json's order
    /// ```
    pub fn from_json(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Yaml::Map(Vec::new()),
            Value::Bool(b) => Yaml::Bool(*b),
            Value::Number(n) => n
                .as_i64()
                .map_or_else(|| Yaml::str(n.to_string()), Yaml::Int),
            Value::String(s) => Yaml::str(s),
            Value::Array(items) => Yaml::seq(items.iter().map(Yaml::from_json)),
            Value::Object(map) => Yaml::map(
                map.iter()
                    .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
                    .map(|(k, v)| (k.clone(), Yaml::from_json(v))),
            ),
        }
    }

    /// Whether this value is written on the line of its key (a scalar or an empty collection).
    fn is_inline(&self) -> bool {
        match self {
            Yaml::Map(m) => m.is_empty(),
            Yaml::Seq(s) => s.is_empty(),
            _ => true,
        }
    }

    fn write_inline(&self, out: &mut String) {
        match self {
            Yaml::Str(s) => out.push_str(&scalar(s)),
            Yaml::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Yaml::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Yaml::Map(_) => out.push_str("{}"),
            Yaml::Seq(_) => out.push_str("[]"),
        }
    }

    /// Writes a block collection whose first line starts at the cursor (after `- ` or at a line
    /// start) and whose later lines are indented by `indent` spaces.
    fn write_block(&self, out: &mut String, indent: usize) {
        match self {
            Yaml::Map(entries) if !entries.is_empty() => {
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        push_indent(out, indent);
                    }
                    out.push_str(&scalar(k));
                    out.push(':');
                    if v.is_inline() {
                        out.push(' ');
                        v.write_inline(out);
                        out.push('\n');
                    } else {
                        out.push('\n');
                        push_indent(out, indent + 2);
                        v.write_block(out, indent + 2);
                    }
                }
            }
            Yaml::Seq(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        push_indent(out, indent);
                    }
                    out.push_str("- ");
                    if item.is_inline() {
                        item.write_inline(out);
                        out.push('\n');
                    } else {
                        item.write_block(out, indent + 2);
                    }
                }
            }
            _ => {
                self.write_inline(out);
                out.push('\n');
            }
        }
    }
}

fn push_indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

impl fmt::Display for Yaml {
    /// The value as a YAML document body (no `---`), ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_block(&mut out, 0);
        f.write_str(&out)
    }
}

/// Joins documents into one multi-document stream (`---` before each).
///
/// ```
/// use event_runtime::tooling::yaml::{stream, Yaml};
/// let s = stream(&[Yaml::map([("a", Yaml::Int(1))]), Yaml::map([("b", Yaml::Int(2))])]);
/// assert_eq!(s, "---\na: 1\n---\nb: 2\n");
/// ```
pub fn stream(docs: &[Yaml]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&doc.to_string());
    }
    out
}

/// `s` as a YAML scalar: plain when that reads back as the same string, else double-quoted.
///
/// ```
/// use event_runtime::tooling::yaml::scalar;
/// assert_eq!(scalar("task-events"), "task-events");
/// assert_eq!(scalar("604800000"), "\"604800000\"");
/// assert_eq!(scalar("off"), "\"off\"");
/// assert_eq!(scalar("event.type == \"a\""), "\"event.type == \\\"a\\\"\"");
/// ```
pub fn scalar(s: &str) -> String {
    if needs_quotes(s) {
        double_quoted(s)
    } else {
        s.to_owned()
    }
}

/// Words YAML 1.1 or 1.2 resolves to a boolean or null (compared case-insensitively).
const RESERVED: &[&str] = &[
    "true", "false", "yes", "no", "y", "n", "on", "off", "null", "~", "=", "<<",
];

fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    let lower = s.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) {
        return true;
    }
    // Anything that might resolve to a number (ints, floats, hex/octal, 1.1 sexagesimal and
    // underscores, .inf/.nan) or a 1.1 timestamp: quote every string that starts like one.
    let mut chars = s.chars();
    let second = {
        chars.next();
        chars.next()
    };
    if first.is_ascii_digit()
        || (matches!(first, '+' | '-' | '.')
            && second.is_some_and(|c| c.is_ascii_digit() || c == '.' || c == 'i' || c == 'I'))
        || matches!(lower.as_str(), ".inf" | ".nan")
    {
        return true;
    }
    // Indicators that may not start a plain scalar (`-`, `?`, `:` only before a space, but
    // quoting them always is simpler and still correct).
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return true;
    }
    if first.is_whitespace() || s.ends_with(char::is_whitespace) || s.ends_with(':') {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.contains('#') || s.contains('"') {
        return true;
    }
    // Flow indicators, quotes and anything a block scalar would mangle.
    s.chars().any(|c| {
        matches!(c, ',' | '[' | ']' | '{' | '}' | '\'' | '\\')
            || c.is_control()
            || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
    })
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> yaml_serde::Value {
        yaml_serde::from_str(s).unwrap()
    }

    #[test]
    fn tricky_strings_read_back_as_the_same_strings() {
        let cases = [
            "",
            " lead",
            "trail ",
            "true",
            "True",
            "FALSE",
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "N",
            "null",
            "Null",
            "~",
            "=",
            "<<",
            "0",
            "604800000",
            "-1",
            "+1",
            "1.5",
            ".5",
            "-.5",
            "1e3",
            "0x1f",
            "0o17",
            "1_000",
            "1:20",
            ".inf",
            "-.inf",
            ".NaN",
            "2001-12-14",
            "a: b",
            "a:b",
            "a #b",
            "#x",
            "x#y",
            "say \"hi\"",
            "it's",
            "back\\slash",
            "line\nbreak",
            "tab\there",
            "- item",
            "-",
            "?",
            ":",
            "key:",
            "[x]",
            "{x}",
            "a, b",
            "&anchor",
            "*alias",
            "!tag",
            "|",
            ">",
            "%",
            "@",
            "`",
            "event.type == \"a.b\"",
            "/events/task-events/on_x",
            "task-events.retry.30s",
            "strimzi.io/cluster",
            "héllo",
            "\u{2028}",
            "\u{7f}",
            "\u{feff}bom",
        ];
        for s in cases {
            let doc = Yaml::map([("k", Yaml::str(s))]).to_string();
            let v = parse(&doc);
            assert_eq!(
                v["k"],
                yaml_serde::Value::String(s.to_owned()),
                "{s:?} → {doc}"
            );
        }
    }

    #[test]
    fn plain_where_safe() {
        for s in [
            "task-events",
            "kafka-pubsub",
            "/api/events/x",
            "dapr.io/v2alpha1",
            "a.b_c",
        ] {
            assert_eq!(scalar(s), s);
        }
    }

    #[test]
    fn nested_block_layout() {
        let doc = Yaml::map([
            (
                "spec",
                Yaml::map([
                    (
                        "rules",
                        Yaml::seq([
                            Yaml::map([("match", Yaml::str("a")), ("path", Yaml::str("/a"))]),
                            Yaml::map([("match", Yaml::str("b")), ("path", Yaml::str("/b"))]),
                        ]),
                    ),
                    ("empty", Yaml::map(Vec::<(String, Yaml)>::new())),
                    ("none", Yaml::seq([])),
                    ("flag", Yaml::Bool(true)),
                ]),
            ),
            (
                "scopes",
                Yaml::seq([Yaml::str("app"), Yaml::seq([Yaml::Int(1)])]),
            ),
        ]);
        let text = doc.to_string();
        assert_eq!(
            text,
            "spec:\n  rules:\n    - match: a\n      path: /a\n    - match: b\n      path: /b\n  empty: {}\n  none: []\n  flag: true\nscopes:\n  - app\n  - - 1\n"
        );
        let v = parse(&text);
        assert_eq!(v["spec"]["rules"][1]["path"], "/b");
        assert_eq!(v["spec"]["flag"], yaml_serde::Value::Bool(true));
        assert_eq!(v["scopes"][1][0], yaml_serde::Value::Number(1.into()));
    }

    #[test]
    fn stream_of_documents_parses() {
        let s = stream(&[
            Yaml::map([("a", Yaml::Int(1))]),
            Yaml::map([("b", Yaml::str("x"))]),
        ]);
        let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&s)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"], "x");
    }
}
