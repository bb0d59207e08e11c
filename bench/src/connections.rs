//! `sync-bench connections`: the cost of a connection on one long-lived
//! `sync-host serve --schedule` (issue 22). N connections, each its own
//! company of a multi-company fake (`fake-qbo --companies`) that waits a
//! realistic latency per request, are added to one database; `serve` runs
//! them all once (the first full sync), then, with every connection due
//! once more within a window (the 15-minute schedule, compressed) and
//! nothing changed upstream, the idle runs are measured from outside:
//! `serve`'s CPU (user + system, /proc/<pid>/stat) per idle run, schedule lag
//! (a run's start minus the time it was due), peak memory (and, with
//! several `--workers`, what a run in flight adds), and provider
//! requests per idle run (its own /metrics). On PostgreSQL, with several
//! `serve` processes on one database: each one's CPU, and that no connection
//! ran twice or not at all.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::cpu_seconds;
use sync_host::store::{self, Connection, ConnectionStatus, ConnectionUpdate, OpenMode, StoredCredentials};

const TOKEN: &str = "bench-token";

/// The connections' interval until the idle window is set: then [`INTERVAL`].
const FIRST_SYNC_INTERVAL: Duration = Duration::from_secs(2 * 3600);

/// The schedule the idle runs measure: every connection every 15 minutes.
const INTERVAL: Duration = Duration::from_secs(15 * 60);

/// What the benchmark is asked for.
pub struct Plan<'a> {
    pub counts: &'a [usize],
    pub customers: usize,
    /// `serve --workers`, one measurement each.
    pub workers: &'a [u16],
    pub latency_ms: u64,
    pub window_secs: u64,
    /// A PostgreSQL server to measure on too.
    pub postgres: Option<&'a str>,
    /// `serve` processes on PostgreSQL, one measurement each.
    pub processes: &'a [usize],
    /// Measure on SQLite too.
    pub sqlite: bool,
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

fn status_kib(pid: u32, field: &str) -> u64 {
    crate::process::status_kb(&format!("/proc/{pid}/status"), field).unwrap_or(0)
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
    store: &'static str,
    processes: usize,
    workers: u16,
    connections: usize,
    first_sync_secs: f64,
    idle_runs: usize,
    /// Connections that ran more than once, or not at all, in the idle window.
    run_twice: usize,
    not_run: usize,
    cpu_us_per_idle_run: f64,
    cpu_share_at_15_min: f64,
    /// The busiest process's share.
    busiest_share_at_15_min: f64,
    lag_p50: f64,
    lag_p99: f64,
    peak_mib: f64,
    anonymous_peak_mib: f64,
    most_in_flight: usize,
    /// The most runs in flight during the first sync, when the peak
    /// memory is reached.
    most_in_flight_first_sync: usize,
    /// The most server connections the database had open (PostgreSQL).
    server_connections: Option<i64>,
    /// Samples of the server's connections it refused (it had none left).
    sessions_refused: usize,
    requests_per_idle_run: f64,
}

pub fn run(component: &Path, plan: &Plan) -> anyhow::Result<()> {
    println!("## Many connections on one `serve --schedule`\n");
    println!(
        "Each connection its own fake company of {} customers, {} ms per request; \
         idle runs: every connection due once within {} s, nothing changed upstream.\n",
        plan.customers, plan.latency_ms, plan.window_secs
    );
    let mut setups: Vec<(&'static str, usize)> = if plan.sqlite { vec![("SQLite", 1)] } else { Vec::new() };
    if plan.postgres.is_some() {
        setups.extend(plan.processes.iter().map(|&n| ("PostgreSQL", n)));
    }
    let mut rows = Vec::new();
    for &count in plan.counts {
        for &(store, processes) in &setups {
            for &workers in plan.workers {
                rows.push(one(component, plan, count, store, processes, workers)?);
            }
        }
    }
    println!(
        "| store | serve processes | workers each | connections | first full sync of all | idle runs | run twice / not run | CPU per idle run | one core at every 15 min | busiest process | lag p50 | lag p99 | serve peak RSS | of it anonymous | most runs in flight, idle / first sync | server connections, most | provider requests per idle run |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} s | {} | {} / {} | {:.0} µs | {:.2} % | {:.2} % | {:.2} s | {:.2} s | {:.0} MiB | {:.0} MiB | {} / {} | {} | {:.1} |",
            r.store,
            r.processes,
            r.workers,
            r.connections,
            r.first_sync_secs,
            r.idle_runs,
            r.run_twice,
            r.not_run,
            r.cpu_us_per_idle_run,
            r.cpu_share_at_15_min,
            r.busiest_share_at_15_min,
            r.lag_p50,
            r.lag_p99,
            r.peak_mib,
            r.anonymous_peak_mib,
            r.most_in_flight,
            r.most_in_flight_first_sync,
            match (r.server_connections, r.sessions_refused) {
                (None, _) => "–".to_owned(),
                (Some(n), 0) => n.to_string(),
                (Some(n), refused) => format!("{n}, the server full {refused} times"),
            },
            r.requests_per_idle_run
        );
    }
    // Growth per connection: SQLite rows of one `--workers` and different
    // counts; per run in flight: rows of one count and different `--workers`,
    // against the most runs in flight each saw during its first sync, where
    // the peak is reached.
    let sqlite =
        |keep: &dyn Fn(&Row) -> bool| -> Vec<&Row> { rows.iter().filter(|r| r.store == "SQLite" && keep(r)).collect() };
    let growth = |first: &Row, last: &Row, by: f64| {
        (
            (last.peak_mib - first.peak_mib) * 1024.0 / by,
            (last.anonymous_peak_mib - first.anonymous_peak_mib) * 1024.0 / by,
        )
    };
    for &workers in plan.workers {
        if let [first, .., last] = sqlite(&|r| r.workers == workers).as_slice() {
            let (rss, anonymous) = growth(first, last, (last.connections - first.connections).max(1) as f64);
            println!(
                "\nOn SQLite, `--workers {workers}`, memory growth per connection: {rss:.1} KiB (peak RSS), \
                 {anonymous:.1} KiB (anonymous)."
            );
        }
    }
    for &count in plan.counts {
        if let [first, .., last] = sqlite(&|r| r.connections == count).as_slice() {
            let (from, to) = (first.most_in_flight_first_sync, last.most_in_flight_first_sync);
            if to > from {
                let (rss, anonymous) = growth(first, last, (to - from) as f64);
                println!(
                    "\nOn SQLite, {count} connections, memory growth per run in flight (from {from} to {to} at once): \
                     {rss:.0} KiB (peak RSS), {anonymous:.0} KiB (anonymous)."
                );
            }
        }
    }
    println!();
    Ok(())
}

