//! `sync-bench connections`: the cost of a connection on one long-lived
//! `sync-host serve --schedule` (issue 22). N connections, each its own
//! company of a multi-company fake (`fake-qbo --companies`) that waits a
//! realistic latency per request, are added to one database; `serve` runs
//! them all once (the first full sync), then, with every connection due
//! once more within a window (the 15-minute schedule, compressed) and
//! nothing changed upstream, the idle runs are measured from outside:
//! `serve`'s CPU (user + system, /proc/<pid>/stat) per idle run, schedule lag
//! (a run's start minus the time it was due), peak memory, and provider
//! requests per idle run (its own /metrics).

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sync_host::store::{self, Connection, ConnectionStatus, ConnectionUpdate, OpenMode, StoredCredentials};

const TOKEN: &str = "bench-token";

/// What the benchmark is asked for.
pub struct Plan<'a> {
    pub counts: &'a [usize],
    pub customers: usize,
    pub workers: u16,
    pub latency_ms: u64,
    pub window_secs: u64,
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command`, returning it and the first `http://` address it prints
/// on the stream `from_stderr` names.
fn start_printing_address(mut command: Command, from_stderr: bool) -> anyhow::Result<(Killed, String)> {
    if from_stderr {
        command.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = command.spawn()?;
    let stream: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(child.stderr.take().expect("piped"))
    } else {
        Box::new(child.stdout.take().expect("piped"))
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(address) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(address.trim_end_matches([',', ';', ')']).to_owned());
                }
            }
        }
    });
    let address = rx.recv_timeout(Duration::from_secs(300)).map_err(|_| anyhow::anyhow!("no address printed"))?;
    Ok((Killed(child), address))
}

/// CPU seconds (user + system) of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: fields 3…; utime and stime are 14 and 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0 // USER_HZ
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

/// A counter of `serve`'s metrics (0 when absent).
fn metric(api: &str, name: &str) -> f64 {
    let text = ureq::get(&format!("{api}/metrics")).call().ok().and_then(|mut r| r.body_mut().read_to_string().ok());
    text.unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One row of the table.
struct Row {
    connections: usize,
    first_sync_secs: f64,
    idle_runs: usize,
    cpu_us_per_idle_run: f64,
    cpu_share_at_15_min: f64,
    lag_p50: f64,
    lag_p99: f64,
    peak_mib: f64,
    requests_per_idle_run: f64,
}

pub fn run(component: &Path, plan: &Plan) -> anyhow::Result<()> {
    println!("## Many connections on one `serve --schedule` (SQLite)\n");
    println!(
        "Each connection its own fake company of {} customers, {} ms per request; `serve --workers {}`; \
         idle runs: every connection due once within {} s, nothing changed upstream.\n",
        plan.customers, plan.latency_ms, plan.workers, plan.window_secs
    );
    let mut rows = Vec::new();
    for &count in plan.counts {
        rows.push(one(component, plan, count)?);
    }
    println!(
        "| connections | first full sync of all | idle runs | CPU per idle run | one core at every 15 min | lag p50 | lag p99 | serve peak RSS | provider requests per idle run |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} s | {} | {:.0} µs | {:.2} % | {:.2} s | {:.2} s | {:.0} MiB | {:.1} |",
            r.connections,
            r.first_sync_secs,
            r.idle_runs,
            r.cpu_us_per_idle_run,
            r.cpu_share_at_15_min,
            r.lag_p50,
            r.lag_p99,
            r.peak_mib,
            r.requests_per_idle_run
        );
    }
    if let [first, .., last] = rows.as_slice() {
        let per_connection =
            (last.peak_mib - first.peak_mib) * 1024.0 / (last.connections - first.connections).max(1) as f64;
        println!("\nMemory growth per connection: {per_connection:.1} KiB.\n");
    }
    Ok(())
}

