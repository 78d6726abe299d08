//! The example's integration tests, one binary with a module per feature (STYLE.md, "Tests").
//! `browser` and `postgres` are `#[ignore]`d: `scripts/browser-test.sh` and
//! `example-todo/scripts/postgres-test.sh` run them against Chromium and PostgreSQL.

mod common;

mod artifacts;
mod browser;
mod commands;
mod deploy;
mod dlq_cli;
mod environment;
mod ops_auth;
mod postgres;
mod publish_failure;
mod service;
