//! `sync-bench`: the project's benchmarks (BENCHMARKS.md), printed as a Markdown report.
//!
//! - full-sync throughput and the component's peak memory for N customers,
//!   end to end into SQLite, against a local server of pre-built pages;
//! - the same sync logic compiled natively vs inside wasmtime (sandbox cost);
//! - `GET /customers`: the first page vs a page 1,000,000 records deep.

mod native;
mod pages;

use anyhow::Context as _;
use clap::Parser;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;
use sync_host::api::{self, ApiState};
use sync_host::capabilities::records::validate_batch;
use sync_host::cli::component_path;
use sync_host::provider::{Pacer, ProviderClient, Quota, RetryPolicy, StaticToken};
use sync_host::runs::{ConnectionSpec, Runner};
use sync_host::runtime::SyncRuntime;
use sync_host::store::{self, ListQuery, OpenMode, Position, Scope};

#[derive(Parser)]
#[command(about = "Benchmarks of the customers sync (BENCHMARKS.md).")]
struct Args {
    /// Company sizes for the full-sync benchmark.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<usize>,
    /// Depth of the deep page of GET /customers.
    #[arg(long, default_value_t = 1_000_000)]
    depth: usize,
    /// Requests per page in the pagination benchmark.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The component; defaults to the built guest.
    #[arg(long)]
    component: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = Arc::new(SyncRuntime::from_file(&component_path(args.component.clone())?)?);
    println!("## Full sync, end to end into SQLite\n");
    println!("Median of {ROUNDS} interleaved rounds; each round starts from an empty database.\n");
    println!("| customers | in wasmtime (rec/s) | native (rec/s) | wasmtime / native time | component peak memory | pages |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &n in &args.sizes {
        full_sync(&runtime, n)?;
    }
    println!("\n## GET /customers, first page vs {} records deep (limit=100)\n", args.depth);
    deep_pagination(args.depth, args.samples)?;
    Ok(())
}

/// Rounds of each variant, interleaved; the median is reported.
const ROUNDS: usize = 3;

fn full_sync(runtime: &Arc<SyncRuntime>, n: usize) -> anyhow::Result<()> {
    let server = pages::PageServer::start(n);
    let mut wasm_times = Vec::new();
    let mut native_times = Vec::new();
    let mut peak_memory = 0;
    let mut pages = 0;
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir()?;
        let mut spec = ConnectionSpec::new("bench", &server.base_url, "1", Some("t".into()));
        spec.quota = Some(Quota::default());
        let db = store::open(dir.path().join("wasm.sqlite").to_str().unwrap(), OpenMode::Create)?;
        let report = Runner::new(runtime.clone(), db).run(&spec, None)?;
        anyhow::ensure!(report.outcome.added as usize == n, "wasm run stored {} of {n}", report.outcome.added);
        wasm_times.push(report.elapsed);
        peak_memory = peak_memory.max(report.peak_memory_bytes);
        pages = report.summary.pages;

        let native_db = store::open(dir.path().join("native.sqlite").to_str().unwrap(), OpenMode::Create)?;
        let mut platform = native::NativePlatform {
            client: ProviderClient::new(
                &server.base_url,
                Arc::new(StaticToken::new(Some("t".into()))),
                RetryPolicy::default(),
                Arc::new(Pacer::new(Quota::default())),
                std::time::Duration::ZERO,
            )?,
            records: native_db.records()?,
            checkpoints: native_db.checkpoints()?,
            realm_id: "1".into(),
            connection: "bench".into(),
            outcome: Default::default(),
        };
        let started = Instant::now();
        quickbooks_customers::sync::run(&mut platform).map_err(|e| anyhow::anyhow!("native run: {e}"))?;
        native_times.push(started.elapsed());
        anyhow::ensure!(platform.outcome.added as usize == n, "native run stored {} of {n}", platform.outcome.added);
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (wasm_time, native_time) = (median(&mut wasm_times), median(&mut native_times));
    println!(
        "| {n} | {:.0} | {:.0} | {:.2} | {:.1} MiB | {pages} |",
        n as f64 / wasm_time.as_secs_f64(),
        n as f64 / native_time.as_secs_f64(),
        wasm_time.as_secs_f64() / native_time.as_secs_f64(),
        peak_memory as f64 / (1 << 20) as f64,
    );
    Ok(())
}

fn deep_pagination(depth: usize, samples: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("deep.sqlite");
    let total = depth + 1000;
    let started = Instant::now();
    fill(&db, total)?;
    eprintln!("stored {total} records in {:.1?}", started.elapsed());

    let (cursor_us, cursor_id): (i64, String) = rusqlite_cursor_at(&db, depth)?;
    let deep_cursor = api::encode_cursor(&Position { last_modified_us: cursor_us, id: cursor_id });

    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = ApiState::new(
        store::open(db.to_str().unwrap(), OpenMode::MustExist)?,
        None,
        vec![sync_host::runtime::Endpoint { method: "GET".into(), path: "/customers".into(), model: "Customer".into() }],
    );
    tokio.spawn(async move { axum::serve(listener, api::router(state)).await });
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let headers = [("Connection-Id", "bench")];
    let time = |url: &str| -> anyhow::Result<Duration> {
        let mut timings = Vec::with_capacity(samples);
        for _ in 0..samples + 10 {
            let started = Instant::now();
            let mut request = agent.get(url);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let body = request.call()?.body_mut().read_to_string()?;
            timings.push(started.elapsed());
            anyhow::ensure!(body.contains("\"records\":[{"), "unexpected answer: {}", &body[..body.len().min(200)]);
        }
        timings.drain(..10); // warm-up
        timings.sort();
        Ok(timings[timings.len() / 2])
    };
    let first = time(&format!("{base}/customers?limit=100"))?;
    let deep = time(&format!("{base}/customers?limit=100&cursor={deep_cursor}"))?;
    println!("| page | median latency |");
    println!("|---|---:|");
    println!("| first | {first:.2?} |");
    println!("| {depth} deep | {deep:.2?} |");
    println!("\ndeep / first = **{:.2}**", deep.as_secs_f64() / first.as_secs_f64());
    Ok(())
}

/// Stores `total` small customer records through the real store, in batches.
fn fill(db: &Path, total: usize) -> anyhow::Result<()> {
    let mut store = store::open(db.to_str().unwrap(), OpenMode::Create)?.records()?;
    let scope = Scope { connection: "bench".into(), model: "Customer".into() };
    let mut next = 0;
    while next < total {
        let end = (next + 20_000).min(total);
        let batch: Vec<String> = (next..end)
            .map(|i| format!(r#"{{"id":"{i:08}","display_name":"Customer {i}","balance_cents":{}}}"#, i % 100_000))
            .collect();
        store.save(&scope, &validate_batch(&batch)?)?;
        next = end;
    }
    Ok(())
}

/// The (last_modified_at, id) of the record at 0-based position `index`, read
/// by paging the store itself.
fn rusqlite_cursor_at(db: &Path, index: usize) -> anyhow::Result<(i64, String)> {
    let mut store = store::open(db.to_str().unwrap(), OpenMode::MustExist)?.records()?;
    let scope = Scope { connection: "bench".into(), model: "Customer".into() };
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = store.list(
            &scope,
            &ListQuery { after: after.clone(), limit: 10_000, ..Default::default() },
        )?;
        let last = page.records.last().context("fewer records than the depth")?;
        if seen + page.records.len() > index {
            let record = &page.records[index - seen];
            return Ok((record.last_modified_us, record.id.clone()));
        }
        seen += page.records.len();
        after = Some(Position { last_modified_us: last.last_modified_us, id: last.id.clone() });
    }
}