fn one(component: &Path, plan: &Plan, count: usize) -> anyhow::Result<Row> {
    let host = crate::process::sync_host()?;
    let mut fake = Command::new(&host);
    fake.args(["fake-qbo", "--companies", &count.to_string(), "--customers", &plan.customers.to_string()]).args([
        "--archived-fraction",
        "0",
        "--latency-ms",
        &plan.latency_ms.to_string(),
        "--token",
        TOKEN,
    ]);
    let (_fake, fake_url) = start_printing_address(fake, false)?;
    let listed = ureq::get(&format!("{fake_url}/_fake/companies")).call()?.body_mut().read_to_string()?;
    let realms: Vec<String> = serde_json::from_str(&listed)?;

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("connections.sqlite");
    let store = store::open(db.to_str().expect("a UTF-8 path"), OpenMode::Create)?;
    let now = sync_host::time::now_us();
    for (n, realm) in realms.iter().enumerate() {
        let connection = Connection {
            id: format!("c{n:05}"),
            provider: "quickbooks".into(),
            base_url: fake_url.clone(),
            config: BTreeMap::from([("realmId".to_owned(), realm.clone())]),
            every: Some(Duration::from_secs(15 * 60)),
            paused: false,
            status: ConnectionStatus::Idle,
            status_message: None,
            failures: 0,
            next_run_at_us: None,
            webhook_url: None,
            webhook_format: None,
            integration: None,
            notified_at_us: None,
            created_us: now,
            updated_us: now,
        };
        let token = StoredCredentials::AccessToken(TOKEN.to_owned().into());
        store.connections.insert(&connection, &token, &Default::default())?;
    }

    let started = Instant::now();
    let mut serve = Command::new(&host);
    serve
        .args(["serve", "--db", db.to_str().unwrap(), "--listen", "127.0.0.1:0", "--schedule"])
        .args(["--workers", &plan.workers.to_string(), "--component"])
        .arg(component);
    let (serve, api) = start_printing_address(serve, true)?;
    let pid = serve.0.id();
    let successes = |api: &str| metric(api, r#"sync_runs_total{outcome="success"}"#) as usize;
    while successes(&api) < count {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "the first full sync took over an hour");
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_sync_secs = started.elapsed().as_secs_f64();

    // Every connection due once within the window, spread evenly.
    let window_us = plan.window_secs as i64 * 1_000_000;
    let begins = sync_host::time::now_us() + 2_000_000;
    let mut due = BTreeMap::new();
    for n in 0..count {
        let at = begins + window_us * n as i64 / count as i64;
        let update = ConnectionUpdate { next_run_at_us: Some(Some(at)), ..Default::default() };
        store.connections.update(&format!("c{n:05}"), &update)?;
        due.insert(format!("c{n:05}"), at);
    }
    let (cpu_before, requests_before) = (cpu_seconds(pid), metric(&api, "sync_provider_requests_total"));
    let measured_from = Instant::now();
    while successes(&api) < 2 * count {
        anyhow::ensure!(
            measured_from.elapsed() < Duration::from_secs(plan.window_secs + 600),
            "the idle runs did not all happen within the window and ten minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    let requests = metric(&api, "sync_provider_requests_total") - requests_before;
    let mut lags: Vec<f64> = Vec::with_capacity(count);
    for (id, at) in &due {
        let (runs, _) = store.runs.list(id, None, 1)?;
        if let Some(run) = runs.first() {
            lags.push((run.started_us - at) as f64 / 1e6);
        }
    }
    lags.sort_by(f64::total_cmp);
    let peak_mib = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    let cpu_per_run = cpu / count as f64;
    Ok(Row {
        connections: count,
        first_sync_secs,
        idle_runs: count,
        cpu_us_per_idle_run: cpu_per_run * 1e6,
        // Each connection once every 15 minutes: the share of one core.
        cpu_share_at_15_min: cpu_per_run * count as f64 / (15.0 * 60.0) * 100.0,
        lag_p50: percentile(&lags, 0.5),
        lag_p99: percentile(&lags, 0.99),
        peak_mib,
        requests_per_idle_run: requests / count as f64,
    })
}
