//! Runs sync components: compiles a component once, instantiates it per run
//! with fresh capability contexts, under a memory limit and a wall-clock
//! deadline. Depends on the capabilities; they never depend on it.

pub mod cache;
pub mod inspect;
mod metadata;

use anyhow::Context as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use metadata::{ConfigKey, Endpoint, Model, ProviderLimits, SyncMetadata};

use crate::bindings::exports::portable_sync::sync::sync::{RunError, Summary};
use crate::bindings::SyncComponentPre;
use crate::capabilities::checkpoint::CheckpointCtx;
use crate::capabilities::config::ConfigCtx;
use crate::capabilities::logging::LoggingCtx;
use crate::capabilities::proxy::{ProxyCtx, ProxyStats};
use crate::capabilities::records::RecordsCtx;
use crate::capabilities::{self, LimitExceeded, Projections};
use crate::store::BatchOutcome;

/// The WIT package this host offers.
pub const WORLD_PACKAGE: &str = "portable-sync:sync@0.2.0";

/// How often the deadline is checked.
const EPOCH_TICK: Duration = Duration::from_millis(50);

/// Limits of the component's instance in each run (the capabilities carry
/// their own limits on calls).
#[derive(Debug, Clone, Copy)]
pub struct InstanceLimits {
    /// Largest linear memory the guest may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time a run may take, host calls included.
    pub deadline: Duration,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits { memory_bytes: 256 * 1024 * 1024, deadline: Duration::from_secs(30 * 60) }
    }
}

/// The capability contexts of one run.
pub struct Capabilities {
    pub proxy: ProxyCtx,
    pub records: RecordsCtx,
    pub checkpoint: CheckpointCtx,
    pub config: ConfigCtx,
    pub logging: LoggingCtx,
}

/// What a successful run did: the component's summary and the store's count.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub summary: Summary,
    pub outcome: BatchOutcome,
    pub proxy: ProxyStats,
    pub elapsed: Duration,
    /// Largest linear memory the component grew to during the run.
    pub peak_memory_bytes: usize,
}

/// The counts a run's summary line, its history and its webhooks report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SummaryLine {
    pub added: u32,
    pub updated: u32,
    pub deleted: u32,
    pub unchanged: u32,
    pub pages: u32,
    pub requests: u32,
    pub retries: u32,
}

impl RunReport {
    pub fn line(&self) -> SummaryLine {
        SummaryLine {
            added: self.outcome.added,
            updated: self.outcome.updated,
            deleted: self.outcome.deleted,
            unchanged: self.outcome.unchanged,
            pages: self.summary.pages,
            requests: self.summary.requests,
            retries: self.summary.retries,
        }
    }

    /// The one-line JSON summary `sync-host run` prints.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.line()).expect("a summary serializes")
    }
}

/// Why a run failed. Whatever the run stored before stays stored.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// The component returned an error.
    #[error("{}", describe_run_error(.0))]
    Component(RunError),
    /// The component went past a limit of the run and was stopped.
    #[error("component stopped: {0}")]
    Limit(LimitExceeded),
    /// The component was stopped: deadline, memory limit or a trap (panic).
    #[error("component stopped: {0}")]
    Trapped(String),
    /// The host is shutting down; the run stopped between two requests.
    #[error("{0}")]
    Interrupted(crate::capabilities::Interrupted),
    /// Another run holds the connection.
    #[error("another run holds connection `{0}`; try again when it ends")]
    Busy(String),
    /// Asked to run only if due, the connection was not (any more): another
    /// worker ran it, or it was paused, since it was found due.
    #[error("connection `{0}` is not due")]
    NotDue(String),
    /// The host could not set the run up.
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

