//! A test's own fake company, database and connection ([`Harness`]), and
//! reading the store back through the records API to compare it with the
//! fake's truth.

#[allow(unused_imports)]
use super::*;

/// A fake company: the 33 recorded sandbox customers plus `generated` ones,
/// `archived_fraction` of them archived and the first `crowd` sharing one
/// `LastUpdatedTime` two days before the fake clock's now.
pub fn company(generated: usize, crowd: usize, archived_fraction: f64) -> FakeQbo {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_recorded();
    let shared = fake.now() - chrono::Duration::days(2);
    fake.seed_generated(
        generated,
        &fake_qbo::GenerateOptions { shared_timestamp: Some((crowd, shared)), archived_fraction, ..Default::default() },
    );
    fake
}

/// Retries that keep outage and throttling tests quick: short backoffs, and at
/// most 1 s per wait, so QuickBooks' advice of 60 s after a 429 becomes 1 s.
/// `Retry-After` is still honoured up to that.
pub fn quick_retries() -> sync_host::provider::RetryPolicy {
    sync_host::provider::RetryPolicy {
        base: std::time::Duration::from_millis(20),
        max_wait: std::time::Duration::from_secs(1),
        budget: std::time::Duration::from_secs(60),
        ..Default::default()
    }
}

/// A test's own database and connection against one fake QuickBooks.
pub struct Harness {
    pub fake: FakeQbo,
    pub base_url: String,
    _server: Option<fake_qbo::RunningFake>,
    _dir: Option<tempfile::TempDir>,
    /// What `--db` says: a SQLite file, or a PostgreSQL URL.
    db_location: String,
    _postgres: Option<std::sync::Arc<PostgresDatabase>>,
    pub connection: String,
}

impl Harness {
    /// Starts `fake` on loopback with a fresh database.
    pub fn new(fake: FakeQbo) -> Self {
        Self::on(fake, Backend::Sqlite)
    }

    /// Starts `fake` on loopback with a fresh database on `backend`.
    pub fn on(fake: FakeQbo, backend: Backend) -> Self {
        let server = fake.start().expect("fake QuickBooks starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let (db_location, postgres) = match backend {
            Backend::Sqlite => (dir.path().join("records.sqlite").to_str().unwrap().to_owned(), None),
            Backend::Postgres { admin_url } => {
                let database = scratch_database(&admin_url);
                (database.url.clone(), Some(std::sync::Arc::new(database)))
            }
        };
        Harness {
            base_url: server.base_url(),
            fake,
            _server: Some(server),
            db_location,
            _postgres: postgres,
            _dir: Some(dir),
            connection: "default".into(),
        }
    }

    /// Starts `fake` on loopback with the database at `db` (a SQLite file a
    /// test placed itself, or a PostgreSQL server of its own).
    pub fn at(fake: FakeQbo, db: &str) -> Self {
        let server = fake.start().expect("fake QuickBooks starts");
        Harness {
            base_url: server.base_url(),
            fake,
            _server: Some(server),
            db_location: db.to_owned(),
            _postgres: None,
            _dir: None,
            connection: "default".into(),
        }
    }

    /// Starts another company's fake on loopback, sharing `other`'s database.
    pub fn sharing(fake: FakeQbo, other: &Harness, connection: &str) -> Self {
        let server = fake.start().expect("fake QuickBooks starts");
        Harness {
            base_url: server.base_url(),
            fake,
            _server: Some(server),
            db_location: other.db(),
            _postgres: None,
            _dir: None,
            connection: connection.to_owned(),
        }
    }

    /// The test's database, as `--db` names it: a SQLite file or a PostgreSQL URL.
    pub fn db(&self) -> String {
        self.db_location.clone()
    }

    /// The test's database, opened (and created) as the host opens it.
    pub fn database(&self) -> Store {
        store::open(&self.db(), OpenMode::Create).expect("the database opens")
    }

    /// The connection as the tests run it: the fake's realm and token, quick retries.
    pub fn spec(&self) -> ConnectionSpec {
        let mut spec =
            ConnectionSpec::new(&self.connection, &self.base_url, quickbooks::config(REALM), Some(TOKEN.to_string()));
        spec.retry = quick_retries();
        spec
    }

    /// One run of the real component in the real host.
    pub fn run(&self) -> Result<RunReport, RunFailure> {
        self.run_spec(&self.spec())
    }

    pub fn run_with_token(&self, token: Option<String>) -> Result<RunReport, RunFailure> {
        let mut spec = self.spec();
        spec.credentials = Arc::new(sync_host::provider::StaticToken::new(token));
        self.run_spec(&spec)
    }

