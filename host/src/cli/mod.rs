//! The command line (docs/cli.md): `run`, `serve`, `connections`, `demo`,
//! `fake-qbo`, `inspect`, `wait`, `describe`. Each command parses its flags and calls
//! the library.

mod compose;
mod connections;
// The demo and the fake QuickBooks: a test kit, in the default build only
// (`--no-default-features` builds the host without it).
#[cfg(feature = "demo")]
mod demo;
mod progress;
mod wait;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, ApiState, Control};
use crate::capabilities::proxy::ProxyLimits;
use crate::capabilities::records::RecordLimits;
use crate::provider::{Quota, RetryPolicy};
use crate::runs::{ConnectionSpec, RunDefaults, RunLimits, Runner};
use crate::runtime::cache::ComponentCache;
use crate::runtime::{InstanceLimits, SyncRuntime};
use crate::service::Scheduler;
use crate::store::{self, OpenMode, Trigger, WebhookFormat};

pub use progress::RunProgress;

/// Where `cargo build --release --target wasm32-wasip2 -p quickbooks-customers` puts the guest.
pub const BUILT_GUEST: &str = "target/wasm32-wasip2/release/quickbooks_customers.wasm";
/// The connection used when none is named.
pub const DEFAULT_CONNECTION: &str = api::DEFAULT_CONNECTION;

#[derive(Parser)]
#[command(name = "sync-host", version, about = "Runs sync components, stores their records, serves them.")]
struct Cli {
    /// More logs on stderr (RUST_LOG overrides).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Where compiled components are kept (default: $XDG_CACHE_HOME/sync-host,
    /// else ~/.cache/sync-host).
    #[arg(long, global = true, env = "SYNC_HOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile components every time instead of keeping them compiled.
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the component once for a connection; prints a one-line JSON summary.
    Run(RunArgs),
    /// Serve the stored records and the control API over HTTP; with
    /// `--schedule`, also run the stored connections on their intervals.
    Serve(ServeArgs),
    /// Manage the connections the host runs unattended.
    #[command(subcommand)]
    Connections(connections::ConnectionsCommand),
    /// The main job on embedded defaults: a fake QuickBooks on loopback,
    /// synced into a local SQLite file, served over HTTP.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Serve a fake QuickBooks Online company on loopback (for tests and other hosts).
    #[cfg(feature = "demo")]
    FakeQbo(demo::FakeArgs),
    /// Vet a component before running it: what it is, what it imports and
    /// exports, and whether it fits this host; exits 1 when it does not.
    Inspect {
        /// The component (.wasm).
        component: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Wait until a connection on a running `serve` is settled (no run in
    /// flight or due, one finished); print that run; exit 1 if it failed.
    Wait(wait::WaitArgs),
    /// Compose a component with the WASI adapters into one WASI command
    /// that any WASI Preview 2 runtime runs (docs/contract.md, "Composition").
    Compose(compose::ComposeArgs),
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
    /// Where to store: a SQLite file (created if missing) or a postgres:// URL.
    #[arg(long)]
    db: String,
    /// The provider's base URL, e.g. https://quickbooks.api.intuit.com. Without
    /// it, `--connection` names a connection stored with `connections add`.
    #[arg(long, requires = "realm_id", value_parser = parse_http_url)]
    base_url: Option<String>,
    /// The QuickBooks company (realm) id; sets the configuration key `realmId`.
    #[arg(long, requires = "base_url")]
    realm_id: Option<String>,
    /// Connection id the records are stored under.
    #[arg(long, default_value = DEFAULT_CONNECTION)]
    connection: String,
    /// OAuth access token for an ad hoc run (default: $QBO_ACCESS_TOKEN);
    /// never logged. A stored connection uses its own credentials.
    #[arg(long)]
    token: Option<String>,
    /// A configuration value the component reads, `key=value` (repeatable),
    /// e.g. `--config reconcileEvery=6h`.
    #[arg(long = "config", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The longest time a limit may name: a week. Longer ones would overflow the
/// clock's arithmetic, and no run should need them.
const MAX_LIMIT_SECS: u64 = 7 * 86_400;

/// Limits and pacing of runs.
#[derive(Args, Clone)]
pub struct LimitArgs {
    /// Memory limit of the component, in MiB (1 to 4096: a 32-bit
    /// component cannot address more).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_mib: u64,
    /// Wall-clock limit of a run, in seconds (1 to 604800, a week).
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT_SECS))]
    timeout_secs: u64,
    /// Time one provider request may take with all its retries, in seconds
    /// (at most 604800).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(0..=MAX_LIMIT_SECS))]
    retry_budget_secs: u64,
    /// Longest single wait before a retry, in seconds (at most 604800).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(0..=MAX_LIMIT_SECS))]
    retry_max_wait_secs: u64,
    /// Records (or ids) one call of the component may carry.
    #[arg(long, default_value_t = RecordLimits::default().records_per_batch)]
    max_records_per_batch: usize,
    /// Bytes of one record's JSON.
    #[arg(long, default_value_t = RecordLimits::default().bytes_per_record)]
    max_record_bytes: usize,
    /// Bytes of one response from the provider.
    #[arg(long, default_value_t = ProxyLimits::default().bytes_per_response)]
    max_response_bytes: u64,
    /// Requests to the provider in one run (retries not counted).
    #[arg(long, default_value_t = ProxyLimits::default().requests_per_run)]
    max_requests_per_run: u32,
    /// Requests a minute to the provider per connection, overriding the
    /// component's declared quota (0: no limit).
    #[arg(long)]
    requests_per_minute: Option<u32>,
    /// The wait after a connection's first failed run, in seconds; it doubles
    /// with each failure in a row, up to an hour.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT_SECS))]
    failure_backoff_secs: u64,
}

