//! The end-to-end tests, one module per file: the real `.wasm` in the real
//! hosts against the fake QuickBooks over loopback (`support/` is the
//! harness, the crate's library). Run one file's tests with
//! `cargo test --release -p e2e-tests -- resilience::`.

mod api;
mod conformance;
mod cross_host;
mod infra_net;
mod limits;
mod nango;
mod real_quickbooks;
mod resilience;
mod store_faults;
mod sync;
mod ui;
mod unattended;
mod wasi;
mod webhooks;
mod workers;
