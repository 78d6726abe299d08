//! Compile-fail and compile-pass tests of `#[event_handler]` and `#[derive(Event)]`.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p event-tests --test ui`
//! and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}
