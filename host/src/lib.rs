//! `sync-host`: runs portable sync components with wasmtime, stores their
//! records with change tracking, and serves them over HTTP.
//!
//! The layers, each a folder (docs/architecture.md):
//!
//! - `capabilities`: one module per WIT interface a component imports, each
//!   with its own context and a thin `Host` impl over a backend;
//! - `provider`: talking to a connection's provider, whichever it is
//!   (credentials and OAuth, pacing, retries);
//! - `providers`: what is particular to each provider (its token endpoint,
//!   how its notifications are signed and read), at the edge;
//! - `store`: what the host keeps, behind traits, with SQLite and PostgreSQL
//!   backends;
//! - `runtime`: wasmtime, linking the capabilities into a component and
//!   running it under limits;
//! - `runs`: one run of a connection, as every caller starts it;
//! - `schedule`: when a connection runs (due, next run, backoff), as plain
//!   functions every layer asks;
//! - `service`: running unattended: the scheduler, webhooks out;
//! - `metrics`: Prometheus counters of the process;
//! - `time`: instants and intervals as every layer keeps and shows them;
//! - `api`: the HTTP API over the store;
//! - `cli`: the command line.

pub mod api;
pub mod bindings;
pub mod capabilities;
pub mod cli;
pub mod metrics;
pub mod provider;
pub mod providers;
pub mod runs;
pub mod runtime;
pub mod schedule;
pub mod service;
pub mod store;
pub mod time;
