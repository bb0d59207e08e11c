//! The PostgreSQL side of the tests, for the host's store tests and the
//! end-to-end tests alike: the server named by `SYNC_HOST_TEST_POSTGRES`, if
//! any, and a scratch database of its own per test, dropped with the value.

/// The variable that names the test server.
pub const VARIABLE: &str = "SYNC_HOST_TEST_POSTGRES";

/// The test server's URL (e.g. `postgres://postgres@127.0.0.1:5432/test`),
/// or `None` after saying, once per process, that `what` were skipped and how
/// to run them. Said on the process's stderr itself, not through
/// `eprintln!`, which the test harness captures and hides for a passing test.
pub fn server(what: &str) -> Option<String> {
    match std::env::var(VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            use std::io::Write;
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {what}; set {VARIABLE}=postgres://postgres@127.0.0.1:5432/test to run them"
                );
            });
            None
        }
    }
}

/// A database of its own on the test server, dropped (its sessions ended)
/// with the value.
pub struct ScratchDatabase {
    /// Its URL: the server's, with this database's name.
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<random>` on the server at `admin_url`.
    pub fn create(admin_url: &str, prefix: &str) -> Self {
        let name = format!("{prefix}_{:016x}", random());
        admin(admin_url, &format!("CREATE DATABASE {name}"));
        ScratchDatabase { url: with_database(admin_url, &name), name, admin_url: admin_url.to_owned() }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        admin(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// `admin_url` with its database replaced by `name` (a query string kept).
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let server = match base.find("://") {
        Some(scheme) => match base[scheme + 3..].find('/') {
            Some(slash) => &base[..scheme + 3 + slash],
            None => base,
        },
        None => base,
    };
    format!("{server}/{name}{query}")
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    hasher.finish()
}

/// Runs one statement on the server's maintenance database, on a runtime of
/// its own (callers may be inside another).
fn admin(admin_url: &str, sql: &str) {
    let (admin_url, sql) = (admin_url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (client, driver) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("the PostgreSQL server of {VARIABLE} answers: {e}"));
            tokio::spawn(driver);
            client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    })
    .join()
    .expect("the statement ran");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        use super::with_database;
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
