//! Shared harness of the end-to-end tests, a module per concern:
//! `artifacts` (the components and binaries, built once), `harness` (a
//! test's fake company, database and connection, compared with the store),
//! `postgres` (the PostgreSQL backend and a database per test),
//! `private_postgres` (a server of a test's own, to stop and restart), `processes`
//! (the command line, `serve`, API clients, a webhook receiver), `model`
//! (the Customer model, written independently of the guest), `openapi`
//! (answers checked against the document), `nango` (Nango's own Node SDK,
//! driven from the tests) and `node` (the Node.js programs the tests drive).

use anyhow::Context as _;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use std::sync::Arc;
use sync_host::runs::{ConnectionSpec, RunLimits, Runner};
use sync_host::runtime::{RunFailure, RunReport, SyncRuntime};
use sync_host::store::{self, OpenMode, Store};

pub use fake_qbo::FakeQbo;
pub use sync_host::providers::quickbooks;

pub mod wasi;

pub const REALM: &str = "9341453050804937";
pub const TOKEN: &str = "e2e-access-token";

mod artifacts;
mod harness;
mod model;
mod nango;
mod node;
mod openapi;
mod postgres;
mod private_postgres;
mod processes;

pub use artifacts::*;
pub use harness::*;
pub use model::*;
pub use nango::*;
pub use node::*;
pub use openapi::*;
pub use postgres::*;
pub use private_postgres::*;
pub use processes::*;
