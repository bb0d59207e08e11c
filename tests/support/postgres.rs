//! The PostgreSQL side of the tests: a backend when `SYNC_HOST_TEST_POSTGRES`
//! names a server, and a database of its own per test.

#[allow(unused_imports)]
use super::*;

/// Where a test's host keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A server on which each test makes a database of its own.
    Postgres {
        admin_url: String,
    },
}

impl Backend {
    /// PostgreSQL, when `SYNC_HOST_TEST_POSTGRES` names a server; otherwise
    /// `None`, after saying how to run these tests.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("SYNC_HOST_TEST_POSTGRES") {
            Ok(admin_url) if !admin_url.is_empty() => Some(Backend::Postgres { admin_url }),
            _ => {
                say_postgres_skipped();
                None
            }
        }
    }
}

/// Says once per test process that the PostgreSQL tests were skipped and how
/// to run them. Written to the process's stderr itself, not through
/// `eprintln!`, which the test harness captures and hides for a passing test.
fn say_postgres_skipped() {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the PostgreSQL end-to-end tests; set SYNC_HOST_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test to run them"
        );
    });
}

/// A database of its own on a PostgreSQL server, dropped with the value.
pub struct PostgresDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PostgresDatabase {
    pub fn create(admin_url: &str) -> Self {
        let name = format!("sync_host_e2e_{:016x}", rand_u64());
        postgres_admin(admin_url, &format!("CREATE DATABASE {name}"));
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url, String::new()),
        };
        let server = base.rsplit_once('/').map(|(server, _)| server).unwrap_or(base);
        PostgresDatabase { url: format!("{server}/{name}{query}"), admin_url: admin_url.to_owned(), name }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        postgres_admin(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    hasher.finish()
}

/// Runs one statement on the server's maintenance database.
fn postgres_admin(admin_url: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, driver) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("the PostgreSQL server of SYNC_HOST_TEST_POSTGRES answers: {e}"));
        tokio::spawn(driver);
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}
