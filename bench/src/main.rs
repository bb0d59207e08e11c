//! `sync-bench`: the project's benchmarks, printed as Markdown (BENCHMARKS.md
//! holds a run, the machine it ran on, and these commands).
//!
//! - `full-sync`: full-sync throughput end to end into SQLite (or PostgreSQL
//!   with `--postgres`), the same sync compiled natively beside it (the cost
//!   of the sandbox), peak memory of the host process and of the component;
//! - `idle`: wall time of `sync-host run` when nothing changed upstream, with
//!   the compiled-component cache cold and warm;
//! - `api`: `GET /customers`, first page vs a page a million records deep,
//!   and under load from `wrk` when it is installed;
//! - `demo`: `sync-host demo --customers 1000000 --no-serve`, end to end;
//! - `node`: the Node.js host beside `sync-host` on the same company;
//! - `connections`: many connections on one `serve --schedule`, the first
//!   full sync of all and the CPU, lag and memory of idle runs.
//!
//! Runs that measure memory run in child processes, so each figure is that
//! process's own high-water mark.

mod connections;
mod native;
mod pages;
mod process;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The component; defaults to the built guest.
    #[arg(long, global = true)]
    component: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Section>,
}

#[derive(Subcommand)]
enum Section {
    /// Full-sync throughput and memory, in wasmtime and natively.
    FullSync {
        /// Company sizes.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        /// Rounds per size (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// A PostgreSQL server to sync into as well (a database is created and dropped).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Idle runs, compiled-component cache cold and warm.
    Idle {
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
    /// GET /customers: latency first vs deep, and under load.
    Api {
        #[arg(long, default_value_t = 1_000_000)]
        depth: usize,
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Seconds of load per page with wrk.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The demo with a million customers.
    Demo {
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
    },
    /// The Node.js host beside sync-host.
    Node {
        #[arg(long, default_value_t = 25_000)]
        customers: usize,
    },
    /// Many connections on one `serve --schedule`: the cost of a connection.
    Connections {
        /// Connections (each its own fake company), one measurement each.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        counts: Vec<usize>,
        /// Customers of each company.
        #[arg(long, default_value_t = 100)]
        customers: usize,
        /// `serve --workers`: runs in flight at once; several (`16,64`), one
        /// measurement each, give the memory a run in flight adds.
        #[arg(long, value_delimiter = ',', default_value = "64")]
        workers: Vec<u16>,
        /// The fake's wait before each answer, as Intuit's round trip.
        #[arg(long, default_value_t = 150)]
        latency_ms: u64,
        /// The idle runs: every connection due once within this many seconds.
        #[arg(long, default_value_t = 120)]
        window_secs: u64,
        /// Also on PostgreSQL: a server URL (a database of the benchmark's own
        /// is created on it and dropped).
        #[arg(long)]
        postgres: Option<String>,
        /// On PostgreSQL, `serve --schedule` processes sharing the database,
        /// one measurement each.
        #[arg(long, value_delimiter = ',', default_value = "1,3")]
        processes: Vec<usize>,
        /// With `--postgres`, leave out the SQLite measurement.
        #[arg(long, requires = "postgres")]
        postgres_only: bool,
    },
    /// One full sync in this process, for `full-sync` to measure (internal).
    #[command(hide = true)]
    Child {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        db: String,
        #[arg(long)]
        native: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let component = component_path(args.component.clone())?;
    match args.command {
        Some(Section::FullSync { sizes, rounds, postgres }) => {
            full_sync(&component, &sizes, rounds, postgres.as_deref())
        }
        Some(Section::Idle { rounds }) => idle(&component, rounds),
        Some(Section::Api { depth, samples, seconds }) => api_section(depth, samples, seconds),
        Some(Section::Demo { customers }) => demo(&component, customers),
        Some(Section::Node { customers }) => node(&component, customers),
        Some(Section::Connections {
            counts,
            customers,
            workers,
            latency_ms,
            window_secs,
            postgres,
            processes,
            postgres_only,
        }) => {
            let plan = connections::Plan {
                counts: &counts,
                customers,
                workers: &workers,
                latency_ms,
                window_secs,
                postgres: postgres.as_deref(),
                processes: &processes,
                sqlite: !postgres_only,
            };
            connections::run(&component, &plan)
        }
        Some(Section::Child { base_url, db, native }) => child(&component, &base_url, &db, native),
        None => {
            full_sync(&component, &[10_000, 100_000, 1_000_000], 3, None)?;
            idle(&component, 7)?;
            api_section(1_000_000, 200, 10)?;
            demo(&component, 1_000_000)?;
            node(&component, 25_000)
        }
    }
}

/// What one child run reports, as one JSON line.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildReport {
    seconds: f64,
    /// CPU (user + system, every thread) the process spent in the run.
    cpu_seconds: f64,
    /// All the process's CPU, start-up and compiling the component included.
    process_cpu_seconds: f64,
    added: u32,
    pages: u32,
    requests: u32,
    component_peak_bytes: usize,
    process_peak_kb: u64,
    anonymous_peak_kb: u64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn child(component: &Path, base_url: &str, db: &str, native: bool) -> anyhow::Result<()> {
    let anon = process::AnonPeak::start();
    let database = store::open(db, OpenMode::Create)?;
    let report = if native {
        let writes = database.run_writes()?;
        let mut platform = native::NativePlatform {
            client: ProviderClient::new(
                base_url,
                Arc::new(StaticToken::new(Some("t".into()))),
                RetryPolicy::default(),
                Arc::new(Pacer::new(Quota::default())),
                Duration::ZERO,
            )?,
            records: writes.records,
            checkpoints: writes.checkpoints,
            realm_id: "1".into(),
            connection: "bench".into(),
            outcome: Default::default(),
        };
        let started = Instant::now();
        let cpu_before = process::cpu_seconds("self");
        let summary = quickbooks_customers::sync::run(&mut platform).map_err(|e| anyhow::anyhow!("native run: {e}"))?;
        ChildReport {
            seconds: started.elapsed().as_secs_f64(),
            cpu_seconds: process::cpu_seconds("self") - cpu_before,
            process_cpu_seconds: process::cpu_seconds("self"),
            added: platform.outcome.added,
            pages: summary.pages,
            requests: summary.requests,
            component_peak_bytes: 0,
            process_peak_kb: process::own_peak_kb(),
            anonymous_peak_kb: anon.peak_kb(),
        }
    } else {
        let runtime = Arc::new(SyncRuntime::from_file(component)?);
        let mut spec =
            ConnectionSpec::new("bench", base_url, sync_host::providers::quickbooks::config("1"), Some("t".into()));
        spec.quota = Some(Quota::default());
        let cpu_before = process::cpu_seconds("self");
        let report = Runner::new(runtime, database).run(&spec, None)?;
        ChildReport {
            seconds: report.elapsed.as_secs_f64(),
            cpu_seconds: process::cpu_seconds("self") - cpu_before,
            process_cpu_seconds: process::cpu_seconds("self"),
            added: report.outcome.added,
            pages: report.summary.pages,
            requests: report.summary.requests,
            component_peak_bytes: report.peak_memory_bytes,
            process_peak_kb: process::own_peak_kb(),
            anonymous_peak_kb: anon.peak_kb(),
        }
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Runs one full sync of the company at `base_url` into `db` in a child.
fn run_child(component: &Path, base_url: &str, db: &str, native: bool) -> anyhow::Result<ChildReport> {
    // A profiler can wrap the child: SYNC_BENCH_CHILD_WRAPPER="perf record -g -o run.perf --"
    // (BENCHMARKS.md, "Where a customer's CPU goes").
    let wrapper = std::env::var("SYNC_BENCH_CHILD_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.args(words).arg(std::env::current_exe()?);
            command
        }
        None => std::process::Command::new(std::env::current_exe()?),
    };
    command.args(["--component"]).arg(component).args(["child", "--base-url", base_url, "--db", db]);
    if native {
        command.arg("--native");
    }
    let output = command.output()?;
    anyhow::ensure!(output.status.success(), "the child run failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn full_sync(component: &Path, sizes: &[usize], rounds: usize, postgres: Option<&str>) -> anyhow::Result<()> {
    println!("## Full sync, end to end\n");
    println!("Median of {rounds} interleaved rounds, each from an empty database; each run in a process of its own,");
    println!("against a local server of pre-built QuickBooks pages (1,000 customers each).\n");
    println!("| store | customers | in wasmtime (rec/s) | native (rec/s) | wasmtime / native time | CPU per customer: the run, wasmtime | the process, wasmtime | the run, native | requests | host peak RSS | of it anonymous | component peak memory |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in sizes {
        let server = pages::PageServer::start(n);
        let mut backends = vec![("SQLite", None)];
        if let Some(url) = postgres {
            backends.push(("PostgreSQL", Some(url)));
        }
        for (name, postgres) in &backends {
            let (mut wasm, mut native) = (Vec::new(), Vec::new());
            let (mut wasm_cpu, mut wasm_process_cpu, mut native_cpu) = (Vec::new(), Vec::new(), Vec::new());
            let (mut rss, mut anonymous, mut component_peak, mut requests) = (0, 0, 0, 0);
            for _ in 0..rounds {
                for is_native in [false, true] {
                    let dir = tempfile::tempdir()?;
                    let database = match postgres {
                        Some(url) => process::Postgres::create(url)?,
                        None => process::Postgres::none(dir.path().join("bench.sqlite")),
                    };
                    let report = run_child(component, &server.base_url, &database.location, is_native)?;
                    anyhow::ensure!(report.added as usize == n, "stored {} of {n}", report.added);
                    if is_native {
                        native.push(report.seconds);
                        native_cpu.push(report.cpu_seconds);
                    } else {
                        wasm.push(report.seconds);
                        wasm_cpu.push(report.cpu_seconds);
                        wasm_process_cpu.push(report.process_cpu_seconds);
                        rss = rss.max(report.process_peak_kb);
                        anonymous = anonymous.max(report.anonymous_peak_kb);
                        component_peak = component_peak.max(report.component_peak_bytes);
                        requests = report.requests;
                    }
                }
            }
            let (wasm, native) = (median(wasm), median(native));
            let per_customer_us = |cpu: Vec<f64>| median(cpu) / n as f64 * 1e6;
            println!(
                "| {name} | {n} | {:.0} | {:.0} | {:.2} | {:.1} µs | {:.1} µs | {:.1} µs | {requests} | {:.0} MiB | {:.0} MiB | {:.1} MiB |",
                n as f64 / wasm,
                n as f64 / native,
                wasm / native,
                per_customer_us(wasm_cpu),
                per_customer_us(wasm_process_cpu),
                per_customer_us(native_cpu),
                rss as f64 / 1024.0,
                anonymous as f64 / 1024.0,
                component_peak as f64 / (1 << 20) as f64,
            );
        }
    }
    println!();
    Ok(())
}

fn idle(component: &Path, rounds: usize) -> anyhow::Result<()> {
    println!("## An idle run: nothing changed upstream\n");
    println!("`sync-host run` as a process, after a full sync of 2,033 customers; median of {rounds} runs.\n");
    let fake = fake_qbo::FakeQbo::new("1", "t");
    fake.seed_recorded();
    fake.seed_generated(2000, &Default::default());
    let server = fake.start()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("idle.sqlite");
    let cache = dir.path().join("cache");
    let host = process::sync_host()?;
    let run = |cache_args: &[&str]| -> anyhow::Result<f64> {
        let started = Instant::now();
        let output = std::process::Command::new(&host)
            .args(["run", "--db", db.to_str().unwrap(), "--base-url", &server.base_url(), "--realm-id", "1"])
            .arg("--component")
            .arg(component)
            .args(cache_args)
            .env("QBO_ACCESS_TOKEN", "t")
            .output()?;
        anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        Ok(started.elapsed().as_secs_f64())
    };
    let warm = ["--cache-dir", cache.to_str().unwrap()];
    run(&warm)?; // the full sync, which also fills the cache
    let cold: Vec<f64> = (0..rounds).map(|_| run(&["--no-cache"])).collect::<anyhow::Result<_>>()?;
    let warm: Vec<f64> = (0..rounds).map(|_| run(&warm)).collect::<anyhow::Result<_>>()?;
    let (cold, warm) = (median(cold), median(warm));
    println!("| compiled-component cache | wall time of the run |");
    println!("|---|---:|");
    println!("| cold (`--no-cache`: compiled every time) | {:.0} ms |", cold * 1000.0);
    println!("| warm | {:.0} ms |", warm * 1000.0);
    println!("\ncold / warm = **{:.1}**\n", cold / warm);
    Ok(())
}

fn api_section(depth: usize, samples: usize, seconds: u64) -> anyhow::Result<()> {
    println!("## GET /customers\n");
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("deep.sqlite");
    let total = depth + 1000;
    let started = Instant::now();
    fill(&db, total)?;
    eprintln!("stored {total} records in {:.1?}", started.elapsed());
    let (cursor_us, cursor_id) = cursor_at(&db, depth)?;
    let deep_cursor = api::encode_cursor(&Position { last_modified_us: cursor_us, id: cursor_id });

    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = ApiState::new(
        store::open(db.to_str().unwrap(), OpenMode::MustExist)?,
        None,
        vec![sync_host::runtime::Endpoint {
            method: "GET".into(),
            path: "/customers".into(),
            model: "Customer".into(),
            model_schema: None,
        }],
    );
    tokio.spawn(async move { axum::serve(listener, api::router(state)).await });
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let time = |url: &str| -> anyhow::Result<Duration> {
        let mut timings = Vec::with_capacity(samples);
        for _ in 0..samples + 10 {
            let started = Instant::now();
            let body = agent.get(url).header("Connection-Id", "bench").call()?.body_mut().read_to_string()?;
            timings.push(started.elapsed());
            anyhow::ensure!(body.contains("\"records\":[{"), "unexpected answer: {}", &body[..body.len().min(200)]);
        }
        timings.drain(..10); // warm-up
        timings.sort();
        Ok(timings[timings.len() / 2])
    };
    let first_url = format!("{base}/customers?limit=100");
    let deep_url = format!("{base}/customers?limit=100&cursor={deep_cursor}");
    let first = time(&first_url)?;
    let deep = time(&deep_url)?;
    println!("One client, limit=100, median of {samples} requests:\n");
    println!("| page | median latency |");
    println!("|---|---:|");
    println!("| first | {first:.2?} |");
    println!("| {depth} records deep | {deep:.2?} |");
    println!("\ndeep / first = **{:.2}**\n", deep.as_secs_f64() / first.as_secs_f64());

    match process::wrk(&first_url, seconds) {
        Some(first_load) => {
            let deep_load = process::wrk(&deep_url, seconds).context("wrk ran once, then failed")?;
            println!("Under load: `wrk -t2 -c16 -d{seconds}s --latency` (2 threads, 16 connections), limit=100:\n");
            println!("| page | requests/s | p50 | p99 |");
            println!("|---|---:|---:|---:|");
            for (name, load) in [("first", first_load), (&format!("{depth} deep")[..], deep_load)] {
                println!("| {name} | {:.0} | {} | {} |", load.requests_per_second, load.p50, load.p99);
            }
            println!();
        }
        None => println!("(wrk is not installed: `apt-get install wrk` for the figures under load)\n"),
    }
    Ok(())
}

fn demo(component: &Path, customers: usize) -> anyhow::Result<()> {
    println!("## The demo with {customers} customers\n");
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("demo.sqlite");
    let mut command = std::process::Command::new(process::sync_host()?);
    command
        .args(["demo", "--no-serve", "--customers", &customers.to_string(), "--db", db.to_str().unwrap()])
        .arg("--component")
        .arg(component)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let (measured, output) = process::measure(command)?;
    anyhow::ensure!(measured.success, "the demo failed");
    let full = output.lines().find(|l| l.starts_with("full sync: {")).unwrap_or("").to_owned();
    println!("`sync-host demo --customers {customers} --no-serve`: seeds the fake, syncs fully, then the notified incremental run.\n");
    println!("| wall time, all of it | peak RSS (fake company included) | full sync |");
    println!("|---:|---:|---|");
    println!(
        "| {:.1} s | {:.0} MiB | {} |\n",
        measured.seconds,
        measured.peak_kb as f64 / 1024.0,
        full.trim_start_matches("full sync: ")
    );
    Ok(())
}

fn node(component: &Path, customers: usize) -> anyhow::Result<()> {
    println!("## The Node.js host beside sync-host\n");
    let fake = fake_qbo::FakeQbo::new("1", "t");
    fake.seed_generated(customers, &Default::default());
    let server = fake.start()?;
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let host = process::sync_host()?;
    let node_run = process::workspace().join("host/node/run.mjs");
    let runs = [
        ("warm-up", "sync-host", dir.path().join("warm-rust.sqlite")),
        ("warm-up", "Node host", dir.path().join("warm-node.sqlite")),
        ("measured", "sync-host", dir.path().join("rust.sqlite")),
        ("measured", "Node host", dir.path().join("node.sqlite")),
    ];
    for (purpose, name, db) in runs {
        let mut command = if name == "sync-host" {
            let mut c = std::process::Command::new(&host);
            c.args(["run", "--requests-per-minute", "0", "--db", db.to_str().unwrap()]);
            c
        } else {
            let mut c = std::process::Command::new("node");
            c.arg(&node_run).args(["--requests-per-minute", "0", "--db", db.to_str().unwrap()]);
            c
        };
        command
            .args(["--base-url", &server.base_url(), "--realm-id", "1", "--component"])
            .arg(component)
            .env("QBO_ACCESS_TOKEN", "t")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let (measured, output) = process::measure(command)?;
        anyhow::ensure!(measured.success, "{name} failed: {output}");
        if purpose == "measured" {
            rows.push((name, measured, output.trim().to_owned()));
        }
    }
    println!("A full sync of {customers} customers from the fake QuickBooks, each host a process of its own");
    println!("(after a warm-up run of each: compiled-component and transpile caches warm, files in the page cache):\n");
    println!("| host | wall time | customers/s | peak RSS | bytes written to disk |");
    println!("|---|---:|---:|---:|---:|");
    for (name, measured, _) in &rows {
        println!(
            "| {name} | {:.2} s | {:.0} | {:.0} MiB | {:.0} MiB |",
            measured.seconds,
            customers as f64 / measured.seconds,
            measured.peak_kb as f64 / 1024.0,
            measured.written_bytes as f64 / (1 << 20) as f64
        );
    }
    println!();
    Ok(())
}

/// Stores `total` small customer records through the real store, in batches.
fn fill(db: &Path, total: usize) -> anyhow::Result<()> {
    let mut store = store::open(db.to_str().unwrap(), OpenMode::Create)?.run_writes()?.records;
    let scope = Scope { connection: "bench".into(), model: "Customer".into() };
    let mut next = 0;
    while next < total {
        let end = (next + 20_000).min(total);
        let batch: Vec<String> = (next..end)
            .map(|i| format!(r#"{{"balance_cents":{},"display_name":"Customer {i}","id":"{i:08}"}}"#, i % 100_000))
            .collect();
        store.save(&scope, &validate_batch(&batch)?)?;
        next = end;
    }
    Ok(())
}

/// The (last_modified_at, id) of the record at 0-based position `index`.
fn cursor_at(db: &Path, index: usize) -> anyhow::Result<(i64, String)> {
    let store = store::open(db.to_str().unwrap(), OpenMode::MustExist)?;
    let store = &store.records;
    let scope = Scope { connection: "bench".into(), model: "Customer".into() };
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = store.list(&scope, &ListQuery { after: after.clone(), limit: 10_000, ..Default::default() })?;
        let last = page.records.last().context("fewer records than the depth")?;
        if seen + page.records.len() > index {
            let record = &page.records[index - seen];
            return Ok((record.last_modified_us, record.id.clone()));
        }
        seen += page.records.len();
        after = Some(Position { last_modified_us: last.last_modified_us, id: last.id.clone() });
    }
}
