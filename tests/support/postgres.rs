//! The PostgreSQL side of the tests: a backend when `SYNC_HOST_TEST_POSTGRES`
//! names a server, and a database of its own per test (`pg-scratch`, shared
//! with the host's store tests).

/// A database of its own on the test server, dropped with the value.
pub use pg_scratch::ScratchDatabase as PostgresDatabase;

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
        pg_scratch::server("the PostgreSQL end-to-end tests").map(|admin_url| Backend::Postgres { admin_url })
    }
}

/// A scratch database on the server at `admin_url` for one test.
pub fn scratch_database(admin_url: &str) -> PostgresDatabase {
    PostgresDatabase::create(admin_url, "sync_host_e2e")
}