fn describe_run_error(error: &RunError) -> String {
    match error {
        RunError::Provider(p) => {
            let mut text = format!("provider error: HTTP {}", p.status);
            if !p.code.is_empty() {
                text.push_str(&format!(", code {}", p.code));
            }
            if !p.message.is_empty() {
                text.push_str(&format!(": {}", p.message));
            }
            if !p.detail.is_empty() {
                text.push_str(&format!(" ({})", p.detail));
            }
            text
        }
        RunError::InvalidResponse(m) => format!("invalid response from the provider: {m}"),
        RunError::MissingConfig(key) => format!("missing configuration: {key}"),
        RunError::InvalidConfig(m) => format!("invalid configuration: {m}"),
        RunError::Proxy(m) => format!("proxy error: {m}"),
        RunError::Store(m) => format!("store error: {m}"),
    }
}

/// The data of one run's wasmtime store: each capability's context, the
/// WASI that Rust's std needs, and the memory limiter.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_limit: usize,
    peak_memory: usize,
    capabilities: Capabilities,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ResourceLimiter for RunState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.peak_memory = self.peak_memory.max(desired);
        if desired > self.memory_limit {
            wasmtime::bail!(
                "memory limit exceeded: the guest asked for {} MiB, the limit is {} MiB",
                // Rounded up: a request just over the limit must not read as equal to it.
                desired.div_ceil(1 << 20),
                self.memory_limit >> 20
            );
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A compiled sync component, ready to run many times.
pub struct SyncRuntime {
    engine: Engine,
    pre: SyncComponentPre<RunState>,
    imports: Vec<String>,
    metadata: SyncMetadata,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for SyncRuntime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl SyncRuntime {
    /// Compiles the component at `path` and reads its metadata.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        Ok(Self::load(path, None)?.0)
    }

    /// Loads the component at `path`, from `cache` when it holds it compiled
    /// (docs/architecture.md, "Compiled components"), and reads its metadata.
    pub fn load(path: &Path, cache: Option<&cache::ComponentCache>) -> anyhow::Result<(Self, cache::Loaded)> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
        let engine = Engine::new(&engine_config())?;
        let (component, loaded) = match cache {
            Some(cache) => cache.load(&engine, &bytes),
            None => Component::from_binary(&engine, &bytes)
                .map(|c| (c, cache::Loaded::Compiled))
                .map_err(anyhow::Error::from),
        }
        .context("not a valid component")
        .with_context(|| format!("cannot load component {}", path.display()))?;
        let runtime = Self::from_component(engine, component)
            .with_context(|| format!("cannot load component {}", path.display()))?;
        Ok((runtime, loaded))
    }

    /// Compiles a component from its bytes and reads its metadata.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        let component =
            Component::from_binary(&engine, bytes).map_err(anyhow::Error::from).context("not a valid component")?;
        Self::from_component(engine, component)
    }

    fn from_component(engine: Engine, component: Component) -> anyhow::Result<Self> {
        let mut linker = Linker::<RunState>::new(&engine);
        add_std_wasi_to_linker(&mut linker)?;
        capabilities::add_to_linker(
            &mut linker,
            Projections {
                proxy: |s: &mut RunState| &mut s.capabilities.proxy,
                records: |s: &mut RunState| &mut s.capabilities.records,
                checkpoint: |s: &mut RunState| &mut s.capabilities.checkpoint,
                config: |s: &mut RunState| &mut s.capabilities.config,
                logging: |s: &mut RunState| &mut s.capabilities.logging,
            },
        )?;
        let instance_pre = linker.instantiate_pre(&component).map_err(anyhow::Error::from).with_context(|| {
            format!("the component needs imports this host does not provide (it must target {WORLD_PACKAGE})")
        })?;
        let pre = SyncComponentPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export portable-sync:sync/sync@0.2.0")?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), stop_ticker.clone());

        let imports = component.component_type().imports(&engine).map(|(name, _)| name.to_owned()).collect();
        let metadata = call_describe(&engine, &pre)?;
        Ok(SyncRuntime { engine, pre, imports, metadata, stop_ticker })
    }

    /// The interfaces the component imports (its capability surface).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// What the component says it is.
    pub fn metadata(&self) -> &SyncMetadata {
        &self.metadata
    }

    /// One execution of the component with the given capabilities.
    pub fn run(
        &self,
        run_id: &str,
        capabilities: Capabilities,
        limits: InstanceLimits,
    ) -> Result<RunReport, RunFailure> {
        let started = Instant::now();
        let state = RunState {
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
            memory_limit: limits.memory_bytes,
            peak_memory: 0,
            capabilities,
        };
        let mut store = new_store(&self.engine, state, limits);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| RunFailure::Host(anyhow::Error::from(e).context("cannot instantiate")))?;
        let result = instance.portable_sync_sync_sync().call_run(&mut store);
        let state = store.into_data();
        match result {
            Ok(Ok(summary)) => Ok(RunReport {
                run_id: run_id.to_owned(),
                summary,
                outcome: state.capabilities.records.outcome(),
                proxy: state.capabilities.proxy.stats(),
                elapsed: started.elapsed(),
                peak_memory_bytes: state.peak_memory,
            }),
            Ok(Err(error)) => Err(RunFailure::Component(error)),
            Err(trap) => Err(if let Some(limit) = trap.downcast_ref::<LimitExceeded>() {
                RunFailure::Limit(limit.clone())
            } else if let Some(interrupted) = trap.downcast_ref::<crate::capabilities::Interrupted>() {
                RunFailure::Interrupted(interrupted.clone())
            } else {
                RunFailure::Trapped(explain_trap(&trap, limits))
            }),
        }
    }
}

