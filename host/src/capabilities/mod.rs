//! The capabilities a sync component imports, one module per WIT interface
//! (docs/architecture.md). Each has its own context type holding only what it
//! needs, a thin `Host` impl that checks the component's input at the
//! boundary and delegates to a plain backend (a store trait, the provider
//! client), and an `add_to_linker` that links it through a projection from
//! whatever state the runtime keeps. Nothing here knows about the runtime.
//!
//! A component that goes past a limit of the run is stopped (the host call
//! traps) with a [`LimitExceeded`] that names the limit; the runtime reports
//! it as the run's failure.

pub mod canonical;
pub mod checkpoint;
pub mod config;
pub mod logging;
pub mod proxy;
pub mod records;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::portable_sync::sync as wit;

/// A limit per run the host enforces on the component's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    RecordsPerBatch,
    BytesPerRecord,
    BytesPerResponse,
    RequestsPerRun,
}

impl Limit {
    /// The limit's name, as errors and the command line's flags say it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::RecordsPerBatch => "records per batch",
            Limit::BytesPerRecord => "bytes per record",
            Limit::BytesPerResponse => "bytes per proxy response",
            Limit::RequestsPerRun => "proxy requests per run",
        }
    }
}

/// A component went past a limit of the run; the call traps with this.
#[derive(Debug, Clone, thiserror::Error)]
#[error("limit exceeded: {} (at most {max}): {what}", .limit.name())]
pub struct LimitExceeded {
    pub limit: Limit,
    pub max: u64,
    pub what: String,
}

impl LimitExceeded {
    pub fn new(limit: Limit, max: u64, what: String) -> Self {
        LimitExceeded { limit, max, what }
    }
}

/// The host is shutting down: the next call that would start new work (a
/// provider request) stops the run instead. Whatever the run stored, and its
/// checkpoint, stay; the next run resumes from there.
#[derive(Debug, Clone, thiserror::Error)]
#[error("interrupted: the host is shutting down; the next run resumes from the checkpoint")]
pub struct Interrupted;

/// Raised by the host to stop its runs at their next provider request.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl StopSignal {
    pub fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Links every capability of the `sync-component` world, each through its
/// projection from the runtime's state `T`.
pub struct Projections<T> {
    pub proxy: fn(&mut T) -> &mut proxy::ProxyCtx,
    pub records: fn(&mut T) -> &mut records::RecordsCtx,
    pub checkpoint: fn(&mut T) -> &mut checkpoint::CheckpointCtx,
    pub config: fn(&mut T) -> &mut config::ConfigCtx,
    pub logging: fn(&mut T) -> &mut logging::LoggingCtx,
}

pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: Projections<T>) -> wasmtime::Result<()> {
    wit::proxy::add_to_linker::<T, HasSelf<proxy::ProxyCtx>>(linker, get.proxy)?;
    wit::records::add_to_linker::<T, HasSelf<records::RecordsCtx>>(linker, get.records)?;
    wit::listing::add_to_linker::<T, HasSelf<records::RecordsCtx>>(linker, get.records)?;
    wit::checkpoint::add_to_linker::<T, HasSelf<checkpoint::CheckpointCtx>>(linker, get.checkpoint)?;
    wit::config::add_to_linker::<T, HasSelf<config::ConfigCtx>>(linker, get.config)?;
    wit::logging::add_to_linker::<T, HasSelf<logging::LoggingCtx>>(linker, get.logging)?;
    Ok(())
}
