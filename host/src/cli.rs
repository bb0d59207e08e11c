//! The command line (SPEC §4.4): `run`, `serve`, `demo`, `describe`.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::api::{self, ApiState};
use crate::config::ConnectionConfig;
use crate::proxy::{HttpProxy, RetryPolicy};
use crate::records::sqlite::{SqliteCheckpoints, SqliteStore};
use crate::runtime::{Limits, Progress, RunJob, RunReport, SyncRuntime};

/// Where `cargo build --release --target wasm32-wasip2 -p quickbooks-customers` puts the guest.
pub const BUILT_GUEST: &str = "target/wasm32-wasip2/release/quickbooks_customers.wasm";

#[derive(Parser)]
#[command(name = "sync-host", version, about = "Runs sync components, stores their records, serves them.")]
struct Cli {
    /// More logs on stderr (RUST_LOG overrides).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the component once for a connection; prints a one-line JSON summary.
    Run(RunArgs),
    /// Serve the stored records over HTTP (GET /customers).
    Serve(ServeArgs),
    /// The main job on embedded defaults: a fake QuickBooks on loopback,
    /// synced into a local SQLite file, served over HTTP.
    Demo(crate::demo::DemoArgs),
    /// Serve a fake QuickBooks Online company on loopback (for tests and other hosts).
    FakeQbo(crate::demo::FakeArgs),
    /// Print what a component declares (its `describe`), as JSON.
    Describe {
        /// The component (.wasm); defaults to the built guest.
        #[arg(long)]
        component: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The component (.wasm); defaults to the built guest.
    #[arg(long)]
    component: Option<PathBuf>,
    /// SQLite database file (created if missing).
    #[arg(long)]
    db: PathBuf,
    /// The provider's base URL, e.g. https://quickbooks.api.intuit.com.
    #[arg(long)]
    base_url: String,
    /// The QuickBooks company (realm) id.
    #[arg(long)]
    realm_id: String,
    /// Connection id the records are stored under.
    #[arg(long, default_value = api::DEFAULT_CONNECTION)]
    connection: String,
    /// OAuth access token; never logged.
    #[arg(long, env = "QBO_ACCESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Memory limit of the component, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: usize,
    /// Wall-clock limit of the run, in seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
}

#[derive(Args)]
struct ServeArgs {
    /// SQLite database file written by `run`.
    #[arg(long)]
    db: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Require `Authorization: Bearer <key>`; never logged.
    #[arg(long, env = "SYNC_HOST_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Serve(args) => serve(args),
        Command::Demo(args) => crate::demo::demo(args),
        Command::FakeQbo(args) => crate::demo::fake_qbo(args),
        Command::Describe { component } => describe(component),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

fn one_line(error: &anyhow::Error) -> String {
    error.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}

fn init_logging(verbose: bool) {
    let default = if verbose { "info" } else { "error" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The component to run: the one given, or the built guest next to the
/// working directory or next to this executable's `target/` folder.
pub fn component_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let mut candidates = vec![PathBuf::from(BUILT_GUEST)];
    if let Ok(exe) = std::env::current_exe() {
        // target/release/sync-host → target/wasm32-wasip2/release/...
        if let Some(target) = exe.parent().and_then(Path::parent) {
            candidates.push(target.join("wasm32-wasip2/release/quickbooks_customers.wasm"));
        }
    }
    candidates.into_iter().find(|p| p.exists()).with_context(|| {
        format!(
            "no --component given and {BUILT_GUEST} does not exist; build it with \
             `cargo build --release --target wasm32-wasip2 -p quickbooks-customers`"
        )
    })
}

/// A connection to run a component for.
#[derive(Clone)]
pub struct ConnectionSpec {
    pub connection: String,
    pub base_url: String,
    pub realm_id: String,
    /// Handed to the proxy only; never logged or shown.
    pub token: Option<String>,
    pub retry: RetryPolicy,
    pub limits: Limits,
}

impl std::fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSpec")
            .field("connection", &self.connection)
            .field("base_url", &self.base_url)
            .field("realm_id", &self.realm_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Runs a component once for a connection, storing into the database `db`.
pub fn run_once(
    runtime: &SyncRuntime,
    db: &Path,
    spec: &ConnectionSpec,
    progress: Option<Progress>,
) -> anyhow::Result<RunReport> {
    let job = RunJob {
        connection_id: spec.connection.clone(),
        config: ConnectionConfig::new().with("realmId", &spec.realm_id),
        proxy: HttpProxy::new(&spec.base_url, spec.token.clone(), spec.retry.clone())?,
        records: Box::new(SqliteStore::open(db)?),
        checkpoints: Box::new(SqliteCheckpoints::open(db)?),
        limits: spec.limits,
        progress,
    };
    Ok(runtime.run(job)?)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let path = component_path(args.component)?;
    let runtime = SyncRuntime::from_file(&path)?;
    let spec = ConnectionSpec {
        connection: args.connection,
        base_url: args.base_url,
        realm_id: args.realm_id,
        token: args.token,
        retry: RetryPolicy::default(),
        limits: Limits { memory_bytes: args.memory_mib << 20, deadline: Duration::from_secs(args.timeout_secs) },
    };
    let report = run_once(&runtime, &args.db, &spec, None).context("run failed")?;
    println!("{}", report.to_json());
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state = ApiState::new(args.db.clone(), args.api_key)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!("serving {} on http://{}/customers", args.db.display(), listener.local_addr()?);
        axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

pub(crate) async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn describe(component: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = SyncRuntime::from_file(&component_path(component)?)?;
    let m = runtime.metadata();
    let models: Vec<serde_json::Value> = m
        .models
        .iter()
        .map(|model| {
            serde_json::json!({
                "name": model.name,
                "json_schema": serde_json::from_str::<serde_json::Value>(&model.json_schema).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect();
    let endpoints: Vec<serde_json::Value> = m
        .endpoints
        .iter()
        .map(|e| serde_json::json!({"method": e.method, "path": e.path, "model": e.model}))
        .collect();
    let value = serde_json::json!({
        "name": m.name,
        "description": m.description,
        "version": m.version,
        "scopes": m.scopes,
        "frequency": m.frequency,
        "sync_type": format!("{:?}", m.sync_type).to_lowercase(),
        "endpoints": endpoints,
        "models": models,
    });
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
