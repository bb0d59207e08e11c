//! `sync-host`: runs portable sync components with wasmtime, stores their
//! records in SQLite with change tracking, and serves them over HTTP.
//!
//! One module per capability the component imports (`proxy`, `records`,
//! `checkpoint`, `config`, `log`), plus the `runtime` that wires them to a
//! component, the records `api`, and the `cli`.

pub mod api;
pub mod bindings;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod demo;
pub mod log;
pub mod proxy;
pub mod records;
pub mod runtime;
