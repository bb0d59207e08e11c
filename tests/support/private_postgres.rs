//! A PostgreSQL server of a test's own, for the tests that stop, restart or
//! reconfigure it: `initdb` into a temporary directory, `pg_ctl` on a port
//! of its own with its socket in that directory, so stopping it disturbs no
//! other test (the shared server of `SYNC_HOST_TEST_POSTGRES` is never
//! touched). As root, the server runs as the `postgres` user (it refuses
//! to run as root). Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// The directory of `initdb` and `pg_ctl`: on `PATH`, else Debian's.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = Command::new("sh").args(["-c", "command -v initdb"]).output().ok()?;
    let initdb = String::from_utf8_lossy(&on_path.stdout).trim().to_owned();
    if !initdb.is_empty() {
        let real = std::fs::canonicalize(&initdb).ok()?;
        return real.parent().map(Path::to_owned);
    }
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect();
    versions.sort();
    versions.pop().filter(|bin| bin.join("initdb").exists())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl PrivatePostgres {
    /// A new server, started; `None` (after saying why) where PostgreSQL's
    /// server programs are not installed. In CI they are, and
    /// `SYNC_HOST_TEST_POSTGRES` is set: then a missing server is a failure.
    pub fn start() -> Option<PrivatePostgres> {
        let Some(bin) = postgres_bin() else {
            assert!(
                std::env::var_os("SYNC_HOST_TEST_POSTGRES").is_none(),
                "SYNC_HOST_TEST_POSTGRES is set but initdb and pg_ctl are not installed"
            );
            eprintln!("skipped: initdb and pg_ctl are not installed (Debian: postgresql)");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("private-pg").tempdir().expect("a temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown the data directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = PrivatePostgres { dir, bin, port, as_postgres };
        let data = server.data();
        server.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n\
             max_connections = 100\n",
            server.dir.path().display()
        );
        let conf_path = Path::new(&data).join("postgresql.conf");
        let mut all = std::fs::read_to_string(&conf_path).unwrap();
        all.push_str(&conf);
        std::fs::write(&conf_path, all).unwrap();
        server.start_again();
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let output = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it at once (`pg_ctl stop -m fast`: sessions are cut, as in a
    /// failover or an upgrade's restart).
    pub fn stop(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    /// Starts it (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "start"]);
    }

    /// Runs `sql` on its `postgres` database with psql.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, &self.url()])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}
