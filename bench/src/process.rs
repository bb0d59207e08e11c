//! Measuring processes: wall time, peak RSS and bytes written (from
//! `/proc/<pid>`), wrk's figures, and test databases on PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// This process's peak resident set (VmHWM), in KiB.
pub fn own_peak_kb() -> u64 {
    status_kb("/proc/self/status", "VmHWM:").unwrap_or(0)
}

/// Samples anonymous resident memory (RssAnon: heap, stacks, the
/// components' linear memory) of one or more processes and keeps the peak of
/// their sum. VmHWM also counts file pages mapped in, and SQLite maps its
/// database file (mmap_size), so at a million customers VmHWM is mostly the
/// database file in the page cache; RssAnon is what the processes hold.
pub struct AnonPeak {
    pids: Vec<String>,
    peak_kb: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AnonPeak {
    /// This process, every 5 ms.
    pub fn start() -> Self {
        Self::of(vec!["self".into()], Duration::from_millis(5))
    }

    /// The processes `pids` (or `self`), every `every`, until dropped.
    pub fn of(pids: Vec<String>, every: Duration) -> Self {
        use std::sync::atomic::Ordering;
        let peak_kb = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sampled, stopped, sampled_pids) = (peak_kb.clone(), stop.clone(), pids.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                sampled.fetch_max(anonymous_kb(&sampled_pids), Ordering::Relaxed);
                std::thread::sleep(every);
            }
        });
        AnonPeak { pids, peak_kb, stop }
    }

    pub fn peak_kb(&self) -> u64 {
        self.peak_kb.load(std::sync::atomic::Ordering::Relaxed).max(anonymous_kb(&self.pids))
    }
}

impl Drop for AnonPeak {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn anonymous_kb(pids: &[String]) -> u64 {
    pids.iter().map(|pid| status_kb(&format!("/proc/{pid}/status"), "RssAnon:").unwrap_or(0)).sum()
}

/// CPU seconds (user + system, all threads) of process `pid` so far, from
/// `/proc/<pid>/stat` (10 ms resolution); `self` for this process.
pub fn cpu_seconds(pid: impl std::fmt::Display) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: fields 3…; utime and stime are 14 and 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0 // USER_HZ
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM:`, `RssAnon:` …).
pub fn status_kb(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find(|l| l.starts_with("write_bytes:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// What a measured process did.
pub struct Measured {
    pub success: bool,
    pub seconds: f64,
    pub peak_kb: u64,
    pub written_bytes: u64,
}

/// Runs `command` (stdout piped), polling its peak RSS and bytes written
/// until it exits; returns them with its stdout.
pub fn measure(mut command: std::process::Command) -> anyhow::Result<(Measured, String)> {
    use std::io::Read as _;
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_string(&mut text);
        }
        text
    });
    let (mut peak_kb, mut written) = (0, 0);
    let status = loop {
        if let Some(kb) = status_kb(&format!("/proc/{pid}/status"), "VmHWM:") {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(bytes) = written_bytes(pid) {
            written = written.max(bytes);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = started.elapsed().as_secs_f64();
    let output = reader.join().unwrap_or_default();
    Ok((Measured { success: status.success(), seconds, peak_kb, written_bytes: written }, output))
}

/// The workspace root (this binary is in `target/release`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the workspace").to_path_buf()
}

/// The `sync-host` binary built beside this one.
pub fn sync_host() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let host = exe.with_file_name("sync-host");
    anyhow::ensure!(host.exists(), "{} is missing: `cargo build --release -p sync-host`", host.display());
    Ok(host)
}

/// wrk's figures for one URL.
pub struct Load {
    pub requests_per_second: f64,
    pub p50: String,
    pub p99: String,
}

/// Loads `url` with wrk; `None` when wrk is not installed.
pub fn wrk(url: &str, seconds: u64) -> Option<Load> {
    let output = std::process::Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{seconds}s"), "--latency", "-H", "Connection-Id: bench", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    Some(Load { requests_per_second: field("Requests/sec:")?.parse().ok()?, p50: field("50%")?, p99: field("99%")? })
}

/// Where a benchmark run stores: a SQLite file, or a PostgreSQL database of
/// its own, dropped with the value.
pub struct Postgres {
    pub location: String,
    drop: Option<(String, String)>,
}

impl Postgres {
    pub fn none(sqlite: PathBuf) -> Self {
        Postgres { location: sqlite.to_str().unwrap().to_owned(), drop: None }
    }

    pub fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name =
            format!("sync_bench_{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
        admin(admin_url, &format!("CREATE DATABASE {name}"))?;
        let (base, query) = admin_url.split_once('?').map_or((admin_url, String::new()), |(b, q)| (b, format!("?{q}")));
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        Ok(Postgres { location: format!("{server}/{name}{query}"), drop: Some((admin_url.to_owned(), name)) })
    }

    /// The server's sessions on this database now (`None` on SQLite).
    pub fn sessions(&self) -> anyhow::Result<Option<i64>> {
        let Some((admin_url, name)) = &self.drop else { return Ok(None) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let (client, driver) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
            tokio::spawn(driver);
            let row = client.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[name]).await?;
            Ok(Some(row.get(0)))
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.drop.take() {
            let _ = admin(&admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn admin(url: &str, sql: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, driver) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(driver);
        client.batch_execute(sql).await?;
        anyhow::Ok(())
    })
}
