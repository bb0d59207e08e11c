//! Runs sync components: compiles a component once, instantiates it per run
//! with fresh state, under a memory limit and a wall-clock deadline.

use anyhow::Context as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::exports::portable_sync::sync::sync::{Metadata, RunError, Summary, SyncType};
use crate::bindings::{SyncComponent, SyncComponentPre};
use crate::checkpoint::CheckpointStore;
use crate::config::ConnectionConfig;
use crate::proxy::HttpProxy;
use crate::records::{BatchOutcome, RecordStore, StoreError};

/// How often the deadline is checked.
const EPOCH_TICK: Duration = Duration::from_millis(50);

/// Limits applied to each run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest linear memory the guest may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time a run may take, host calls included.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 256 * 1024 * 1024, deadline: Duration::from_secs(30 * 60) }
    }
}

/// Everything one run of a component needs from its connection.
pub struct RunJob {
    pub connection_id: String,
    pub config: ConnectionConfig,
    pub proxy: HttpProxy,
    pub records: Box<dyn RecordStore>,
    pub checkpoints: Box<dyn CheckpointStore>,
    pub limits: Limits,
    /// Called after every stored batch with the run's totals so far.
    pub progress: Option<Progress>,
}

/// A progress callback: the store's totals after each batch.
pub type Progress = Box<dyn FnMut(&BatchOutcome) + Send>;

/// What a successful run did: the component's summary and the store's count.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub summary: Summary,
    pub outcome: BatchOutcome,
    pub elapsed: Duration,
    /// Largest linear memory the component grew to during the run.
    pub peak_memory_bytes: usize,
}

impl RunReport {
    /// The one-line JSON summary `sync-host run` prints.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Line {
            added: u32,
            updated: u32,
            deleted: u32,
            unchanged: u32,
            pages: u32,
            requests: u32,
            retries: u32,
        }
        serde_json::to_string(&Line {
            added: self.outcome.added,
            updated: self.outcome.updated,
            deleted: self.outcome.deleted,
            unchanged: self.outcome.unchanged,
            pages: self.summary.pages,
            requests: self.summary.requests,
            retries: self.summary.retries,
        })
        .expect("a summary serializes")
    }
}

/// Why a run failed. Whatever the run stored before stays stored.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// The component returned an error.
    #[error("{}", describe_run_error(.0))]
    Component(RunError),
    /// The component was stopped: deadline, memory limit or a trap (panic).
    #[error("component stopped: {0}")]
    Trapped(String),
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
        RunError::Proxy(m) => format!("proxy error: {m}"),
        RunError::Store(m) => format!("store error: {m}"),
    }
}