/// The engine configuration every component is compiled for.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

fn new_store(engine: &Engine, state: RunState, limits: InstanceLimits) -> Store<RunState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| state);
    let ticks = (limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    store
}

/// Runs `describe` in an instance whose capabilities do nothing (the export
/// is pure): a component that calls one anyway gets store errors back and
/// an unauthorised proxy.
fn call_describe(engine: &Engine, pre: &SyncComponentPre<RunState>) -> anyhow::Result<SyncMetadata> {
    let state = RunState {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        memory_limit: InstanceLimits::default().memory_bytes,
        peak_memory: 0,
        capabilities: metadata::inert_capabilities()?,
    };
    let mut store =
        new_store(engine, state, InstanceLimits { deadline: Duration::from_secs(10), ..Default::default() });
    let instance = pre.instantiate(&mut store)?;
    let raw = instance
        .portable_sync_sync_sync()
        .call_describe(&mut store)
        .map_err(anyhow::Error::from)
        .context("describe failed")?;
    SyncMetadata::from_wit(raw)
}

fn explain_trap(error: &wasmtime::Error, limits: InstanceLimits) -> String {
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        let deadline = limits.deadline;
        let shown = if deadline.subsec_nanos() == 0 {
            format!("{}s", deadline.as_secs())
        } else {
            format!("{}ms", deadline.as_millis())
        };
        return format!("limit exceeded: deadline of {shown}");
    }
    let chain: Vec<String> = error.chain().map(|cause| cause.to_string()).collect();
    if let Some(memory) = chain.iter().find(|c| c.starts_with("memory limit exceeded")) {
        return memory.clone();
    }
    chain.join(": ")
}

/// Links only the WASI interfaces Rust's standard library imports
/// (`wasi:io`, `wasi:cli`), with a context that grants nothing: no
/// environment, no arguments, no stdin. A component that imports a
/// filesystem, sockets, clocks or randomness fails to load, by name.
fn add_std_wasi_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::p2::bindings::{cli, sync::io};

    struct Io;
    impl wasmtime::component::HasData for Io {
        type Data<'a> = &'a mut ResourceTable;
    }
    io::error::add_to_linker::<RunState, Io>(linker, |state| &mut state.table)?;
    io::poll::add_to_linker::<RunState, Io>(linker, |state| &mut state.table)?;
    io::streams::add_to_linker::<RunState, Io>(linker, |state| &mut state.table)?;
    cli::exit::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::environment::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::stdin::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::stdout::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::stderr::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::terminal_input::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::terminal_output::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::terminal_stdin::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::terminal_stdout::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    cli::terminal_stderr::add_to_linker::<RunState, WasiCli>(linker, RunState::cli)?;
    Ok(())
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("can spawn the epoch ticker");
}
