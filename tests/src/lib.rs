//! Test-only crate: the suites live in `tests/` (integration) and `ui/` (trybuild, driven by
//! `tests/ui.rs`). Nothing here is published.
