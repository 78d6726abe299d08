//! The macro crate keeps copies of runtime figures it checks at compile time
//! (`event-macros/src/mirror.rs`: a proc-macro crate can export only macros). This includes that
//! file and fails when a copy differs from the runtime's.

#[path = "../../event-macros/src/mirror.rs"]
mod mirror;

use event_runtime::__private::check_topic;

#[test]
fn the_inline_retry_limit_is_the_runtimes() {
    assert_eq!(
        mirror::INLINE_RETRY_LIMIT_SECS,
        event_runtime::__private::INLINE_RETRY_LIMIT_SECS
    );
}

#[test]
fn the_topic_rule_is_the_runtimes() {
    assert!(check_topic(&"t".repeat(mirror::MAX_TOPIC_LEN)).is_ok());
    let refused = check_topic(&"t".repeat(mirror::MAX_TOPIC_LEN + 1)).unwrap_err();
    assert!(
        refused.reason.ends_with(mirror::TOPIC_RULE),
        "the runtime states the rule as: {}",
        refused.reason
    );
}

#[test]
fn exponential_schedules_are_the_runtimes() {
    for (initial, factor, attempts, cap) in [
        (1, 2, 10, Some(512)),
        (1, 2, 12, Some(512)),
        (5, 3, 4, None),
        (7, 1, 3, None),
        (10, 2, 3, Some(4)),
        (u64::MAX / 2, 4, 3, None),
        (30, 10, 0, None),
    ] {
        assert_eq!(
            mirror::exponential(initial, factor, u64::from(attempts), cap),
            event_runtime::retry::exponential(initial, factor, attempts, cap),
            "exponential({initial}, {factor}, {attempts}, {cap:?})"
        );
    }
}
