//! Every attribute key, named once, and the "did you mean" for the ones a user misspells.

use std::fmt;

use syn::Path;

/// The name of an attribute key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Symbol(pub &'static str);

// #[event_handler(...)]
pub const TOPIC: Symbol = Symbol("topic");
pub const PUBSUB: Symbol = Symbol("pubsub");
pub const ROUTE: Symbol = Symbol("route");
pub const RETRY: Symbol = Symbol("retry");
pub const RETRY_MODE: Symbol = Symbol("retry_mode");
pub const DLQ: Symbol = Symbol("dlq");
pub const IDEMPOTENT: Symbol = Symbol("idempotent");
pub const IDEMPOTENCY_KEY: Symbol = Symbol("idempotency_key");
pub const BULK: Symbol = Symbol("bulk");
pub const RAW_PAYLOAD: Symbol = Symbol("raw_payload");
pub const METADATA: Symbol = Symbol("metadata");
pub const TIMEOUT: Symbol = Symbol("timeout");
pub const CONCURRENCY: Symbol = Symbol("concurrency");
pub const UNORDERED: Symbol = Symbol("unordered");
pub const ON_DEAD_LETTER: Symbol = Symbol("on_dead_letter");

pub const HANDLER_KEYS: &[Symbol] = &[
    TOPIC,
    PUBSUB,
    ROUTE,
    RETRY,
    RETRY_MODE,
    DLQ,
    IDEMPOTENT,
    IDEMPOTENCY_KEY,
    BULK,
    RAW_PAYLOAD,
    METADATA,
    TIMEOUT,
    CONCURRENCY,
    UNORDERED,
    ON_DEAD_LETTER,
];

// retry = exponential(...)
pub const EXPONENTIAL: Symbol = Symbol("exponential");
pub const INITIAL: Symbol = Symbol("initial");
pub const FACTOR: Symbol = Symbol("factor");
pub const ATTEMPTS: Symbol = Symbol("attempts");
pub const CAP: Symbol = Symbol("cap");
pub const EXPONENTIAL_KEYS: &[Symbol] = &[INITIAL, FACTOR, ATTEMPTS, CAP];

// bulk(...)
pub const MAX_MESSAGES: Symbol = Symbol("max_messages");
pub const MAX_AWAIT_MS: Symbol = Symbol("max_await_ms");
pub const BULK_KEYS: &[Symbol] = &[MAX_MESSAGES, MAX_AWAIT_MS];

// retry_mode = "..."
pub const INLINE: Symbol = Symbol("inline");
pub const DELAYED: Symbol = Symbol("delayed");
pub const RETRY_MODES: &[Symbol] = &[INLINE, DELAYED];

// on_dead_letter = "..."
pub const RELEASE: Symbol = Symbol("release");
pub const HOLD: Symbol = Symbol("hold");
pub const AFTER_DEAD_LETTER: &[Symbol] = &[RELEASE, HOLD];

// #[derive(Event)] and its #[event(...)] attributes
pub const EVENT: Symbol = Symbol("event");
pub const TYPE: Symbol = Symbol("type");
pub const VERSION: Symbol = Symbol("version");
pub const UNKEYED: Symbol = Symbol("unkeyed");
pub const PARTITION_KEY: Symbol = Symbol("partition_key");
pub const UPCAST_FROM: Symbol = Symbol("upcast_from");
pub const SCHEMA: Symbol = Symbol("schema");
pub const CONTRACT: Symbol = Symbol("contract");
pub const MESSAGE: Symbol = Symbol("message");
pub const BODY: Symbol = Symbol("body");
pub const CONTAINER_KEYS: &[Symbol] = &[
    TYPE,
    VERSION,
    UNKEYED,
    UPCAST_FROM,
    SCHEMA,
    CONTRACT,
    MESSAGE,
    BODY,
];
pub const VARIANT_KEYS: &[Symbol] = &[TYPE];
pub const FIELD_KEYS: &[Symbol] = &[PARTITION_KEY, BODY];

// The serde attributes the derive reads, and the fields it recognises by name.
pub const SERDE: Symbol = Symbol("serde");
pub const TAG: Symbol = Symbol("tag");
pub const CONTENT: Symbol = Symbol("content");
pub const RENAME: Symbol = Symbol("rename");
pub const SERIALIZE: Symbol = Symbol("serialize");
pub const RENAME_ALL: Symbol = Symbol("rename_all");
pub const RENAME_ALL_FIELDS: Symbol = Symbol("rename_all_fields");
pub const DEFAULT: Symbol = Symbol("default");
pub const FLATTEN: Symbol = Symbol("flatten");
pub const SKIP: Symbol = Symbol("skip");
pub const SKIP_DESERIALIZING: Symbol = Symbol("skip_deserializing");
pub const USER_ID: &str = "user_id";
pub const EVENT_ID: &str = "event_id";
pub const EVENT_VERSION: &str = "event_version";

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The message for a key that is none of `known`: a suggestion when one is close, else the list.
pub fn unknown_key(key: &str, known: &[Symbol], attr: &str) -> String {
    match did_you_mean(key, known) {
        Some(close) => format!("unknown key `{key}` in {attr}: did you mean `{close}`?"),
        None => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!(
                "unknown key `{key}` in {attr}: expected one of {}",
                list.join(", ")
            )
        }
    }
}

/// The known key closest to `key`, if it is close enough to be a likely typo.
pub fn did_you_mean(key: &str, known: &[Symbol]) -> Option<Symbol> {
    // About one edit in three characters: `topik` finds `topic`, `retries` finds `retry`,
    // `name` finds nothing.
    let limit = key.chars().count().div_ceil(3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(&key.to_lowercase(), k.0), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance between `a` and `b`, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("topic", "topic"), 0);
        assert_eq!(edit_distance("topik", "topic"), 1);
        assert_eq!(edit_distance("topc", "topic"), 1);
        assert_eq!(edit_distance("toppic", "topic"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "dlq"), 3);
    }

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(did_you_mean("topik", HANDLER_KEYS), Some(TOPIC));
        assert_eq!(did_you_mean("retries", HANDLER_KEYS), Some(RETRY));
        assert_eq!(did_you_mean("Pubsub", HANDLER_KEYS), Some(PUBSUB));
        assert_eq!(did_you_mean("idempotency", HANDLER_KEYS), Some(IDEMPOTENT));
        assert_eq!(did_you_mean("rawpayload", HANDLER_KEYS), Some(RAW_PAYLOAD));
        assert_eq!(did_you_mean("name", HANDLER_KEYS), None);
        assert_eq!(did_you_mean("x", HANDLER_KEYS), None);
    }

    #[test]
    fn unknown_key_lists_the_keys_when_nothing_is_close() {
        let msg = unknown_key("colour", &[TYPE, VERSION], "#[event(...)]");
        assert_eq!(
            msg,
            "unknown key `colour` in #[event(...)]: expected one of `type`, `version`"
        );
    }
}