fn one(
    component: &Path,
    plan: &Plan,
    count: usize,
    kind: &'static str,
    processes: usize,
    workers: u16,
) -> anyhow::Result<Row> {
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
    let database = match (kind, plan.postgres) {
        ("PostgreSQL", Some(url)) => crate::process::Postgres::create(url)?,
        _ => crate::process::Postgres::none(dir.path().join("connections.sqlite")),
    };
    let store = store::open(&database.location, OpenMode::Create)?;
    let now = sync_host::time::now_us();
    for (n, realm) in realms.iter().enumerate() {
        let connection = Connection {
            id: format!("c{n:06}"),
            provider: "quickbooks".into(),
            base_url: fake_url.clone(),
            config: BTreeMap::from([("realmId".to_owned(), realm.clone())]),
            // Longer than the first sync and the setting of the window
            // below take: no connection comes due again on its own
            // meanwhile (at 100,000, setting the window takes minutes).
            every: Some(FIRST_SYNC_INTERVAL),
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
    let mut serves = Vec::new();
    for _ in 0..processes {
        let mut serve = Command::new(&host);
        serve
            .args(["serve", "--db", &database.location, "--listen", "127.0.0.1:0", "--schedule"])
            .args(["--workers", &workers.to_string(), "--component"])
            .arg(component);
        serves.push(start_printing_address(serve, true)?);
    }
    let pids: Vec<u32> = serves.iter().map(|(serve, _)| serve.0.id()).collect();
    let apis: Vec<String> = serves.iter().map(|(_, api)| api.clone()).collect();
    let anonymous = crate::process::AnonPeak::of(pids.iter().map(u32::to_string).collect(), Duration::from_millis(100));
    // Polled once a second: a scrape costs `serve` a little CPU too (a
    // Prometheus server would scrape every 15 s or more).
    let sum = |name: &str| apis.iter().map(|api| metric(api, name)).sum::<f64>();
    let successes = || sum(r#"sync_runs_total{outcome="success"}"#) as usize;
    let in_flight = || -> anyhow::Result<usize> {
        let by_status = store.connections.count_by_status()?;
        Ok(by_status.iter().find(|(status, _)| status == "running").map_or(0, |(_, n)| *n as usize))
    };
    let mut server_connections = database.sessions()?;
    let mut sessions_refused = 0;
    // A server with no connection left refuses the sampler's too: counted.
    let mut sample_sessions = || -> anyhow::Result<()> {
        match (server_connections.as_mut(), database.sessions()) {
            (Some(most), Ok(Some(now))) => *most = (*most).max(now),
            (Some(_), Err(_)) => sessions_refused += 1,
            _ => {}
        }
        Ok(())
    };
    let mut most_in_flight_first_sync = 0;
    while successes() < count {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "the first full sync took over an hour");
        most_in_flight_first_sync = most_in_flight_first_sync.max(in_flight()?);
        sample_sessions()?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let first_sync_secs = started.elapsed().as_secs_f64();

    // Counted from before the window is set: at 100,000 setting it takes
    // minutes, in which the first of the idle runs already happen.
    let cpu_before: Vec<f64> = pids.iter().map(|&pid| cpu_seconds(pid)).collect();
    let requests_before = sum("sync_provider_requests_total");
    // Every connection due once within the window, spread evenly.
    let window_us = plan.window_secs as i64 * 1_000_000;
    let begins = sync_host::time::now_us() + 2_000_000;
    let mut due = BTreeMap::new();
    let (setting, mut set_late, mut latest_by_us) = (Instant::now(), 0, 0);
    for n in 0..count {
        let planned = begins + window_us * n as i64 / count as i64;
        // Where setting the window falls behind its own plan (at 100,000 an
        // update has 9 ms), a due time already past would count the
        // benchmark's lateness as the scheduler's: it is set a little
        // ahead instead, and counted.
        let soonest = sync_host::time::now_us() + 100_000;
        let at = planned.max(soonest);
        if at > planned {
            set_late += 1;
            latest_by_us = latest_by_us.max(at - planned);
        }
        let update =
            ConnectionUpdate { every: Some(Some(INTERVAL)), next_run_at_us: Some(Some(at)), ..Default::default() };
        store.connections.update(&format!("c{n:06}"), &update)?;
        due.insert(format!("c{n:06}"), at);
    }
    eprintln!(
        "{kind}, {processes} × --workers {workers}, {count} connections: setting the window took {:.1} s; \
         {set_late} due times moved later than planned (by up to {:.1} s), the update being late",
        setting.elapsed().as_secs_f64(),
        latest_by_us as f64 / 1e6
    );
    let measured_from = Instant::now();
    let mut most_in_flight = 0;
    while successes() < 2 * count {
        anyhow::ensure!(
            measured_from.elapsed() < Duration::from_secs(plan.window_secs + 600),
            "the idle runs did not all happen within the window and ten minutes"
        );
        most_in_flight = most_in_flight.max(in_flight()?);
        sample_sessions()?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu: Vec<f64> = pids.iter().zip(&cpu_before).map(|(&pid, before)| cpu_seconds(pid) - before).collect();
    let requests = sum("sync_provider_requests_total") - requests_before;
    let (mut lags, mut run_twice, mut not_run) = (Vec::with_capacity(count), 0, 0);
    for (id, at) in &due {
        let (runs, _) = store.runs.list(id, None, 3)?;
        // Before its next 15-minute run: at 100,000 counting the runs takes
        // long enough for the first connections to come due again.
        let next_due = at + INTERVAL.as_micros() as i64;
        let in_window: Vec<_> =
            runs.iter().filter(|run| run.started_us >= begins && run.started_us < next_due).collect();
        match in_window.as_slice() {
            [] => not_run += 1,
            [run] => lags.push((run.started_us - at) as f64 / 1e6),
            [.., first] => {
                run_twice += 1;
                lags.push((first.started_us - at) as f64 / 1e6);
                if run_twice <= 3 {
                    let runs: Vec<String> = in_window
                        .iter()
                        .map(|run| {
                            format!(
                                "started {:+.3} s, ended {:+.3} s, by {}",
                                (run.started_us - at) as f64 / 1e6,
                                run.ended_us.map_or(f64::NAN, |end| (end - at) as f64 / 1e6),
                                run.worker.as_deref().unwrap_or("?")
                            )
                        })
                        .collect();
                    eprintln!(
                        "{id}, due at the window's {:.3} s, ran twice: {}",
                        (at - begins) as f64 / 1e6,
                        runs.join("; ")
                    );
                }
            }
        }
    }
    lags.sort_by(f64::total_cmp);
    let peak_mib = pids.iter().map(|&pid| status_kib(pid, "VmHWM:")).sum::<u64>() as f64 / 1024.0;
    // Each connection runs once every 15 minutes: CPU of one round of idle
    // runs over 15 minutes is the share of one core.
    let share = |cpu: f64| cpu / INTERVAL.as_secs_f64() * 100.0;
    let total_cpu: f64 = cpu.iter().sum();
    let cpu_per_run = total_cpu / count as f64;
    Ok(Row {
        store: kind,
        processes,
        workers,
        connections: count,
        first_sync_secs,
        idle_runs: count,
        run_twice,
        not_run,
        cpu_us_per_idle_run: cpu_per_run * 1e6,
        cpu_share_at_15_min: share(total_cpu),
        busiest_share_at_15_min: cpu.iter().copied().map(share).fold(0.0, f64::max),
        lag_p50: percentile(&lags, 0.5),
        lag_p99: percentile(&lags, 0.99),
        peak_mib,
        anonymous_peak_mib: anonymous.peak_kb() as f64 / 1024.0,
        most_in_flight,
        most_in_flight_first_sync,
        server_connections,
        sessions_refused,
        requests_per_idle_run: requests / count as f64,
    })
}
