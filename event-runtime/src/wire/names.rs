//! The names that go into a sidecar URL (pubsub components, topics, state stores, state keys):
//! their rules, checked before any request, and their percent-encoding as path segments.

/// A name refused before it reached a sidecar URL: it breaks the rule of what it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {}: {reason}", shown(.name))]
pub struct InvalidName {
    /// What the name names: `topic`, `pubsub component`, `state store` or `state key`.
    pub what: &'static str,
    /// The name as given.
    pub name: String,
    /// The rule it breaks.
    pub reason: String,
}

const TOPIC_RULE: &str =
    "Kafka topic names are 1 to 249 characters of `A-Z a-z 0-9 . _ -`, and not `.` or `..`";
const COMPONENT_RULE: &str = "Dapr component names are 1 to 253 characters of \
`A-Z a-z 0-9 . _ -`, and not `.` or `..` (on Kubernetes: lowercase letters, digits, `-` and `.`)";
const KEY_RULE: &str =
    "a state key is not empty, not `.` or `..`, and holds no `||` (Dapr's key-prefix separator)";

/// Checks a topic name against Kafka's rules ([`is_valid_topic_name`]): 1 to 249 characters
/// of `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
///
/// [`is_valid_topic_name`]: is_valid_topic_name
pub fn check_topic(topic: &str) -> Result<(), InvalidName> {
    if is_valid_topic_name(topic) {
        return Ok(());
    }
    let problem = segment_problem(topic, 249).unwrap_or_else(|| "it breaks a rule".into());
    Err(InvalidName {
        what: "topic",
        name: topic.to_owned(),
        reason: format!("{problem}; {TOPIC_RULE}"),
    })
}

/// Checks a Dapr component name (a pubsub component or a state store; `what` says which).
///
/// Dapr on Kubernetes takes a component's name from its resource, so it is a DNS-1123
/// subdomain (lowercase letters, digits, `-`, `.`, at most 253 characters); self-hosted daprd
/// only refuses `.`, `..`, `/` and `%`. Allowed here: 1 to 253 characters of
/// `A-Z a-z 0-9 . _ -`, not `.` or `..`, which covers every Kubernetes name and the usual
/// self-hosted ones, and nothing that changes the meaning of a URL.
pub(crate) fn check_component(what: &'static str, name: &str) -> Result<(), InvalidName> {
    match segment_problem(name, 253) {
        None => Ok(()),
        Some(problem) => Err(InvalidName {
            what,
            name: name.to_owned(),
            reason: format!("{problem}; {COMPONENT_RULE}"),
        }),
    }
}

/// Checks a state key: not empty, not `.` or `..` (a URL would read them as a path step), and
/// no `||`, which Dapr refuses in keys. Any other character is sent percent-encoded.
pub(crate) fn check_state_key(key: &str) -> Result<(), InvalidName> {
    let reason = if key.is_empty() {
        "the key is empty"
    } else if key == "." || key == ".." {
        "the key is a path step"
    } else if key.contains("||") {
        "the key holds `||`"
    } else {
        return Ok(());
    };
    Err(InvalidName {
        what: "state key",
        name: key.to_owned(),
        reason: format!("{reason}; {KEY_RULE}"),
    })
}

/// The first rule of topic and component names that `name` breaks (1 to `max` characters of
/// `A-Z a-z 0-9 . _ -`, and not `.` or `..`), or `None`.
fn segment_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name == "." || name == ".." {
        Some("it is a path step".to_owned())
    } else if name.len() > max {
        Some(format!("it is {} bytes long", name.len()))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(|c| format!("{c:?} is not allowed"))
    }
}

/// A name or value from outside, fit for a message: quoted, escaped, cut after 80 characters.
pub(crate) fn shown(name: &str) -> String {
    match name.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &name[..cut], name.len()),
        None => format!("{name:?}"),
    }
}

/// `text`, cut to at most about `max` bytes (at a character boundary) and saying how long it was.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

/// Whether `name` is a valid Kafka topic name: 1 to 249 characters of `a-z A-Z 0-9 . _ -`,
/// and neither `.` nor `..`.
///
/// ```
/// use event_runtime::tooling::topics::is_valid_topic_name;
/// assert!(is_valid_topic_name("task-events.retry.30s"));
/// assert!(!is_valid_topic_name("task events"));
/// assert!(!is_valid_topic_name(".."));
/// ```
pub const fn is_valid_topic_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 249 {
        return false;
    }
    if (b.len() == 1 && b[0] == b'.') || (b.len() == 2 && b[0] == b'.' && b[1] == b'.') {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// Percent-encodes a URL path segment: every byte but `A-Z a-z 0-9 - _ . ~`.
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_kafkas_rules() {
        for ok in [
            "task-events",
            "task-events.retry.30s",
            "a",
            "A_b-c.d",
            "...",
            &"x".repeat(249),
        ] {
            assert_eq!(check_topic(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            (".", "path step"),
            ("..", "path step"),
            ("../../state/statestore", "'/' is not allowed"),
            ("task events", "' ' is not allowed"),
            ("tâche", "'â' is not allowed"),
            ("a%2Fb", "'%' is not allowed"),
            ("a?b", "'?' is not allowed"),
            (&"x".repeat(250), "250 bytes long"),
        ] {
            let err = check_topic(bad).unwrap_err();
            assert_eq!((err.what, err.name.as_str()), ("topic", bad));
            assert!(err.reason.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_topic_rule_is_the_one_topic_specs_use() {
        for name in [
            "t",
            ".",
            "..",
            "...",
            "a b",
            "a/b",
            "é",
            "",
            &"x".repeat(249),
            &"x".repeat(250),
        ] {
            assert_eq!(
                check_topic(name).is_ok(),
                is_valid_topic_name(name),
                "{name}"
            );
            assert_eq!(
                check_topic(name).is_ok(),
                segment_problem(name, 249).is_none(),
                "{name}"
            );
        }
    }

    #[test]
    fn component_names_allow_what_dapr_allows_and_nothing_that_changes_a_url() {
        for ok in [
            "kafka-pubsub",
            "statestore",
            "pubsub.kafka",
            "My_PubSub",
            &"a".repeat(253),
        ] {
            assert_eq!(check_component("pubsub component", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "kafka-pubsub/../../state",
            "a b",
            "a%20b",
            "a#b",
            &"a".repeat(254),
        ] {
            let err = check_component("state store", bad).unwrap_err();
            assert_eq!((err.what, err.name.as_str()), ("state store", bad), "{err}");
        }
    }

    #[test]
    fn state_keys_refuse_what_dapr_or_a_url_would_misread() {
        for ok in [
            "todo|e2e_app::s5::s5_once|evt-1",
            "a/b",
            "a b",
            "x%7Cy",
            "...",
            "ключ",
        ] {
            assert_eq!(check_state_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "app||key"] {
            assert!(check_state_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode("kafka-pubsub"), "kafka-pubsub");
        assert_eq!(encode("a/b c|d%"), "a%2Fb%20c%7Cd%25");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn a_long_or_odd_name_is_shown_escaped_and_cut() {
        let err = check_topic(&format!("{}\n", "x".repeat(500))).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("invalid topic \"xxx"), "{text}");
        assert!(
            text.contains("(501 bytes)") && !text.contains('\n'),
            "{text}"
        );
        let err = check_topic("a\nb").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid topic \"a\\nb\": '\\n' is not allowed"),
            "{err}"
        );
    }
}