/// The data of one run's store: its capabilities and what it counted.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_limit: usize,
    peak_memory: usize,
    pub(crate) proxy: HttpProxy,
    pub(crate) records: Box<dyn RecordStore>,
    pub(crate) checkpoints: Box<dyn CheckpointStore>,
    pub(crate) config: ConnectionConfig,
    pub(crate) declared_models: Vec<String>,
    pub(crate) connection_id: String,
    pub(crate) sync_name: String,
    pub(crate) run_id: String,
    pub(crate) outcome: BatchOutcome,
    pub(crate) progress: Option<Progress>,
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
            wasmtime::bail!("memory limit exceeded: the guest asked for {} MiB, the limit is {} MiB", desired >> 20, self.memory_limit >> 20);
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
    metadata: Metadata,
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
        let bytes = std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("cannot load component {}", path.display()))
    }

    /// Compiles a component from its bytes and reads its metadata.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let component = Component::from_binary(&engine, bytes).map_err(anyhow::Error::from).context("not a valid component")?;
        let mut linker = Linker::<RunState>::new(&engine);
        add_std_wasi_to_linker(&mut linker)?;
        SyncComponent::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |state| state)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(anyhow::Error::from).context(
            "the component needs imports this host does not provide (it must target portable-sync:sync@0.1.0)",
        )?;
        let pre = SyncComponentPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export portable-sync:sync/sync@0.1.0")?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), stop_ticker.clone());

        let imports = component.component_type().imports(&engine).map(|(name, _)| name.to_owned()).collect();
        let mut runtime = SyncRuntime { engine, pre, imports, metadata: placeholder_metadata(), stop_ticker };
        runtime.metadata = runtime.call_describe()?;
        Ok(runtime)
    }

    /// The interfaces the component imports (its capability surface).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// What the component says it is.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn call_describe(&self) -> anyhow::Result<Metadata> {
        let state = self.state(RunJob {
            connection_id: String::new(),
            config: ConnectionConfig::new(),
            proxy: HttpProxy::new("http://invalid.", None, Default::default())?,
            records: Box::new(Unavailable),
            checkpoints: Box::new(Unavailable),
            limits: Limits::default(),
            progress: None,
        });
        let mut store = self.store(state, Limits::default());
        let instance = self.pre.instantiate(&mut store)?;
        instance.portable_sync_sync_sync().call_describe(&mut store).map_err(anyhow::Error::from).context("describe failed")
    }

    fn state(&self, job: RunJob) -> RunState {
        RunState {
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
            memory_limit: job.limits.memory_bytes,
            peak_memory: 0,
            proxy: job.proxy,
            records: job.records,
            checkpoints: job.checkpoints,
            config: job.config,
            declared_models: self.metadata.models.iter().map(|m| m.name.clone()).collect(),
            connection_id: job.connection_id,
            sync_name: self.metadata.name.clone(),
            run_id: new_run_id(),
            outcome: BatchOutcome::default(),
            progress: job.progress,
        }
    }

    fn store(&self, state: RunState, limits: Limits) -> Store<RunState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        let ticks = (limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    /// One execution of the component for a connection.
    pub fn run(&self, job: RunJob) -> Result<RunReport, RunFailure> {
        let started = Instant::now();
        let limits = job.limits;
        let state = self.state(job);
        let run_id = state.run_id.clone();
        let span = tracing::info_span!("run", connection = %state.connection_id, run = %run_id);
        let _entered = span.enter();
        let mut store = self.store(state, limits);
        let instance = self.pre.instantiate(&mut store).map_err(|e| RunFailure::Host(anyhow::Error::from(e).context("cannot instantiate")))?;
        let result = instance.portable_sync_sync_sync().call_run(&mut store);
        let state = store.into_data();
        match result {
            Ok(Ok(summary)) => Ok(RunReport {
                run_id,
                summary,
                outcome: state.outcome,
                elapsed: started.elapsed(),
                peak_memory_bytes: state.peak_memory,
            }),
            Ok(Err(error)) => Err(RunFailure::Component(error)),
            Err(trap) => Err(RunFailure::Trapped(explain_trap(&trap, limits))),
        }
    }
}

fn explain_trap(error: &wasmtime::Error, limits: Limits) -> String {
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return format!("deadline of {:?} exceeded", limits.deadline);
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

fn new_run_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

fn placeholder_metadata() -> Metadata {
    Metadata {
        name: String::new(),
        description: String::new(),
        version: String::new(),
        scopes: Vec::new(),
        frequency: String::new(),
        sync_type: SyncType::Full,
        endpoints: Vec::new(),
        models: Vec::new(),
    }
}

/// Stands in for the stores while `describe` runs; it calls no import.
struct Unavailable;

impl RecordStore for Unavailable {
    fn save(&mut self, _: &crate::records::Scope, _: &[crate::records::ValidRecord]) -> Result<BatchOutcome, StoreError> {
        Err(StoreError::Backend("no store during describe".into()))
    }
    fn delete(&mut self, _: &crate::records::Scope, _: &[String]) -> Result<BatchOutcome, StoreError> {
        Err(StoreError::Backend("no store during describe".into()))
    }
    fn list(&mut self, _: &crate::records::Scope, _: &crate::records::ListQuery) -> Result<crate::records::ListPage, StoreError> {
        Err(StoreError::Backend("no store during describe".into()))
    }
    fn connection_exists(&mut self, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
}

impl CheckpointStore for Unavailable {
    fn get(&mut self, _: &str, _: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Backend("no checkpoint during describe".into()))
    }
    fn save(&mut self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Backend("no checkpoint during describe".into()))
    }
}