    pub fn run_with(&self, token: Option<String>, limits: RunLimits) -> Result<RunReport, RunFailure> {
        let mut spec = self.spec();
        spec.credentials = Arc::new(sync_host::provider::StaticToken::new(token));
        spec.limits = limits;
        self.run_spec(&spec)
    }

    pub fn run_spec(&self, spec: &ConnectionSpec) -> Result<RunReport, RunFailure> {
        Runner::new(runtime(), self.database()).run(spec, None)
    }

    /// Runs and expects success.
    pub fn sync(&self) -> RunReport {
        self.run().unwrap_or_else(|e| panic!("run failed: {e}"))
    }

    /// Every record of the connection, through `GET /customers`, paging with `limit`.
    pub fn api_records(&self, query: &str) -> Vec<Value> {
        let api = Api::start(&self.db(), None);
        api.all(query, &self.connection)
    }

    /// The live (not deleted) customers in the store, by id.
    pub fn live_customers(&self) -> std::collections::BTreeMap<String, Value> {
        self.api_records("filter=added,updated&limit=1000")
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("_nango_metadata");
                (r["id"].as_str().unwrap().to_owned(), r)
            })
            .collect()
    }

    /// Asserts that the live records are exactly the upstream active customers, mapped.
    pub fn assert_store_matches_upstream(&self) {
        self.assert_store_matches_upstream_but(&[]);
    }

    /// Like [`Self::assert_store_matches_upstream`], tolerating `extra` ids
    /// still live (customers deleted outright, which only CDC reveals).
    pub fn assert_store_matches_upstream_but(&self, extra_allowed: &[String]) {
        let expected: std::collections::BTreeMap<String, Value> = self
            .fake
            .all_customers()
            .into_iter()
            .filter(|c| c["Active"].as_bool().unwrap_or(true))
            .map(|c| {
                let mapped = map_customer(&c);
                (mapped["id"].as_str().unwrap().to_owned(), mapped)
            })
            .collect();
        let live = self.live_customers();
        let missing: Vec<&String> = expected.keys().filter(|k| !live.contains_key(*k)).collect();
        let extra: Vec<&String> =
            live.keys().filter(|k| !expected.contains_key(*k) && !extra_allowed.contains(k)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "missing from store: {missing:?}; stale in store: {extra:?}");
        for (id, want) in &expected {
            assert_eq!(&live[id], want, "customer {id} is stale");
        }
    }

    /// The same company and database, seen as connection `id`.
    pub fn connection_as(&self, id: &str) -> HarnessView<'_> {
        HarnessView { harness: self, connection: id.to_owned() }
    }

    /// The checkpoint the component saved, parsed.
    pub fn checkpoint(&self) -> Option<Value> {
        let mut store = self.database().run_writes().unwrap().checkpoints;
        store.get(&self.connection, "customers").unwrap().map(|t| serde_json::from_str(&t).unwrap())
    }
}

/// A [`Harness`] looked at through another connection id.
pub struct HarnessView<'a> {
    harness: &'a Harness,
    connection: String,
}

impl HarnessView<'_> {
    fn with<T>(&self, f: impl FnOnce(&Harness) -> T) -> T {
        let view = Harness {
            fake: self.harness.fake.clone(),
            base_url: self.harness.base_url.clone(),
            _server: None,
            _dir: None,
            db_location: self.harness.db(),
            _postgres: None,
            connection: self.connection.clone(),
        };
        f(&view)
    }

    pub fn assert_store_matches_upstream(&self) {
        self.with(|h| h.assert_store_matches_upstream())
    }

    pub fn api_records(&self, query: &str) -> Vec<Value> {
        self.with(|h| h.api_records(query))
    }

    pub fn live_customers(&self) -> std::collections::BTreeMap<String, Value> {
        self.with(|h| h.live_customers())
    }

    pub fn checkpoint(&self) -> Option<Value> {
        self.with(|h| h.checkpoint())
    }
}

/// Ids in the order QuickBooks pages them: by LastUpdatedTime, ties in table order.
pub fn query_order(fake: &FakeQbo) -> Vec<(String, chrono::DateTime<chrono::FixedOffset>)> {
    let customers: std::collections::HashMap<String, Value> =
        fake.all_customers().into_iter().map(|c| (c["Id"].as_str().unwrap().to_owned(), c)).collect();
    let mut order: Vec<(String, chrono::DateTime<chrono::FixedOffset>)> = fake
        .internal_order()
        .into_iter()
        .filter_map(|id| {
            let c = customers.get(&id)?;
            let at = chrono::DateTime::parse_from_rfc3339(c["MetaData"]["LastUpdatedTime"].as_str()?).ok()?;
            Some((id, at))
        })
        .collect();
    order.sort_by_key(|(_, at)| *at);
    order
}