impl LimitArgs {
    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_secs(self.retry_budget_secs),
            max_wait: Duration::from_secs(self.retry_max_wait_secs),
            ..RetryPolicy::default()
        }
    }

    fn limits(&self) -> RunLimits {
        RunLimits {
            instance: InstanceLimits {
                memory_bytes: (self.memory_mib as usize) << 20,
                deadline: Duration::from_secs(self.timeout_secs),
            },
            records: RecordLimits {
                records_per_batch: self.max_records_per_batch,
                bytes_per_record: self.max_record_bytes,
            },
            proxy: ProxyLimits {
                requests_per_run: self.max_requests_per_run,
                bytes_per_response: self.max_response_bytes,
            },
        }
    }

    fn quota(&self) -> Option<Quota> {
        self.requests_per_minute.map(|requests| Quota::per_minute(requests, 0))
    }

    fn defaults(&self) -> RunDefaults {
        RunDefaults {
            retry: self.retry(),
            limits: self.limits(),
            quota: self.quota(),
            failure_backoff: Duration::from_secs(self.failure_backoff_secs),
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    /// The host's database (what `connections add` and `run` wrote): a
    /// SQLite file or a postgres:// URL.
    #[arg(long)]
    db: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Require `Authorization: Bearer <key>`; never logged.
    #[arg(long, env = "SYNC_HOST_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The component whose endpoints to serve and whose connections to run;
    /// defaults to the built guest.
    #[arg(long)]
    component: Option<PathBuf>,
    /// Also run the stored connections, each on its interval.
    #[arg(long)]
    schedule: bool,
    /// Runs in flight at once in this process (at least 1).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// At start-up, how long to wait for a database that cannot be reached
    /// (PostgreSQL restarting, say), trying again with a growing pause, before
    /// giving up; 0: give up at once.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    store_wait_secs: u64,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    webhooks: WebhookArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// How the API bounds its clients (docs/api.md, "Slow and idle clients").
#[derive(Args, Clone)]
struct ServerArgs {
    /// Seconds a client has to send a request's line and headers, from
    /// their first byte.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    api_header_timeout_secs: u64,
    /// Seconds a connection may wait for a request (just opened, or kept
    /// alive after an answer), or for the client to read its answer, before
    /// it is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    api_idle_timeout_secs: u64,
    /// Seconds to read a request's body and answer it; a client still
    /// sending its body then gets a 408 and the connection is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    api_request_timeout_secs: u64,
    /// Connections open at once; at the cap the server accepts no more until
    /// one closes. Lowered, if need be, below the limit of open files, which
    /// is raised to its hard limit at start-up.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
}

/// Webhooks out to the user's application and in from QuickBooks.
#[derive(Args, Clone)]
struct WebhookArgs {
    /// After each run that changed something, or failed, POST a signed JSON
    /// body here (connections may have their own URL).
    #[arg(long, requires = "webhook_secret", value_parser = parse_http_url)]
    webhook_url: Option<String>,
    /// The HMAC-SHA256 key of `X-Sync-Signature` (or env SYNC_HOST_WEBHOOK_SECRET,
    /// or @file); never printed.
    #[arg(long, env = "SYNC_HOST_WEBHOOK_SECRET", hide_env_values = true, value_parser = connections::parse_secret)]
    webhook_secret: Option<connections::Secret>,
    /// The format of the webhooks of connections that name none: `sync-host`
    /// (docs/webhooks.md) or `nango` (Nango's sync webhook, signed with
    /// `X-Nango-Hmac-Sha256`; docs/nango.md).
    #[arg(long, default_value = "sync-host", value_parser = parse_webhook_format)]
    webhook_format: WebhookFormat,
    /// The wait after a delivery's first failed attempt, in seconds; it
    /// doubles each time.
    #[arg(long, default_value_t = 1)]
    webhook_retry_base_secs: u64,
    /// Attempts before a delivery is given up.
    #[arg(long, default_value_t = 12)]
    webhook_max_attempts: u32,
    /// Seconds a delivery attempt may take to connect to the receiver.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    webhook_connect_timeout_secs: u64,
    /// Seconds a delivery attempt may take in all, until the receiver's
    /// answer (its status and headers) has arrived; then it fails and is
    /// tried again on its backoff.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    webhook_timeout_secs: u64,
    /// Delivery attempts in flight at once, each to a different connection's
    /// receiver (a connection's webhooks go one at a time, in order).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    webhook_concurrency: u16,
    /// The verifier token of your Intuit app's webhooks: turns on
    /// `POST /webhooks/quickbooks` (or env QBO_VERIFIER_TOKEN, or @file).
    #[arg(long, env = "QBO_VERIFIER_TOKEN", hide_env_values = true, value_parser = connections::parse_secret)]
    qbo_verifier_token: Option<connections::Secret>,
    /// A notified connection runs once QuickBooks' notifications about it
    /// have been quiet this many seconds (a burst makes one run).
    #[arg(long, default_value_t = 3)]
    webhook_quiet_secs: u64,
}

/// An `http://` or `https://` URL with a host. (Credentials in it are
/// refused after parsing, by [`refuse_credentials_in_url`]: a value refused
/// here is echoed in the error.)
fn parse_webhook_format(text: &str) -> Result<WebhookFormat, String> {
    WebhookFormat::parse(text).ok_or_else(|| format!("`{text}` is not a webhook format; use `sync-host` or `nango`"))
}

/// An integration key (Nango's provider config key): what Nango accepts in
/// one, letters, digits, `-`, `_` and `.`, at most 255 of them.
fn parse_integration(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 255
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not an integration key: use letters, digits, `-`, `_` and `.` (at most 255)"))
    }
}

fn parse_http_url(text: &str) -> Result<String, String> {
    let uri: ureq::http::Uri = text.parse().map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url_carries_credentials(&uri) {
        // Not echoed: refused by `refuse_credentials_in_url`, whatever its scheme.
        return Ok(text.to_owned());
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{text}` must start with http:// or https://"));
    }
    match uri.authority() {
        None => Err(format!("`{text}` names no host")),
        Some(_) => Ok(text.to_owned()),
    }
}

fn url_carries_credentials(uri: &ureq::http::Uri) -> bool {
    uri.authority().is_some_and(|a| a.as_str().contains('@'))
}

/// Refuses a URL with `user:password@` in it, without showing it: the URL is
/// shown wherever the connection is (`connections list`, the API, logs), and
/// credentials have flags of their own, kept secret.
fn refuse_credentials_in_url(flag: &str, url: Option<&str>) -> anyhow::Result<()> {
    let carries = url.and_then(|u| u.parse::<ureq::http::Uri>().ok()).is_some_and(|uri| url_carries_credentials(&uri));
    if carries {
        anyhow::bail!("{flag} must not carry a user name or password; give credentials with their own flags");
    }
    Ok(())
}

/// A connection id: what `Connection-Id`, `/connections/{id}` and the logs
/// carry as is — letters, digits, `-`, `_` and `.`, at most 100.
fn parse_connection_id(text: &str) -> Result<String, String> {
    let fits = !text.is_empty()
        && text.len() <= 100
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fits {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a connection id: use 1 to 100 letters, digits, `-`, `_` or `.`"))
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not key=value")),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let _ = CACHE_DIR.set(if cli.no_cache { None } else { cli.cache_dir.or_else(crate::runtime::cache::default_dir) });
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Serve(args) => serve(args),
        Command::Connections(command) => connections::run(command),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::demo(args),
        #[cfg(feature = "demo")]
        Command::FakeQbo(args) => demo::fake_qbo(args),
        Command::Inspect { component, json } => inspect(&component, json),
        Command::Wait(args) => wait::wait(args),
        Command::Describe { component } => describe(component),
        Command::Compose(args) => compose::compose_command(args),
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
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Libraries whose debug and trace output shows secrets, whatever RUST_LOG
    // asks for: the HTTP client's shows request headers (`Authorization`),
    // the PostgreSQL driver's every statement's parameters (the tokens and
    // client secrets a connection stores).
    // Held at info at most, and at error unless more was asked for: a
    // directive sets a level, so "info" here would turn their info lines
    // (PostgreSQL's notices among them) on for every command.
    let asked = filter.max_level_hint().unwrap_or(tracing_subscriber::filter::LevelFilter::ERROR);
    let most = asked.min(tracing_subscriber::filter::LevelFilter::INFO);
    for library in ["ureq", "ureq_proto", "tokio_postgres", "postgres_protocol", "deadpool_postgres"] {
        filter = filter.add_directive(format!("{library}={most}").parse().expect("a valid directive"));
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The component to run: the one given, or the built guest next to the
/// working directory or next to this executable's `target/` folder. Started
/// by cargo (`cargo demo`) in the source tree, it builds the guest first, so
/// one command does everything (a no-op when the guest is up to date).
pub fn component_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    build_guest_under_cargo()?;
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

/// The compiled-component cache the command line asked for (set once, in `main`).
static CACHE_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// When cargo started this binary (it sets `CARGO`) from the workspace,
/// builds the guest with the command the README gives.
fn build_guest_under_cargo() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else { return Ok(()) };
    if !Path::new("guest/Cargo.toml").exists() || !Path::new("wit/world.wit").exists() {
        return Ok(());
    }
    if !Path::new(BUILT_GUEST).exists() {
        eprintln!("building the customers component (wasm32-wasip2), once; a first build takes a minute…");
    }
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", "quickbooks-customers"])
        .status()
        .context("cannot run cargo to build the component")?;
    anyhow::ensure!(
        status.success(),
        "building the component failed; is the target installed? `rustup target add wasm32-wasip2`"
    );
    Ok(())
}

fn load_component(given: Option<PathBuf>) -> anyhow::Result<Arc<SyncRuntime>> {
    let path = component_path(given)?;
    // A cache that cannot be used (another user's directory, say) is only a
    // slower start: say so and compile.
    let cache = CACHE_DIR.get().cloned().flatten().and_then(|dir| match ComponentCache::open(&dir) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(target: "cache", "not using the compiled-component cache: {e:#}");
            None
        }
    });
    let (runtime, loaded) = SyncRuntime::load(&path, cache.as_ref())?;
    tracing::debug!(target: "cache", component = %path.display(), ?loaded, "component loaded");
    Ok(Arc::new(runtime))
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    refuse_credentials_in_url("--base-url", args.base_url.as_deref())?;
    let runtime = load_component(args.component)?;
    let db = store::open(&args.db, OpenMode::Create)?;
    let runner = Runner::new(runtime.clone(), db);
    let report = match (args.base_url, args.realm_id) {
        (Some(base_url), Some(realm_id)) => {
            // Read here, not by clap: the variable must not make a stored
            // connection's run refuse a `--token` nobody gave.
            let token = args.token.or_else(|| std::env::var("QBO_ACCESS_TOKEN").ok().filter(|t| !t.is_empty()));
            let mut spec = ConnectionSpec::new(
                &args.connection,
                &base_url,
                crate::providers::quickbooks::config(&realm_id),
                token,
            );
            let config: BTreeMap<_, _> = args.config.into_iter().collect();
            if config.get("realmId").is_some_and(|r| *r != realm_id) {
                anyhow::bail!("--config realmId={} contradicts --realm-id {realm_id}", config["realmId"]);
            }
            spec.config.extend(config);
            runtime.metadata().check_config(spec.config.keys()).map_err(anyhow::Error::msg)?;
            spec.retry = args.limits.retry();
            spec.limits = args.limits.limits();
            spec.quota = args.limits.quota();
            runner.run(&spec, None)
        }
        _ => {
            anyhow::ensure!(
                args.config.is_empty() && args.token.is_none(),
                "a stored connection runs with its own configuration and credentials; \
                 --config and --token go with --base-url and --realm-id"
            );
            runner.run_connection(&args.connection, Trigger::Cli, &args.limits.defaults(), None)
        }
    };
    println!("{}", report.context("run failed")?.to_json());
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    refuse_credentials_in_url("--webhook-url", args.webhooks.webhook_url.as_deref())?;
    // Connections for the scheduler's workers (serve without --schedule runs nothing).
    let runs_at_once = if args.schedule { usize::from(args.workers) } else { 0 };
    let wait = Duration::from_secs(args.store_wait_secs);
    let db = store::open_waiting(&args.db, OpenMode::MustExist, wait, runs_at_once)?;
    let runtime = load_component(args.component)?;
    let webhooks = args.webhooks.clone();
    let mut unrecorded = None;
    let scheduler = args.schedule.then(|| {
        let runner = Arc::new(
            Runner::new(runtime.clone(), db.clone())
                .with_webhook_url(webhooks.webhook_url.clone())
                .with_webhook_format(webhooks.webhook_format),
        );
        unrecorded = Some(runner.unrecorded());
        Scheduler::new(
            runner,
            args.limits.defaults(),
            usize::from(args.workers),
            Duration::from_secs(webhooks.webhook_quiet_secs),
        )
    });
    let deliverer = crate::service::Deliverer::new(
        db.clone(),
        webhooks.webhook_secret.map(|s| s.0),
        crate::service::DeliveryPolicy {
            base: Duration::from_secs(webhooks.webhook_retry_base_secs.max(1)),
            max_attempts: webhooks.webhook_max_attempts.max(1),
            connect_timeout: Duration::from_secs(webhooks.webhook_connect_timeout_secs),
            timeout: Duration::from_secs(webhooks.webhook_timeout_secs),
            concurrency: usize::from(webhooks.webhook_concurrency),
        },
    );
    // Descriptors kept from the API's clients: the store's pool and the
    // listener, each run's requests to its provider and its store
    // connection, each delivery attempt's connection, with room to spare.
    let reserved = 128
        + 8 * usize::from(if args.schedule { args.workers } else { 0 })
        + 2 * usize::from(webhooks.webhook_concurrency);
    let limits = api::server::ServerLimits {
        header_timeout: Duration::from_secs(args.server.api_header_timeout_secs),
        idle_timeout: Duration::from_secs(args.server.api_idle_timeout_secs),
        request_timeout: Duration::from_secs(args.server.api_request_timeout_secs),
        max_connections: api::server::connection_cap(args.server.max_connections as usize, reserved),
    };
    let control = Control {
        waker: scheduler.as_ref().map(|s| s.waker()),
        component_interval: runtime.metadata().interval(),
        verifier_token: webhooks.qbo_verifier_token.map(|s| s.0.expose_secret().to_owned()),
        sync_name: runtime.metadata().name.clone(),
        unrecorded,
    };
    let state = ApiState::new(db.clone(), args.api_key, runtime.metadata().endpoints.clone()).with_control(control);
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let endpoints: Vec<String> =
            runtime.metadata().endpoints.iter().map(|e| format!("{} {}", e.method, e.path)).collect();
        let scheduling =
            if args.schedule { format!("; scheduler on, {} workers", args.workers) } else { String::new() };
        eprintln!(
            "serving {} on http://{} ({}, /connections{scheduling})",
            db.describe(),
            listener.local_addr()?,
            endpoints.join(", ")
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let delivering = tokio::spawn(deliverer.run(stopped.clone()));
        let scheduled = scheduler.map(|s| tokio::spawn(s.run(stopped)));
        api::server::serve(listener, api::router(state), limits, async move {
            shutdown_signal().await;
            eprintln!("shutting down: letting runs in flight store their current page");
            let _ = stop.send(true);
        })
        .await?;
        if let Some(scheduled) = scheduled {
            scheduled.await?;
        }
        delivering.await?;
        anyhow::Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("can listen for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
    let inspection =
        crate::runtime::inspect::inspect(&bytes).with_context(|| format!("cannot inspect {}", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", inspect_text(&inspection));
    }
    anyhow::ensure!(
        inspection.fits,
        "{} does not fit this host: {}",
        path.display(),
        inspection.problem.unwrap_or_default()
    );
    Ok(())
}

/// `inspect`'s report for a person.
fn inspect_text(inspection: &crate::runtime::inspect::Inspection) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(m) = &inspection.metadata {
        let _ = writeln!(out, "{} {} ({} sync, {})", m.name, m.version, m.sync_type, m.frequency);
        let _ = writeln!(out, "  {}", m.description);
        let _ = writeln!(out, "scopes: {}", m.scopes.join(", "));
        for e in &m.endpoints {
            let _ = writeln!(out, "endpoint: {} {} -> model {}", e.method, e.path, e.model);
        }
        for model in &m.models {
            let _ = writeln!(out, "model {}: {}", model.name, model.json_schema);
        }
        for key in &m.configuration {
            let _ = writeln!(
                out,
                "config {}{}: {}",
                key.name,
                if key.required { " (required)" } else { "" },
                key.description
            );
        }
        let l = &m.limits;
        let _ = writeln!(
            out,
            "provider limits: {} requests a minute, {} at once, {} s after a 429 without Retry-After",
            l.requests_per_minute, l.max_concurrent, l.throttle_wait_secs
        );
    }
    for import in &inspection.imports {
        let _ = writeln!(
            out,
            "import {}{}",
            import.name,
            if import.provided { "" } else { "  <- not provided by this host" }
        );
    }
    for export in &inspection.exports {
        let _ = writeln!(out, "export {export}");
    }
    let _ = writeln!(out, "{}", if inspection.fits { "fits this host" } else { "does NOT fit this host" });
    out
}

fn describe(component: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = load_component(component)?;
    println!("{}", serde_json::to_string_pretty(runtime.metadata())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_flag_is_defined_consistently() {
        Cli::command().debug_assert();
    }

    /// clap checks a flag's parser against its field only when the value is
    /// read: parse the commands whose flags have parsers of their own.
    #[test]
    fn flags_with_their_own_parsers_parse_into_their_fields() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command;
        #[cfg(feature = "demo")]
        {
            let fake = ["sync-host", "fake-qbo", "--client-id", "c", "--client-secret", "s", "--refresh-token", "t"];
            let Command::FakeQbo(fake) = parse(&fake) else { panic!("fake-qbo") };
            assert_eq!(fake.refresh_token_given(), Some("t"));
        }
        let Command::Wait(_) = parse(&["sync-host", "wait", "acme", "--trigger", "webhook", "--timeout-secs", "5"])
        else {
            panic!("wait")
        };
        assert!(Cli::try_parse_from(["sync-host", "wait", "a b"]).is_err(), "a connection id is checked");
        assert!(Cli::try_parse_from(["sync-host", "wait", "acme", "--trigger", "often"]).is_err());
    }
}
