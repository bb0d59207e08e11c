//! The conformance component: a sync component whose `run` exercises every
//! import of the `sync-component` world against the edge cases its WIT
//! documents promise, and reports each case. Every host runs it in its tests
//! (`tests/conformance.rs`), so the rules live here once, not re-written in
//! each host's tests.
//!
//! Each case logs `case <name>: ok` or `case <name>: FAILED: <why>` at info
//! level; `run` fails, naming the failed cases, if any case failed.
//!
//! The host under test must give it a fresh connection (no records, no
//! checkpoint), the configuration key `realmId`, and a provider that answers
//! `GET /v3/company/{realmId}/query` with 200 (the fake QuickBooks), scripted
//! to answer 503 (with `Retry-After: 1`) to its 2nd and 4th requests.

#[cfg(target_arch = "wasm32")]
mod component;

/// The outcome of one case.
pub type Check = Result<(), String>;

/// Fails with `what` unless `condition`.
pub fn ensure(condition: bool, what: impl FnOnce() -> String) -> Check {
    if condition {
        Ok(())
    } else {
        Err(what())
    }
}
