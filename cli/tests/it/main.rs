//! The `pier` command's integration tests, one binary: each module is a former test file and
//! `common` is shared (the binary under test, demo folders, a PostgreSQL started here).

mod common;
#[path = "../../../tests/support/postgres.rs"]
mod postgres;

mod cli;
mod hardening_push;
mod jobs;
mod loadtest;
mod on_postgres;
mod train;
