//! The provider: every `portable-sync:sync` capability a sync component
//! imports, implemented with standard WASI, so that the component composed
//! with this and the driver (`sync-host compose`) runs in any WASI Preview 2
//! runtime. Contract (docs/contract.md, "Composition"):
//!
//! - `SYNC_BASE_URL`, `SYNC_ACCESS_TOKEN`: the provider and its bearer token,
//!   used by `proxy` over `wasi:http/outgoing-handler`; never shown.
//! - `SYNC_CONFIG_<key>`: `config.get(key)`.
//! - `SYNC_CONNECTION` (default `default`): the connection records and the
//!   checkpoint are stored under.
//! - `SYNC_LOG` (default `info`), `SYNC_RETRY_BUDGET_SECS` (600),
//!   `SYNC_RETRY_MAX_WAIT_SECS` (120), `SYNC_REQUESTS_PER_MINUTE` (the
//!   component's declared limit; 0: none): as sync-host's `-v` and flags.
//! - `/state` (preopened): `sync.sqlite`, sync-host's store.
//!
//! The component itself gets an empty `wasi:cli/environment` (exported
//! here), so it never sees this environment, where the token is.
//!
//! Natively the crate is empty (`cargo test --workspace` builds every
//! member for the host): everything is behind `target_arch = "wasm32"`.

#[cfg(target_arch = "wasm32")]
#[allow(dead_code)]
#[path = "../../../src/capabilities/canonical.rs"]
mod canonical; // sync-host's own file, not a copy: the hash must be the same.
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
#[allow(dead_code)]
#[path = "../../../src/store/sqlite/migrations.rs"]
mod migrations; // sync-host's own file: the one schema source.
#[cfg(target_arch = "wasm32")]
mod store;

#[cfg(target_arch = "wasm32")]
mod adapter {
    wit_bindgen::generate!({
        world: "portable-sync:wasi/provider",
        path: ["../../../wit", "../wit"],
        // The sync package is not this one: generate its bindings too.
        generate_all,
    });

    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::time::Duration;

    use crate::canonical::{hash_record, HashError};
    use crate::http::{self, Client, Failure, Pacer, RetryPolicy};
    use crate::store::{self, BatchOutcome, Scope, StoreError, ValidRecord};
    use exports::portable_sync::sync::{checkpoint, config, listing, logging, proxy, records};
    use exports::portable_sync::wasi::run_control;
    use exports::wasi::cli::environment;

    /// sync-host's default limits per call and per run (`RecordLimits`,
    /// `ProxyLimits`). Past one, the run stops (a trap), as in sync-host.
    const RECORDS_PER_BATCH: usize = 10_000;
    const BYTES_PER_RECORD: usize = 1 << 20;
    const REQUESTS_PER_RUN: u32 = 100_000;
    const BYTES_PER_RESPONSE: u64 = 64 << 20;
    /// Longest log message kept.
    const MAX_MESSAGE: usize = 4096;
    const NOT_BEGUN: &str = "adapter not configured: the driver calls run-control.begin first";

    /// One run: the component instance lives for one command.
    struct Run {
        db: rusqlite::Connection,
        connection: String,
        sync: String,
        models: Vec<String>,
        client: Client,
        requests: u32,
        totals: BatchOutcome,
    }

    thread_local! {
        static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
    }

    fn with_run<T>(f: impl FnOnce(&mut Run) -> Result<T, String>) -> Result<T, String> {
        RUN.with(|cell| match cell.borrow_mut().as_mut() {
            Some(run) => f(run),
            None => Err(NOT_BEGUN.to_owned()),
        })
    }

    fn stop_run(limit: &str, max: u64, what: String) -> ! {
        // A trap, as sync-host stops a run that goes past a limit.
        panic!("component stopped: limit exceeded: {limit} (at most {max}): {what}")
    }

    fn env(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn env_secs(name: &str, default: Duration) -> Result<Duration, String> {
        match env(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= 7 * 86_400)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{name}=`{text}` is not a number of seconds (at most 604800)")),
        }
    }

    /// The pace: the component's declared requests a minute, unless
    /// `SYNC_REQUESTS_PER_MINUTE` overrides it (0: no limit), as sync-host's
    /// `--requests-per-minute` does.
    fn requests_per_minute(declared: u32) -> Result<u32, String> {
        match env("SYNC_REQUESTS_PER_MINUTE") {
            None => Ok(declared),
            Some(text) => text.parse().map_err(|_| format!("SYNC_REQUESTS_PER_MINUTE=`{text}` is not a number")),
        }
    }

    /// A connection id, as sync-host accepts it.
    fn connection_id(text: &str) -> Result<String, String> {
        let fits = !text.is_empty()
            && text.len() <= 100
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if fits {
            Ok(text.to_owned())
        } else {
            Err(format!(
                "SYNC_CONNECTION `{text}` is not a connection id: use 1 to 100 letters, digits, `-`, `_` or `.`"
            ))
        }
    }

    struct Provider;

    impl run_control::Guest for Provider {
        fn begin(declaration: run_control::Declaration) -> Result<(), String> {
            if RUN.with(|cell| cell.borrow().is_some()) {
                return Err("run-control.begin was called twice".into());
            }
            let base_url = env("SYNC_BASE_URL").ok_or("SYNC_BASE_URL is not set (the provider's base URL)")?;
            let connection = connection_id(&env("SYNC_CONNECTION").unwrap_or_else(|| "default".into()))?;
            let policy = RetryPolicy {
                budget: env_secs("SYNC_RETRY_BUDGET_SECS", RetryPolicy::default().budget)?,
                max_wait: env_secs("SYNC_RETRY_MAX_WAIT_SECS", RetryPolicy::default().max_wait)?,
                ..RetryPolicy::default()
            };
            let limits = declaration.limits;
            let client = Client::new(
                &base_url,
                env("SYNC_ACCESS_TOKEN"),
                policy,
                Pacer::per_minute(requests_per_minute(limits.requests_per_minute)?),
                Duration::from_secs(limits.throttle_wait_secs.into()),
            )?;
            let db = store::open()?;
            RUN.with(|cell| {
                *cell.borrow_mut() = Some(Run {
                    db,
                    connection,
                    sync: declaration.sync,
                    models: declaration.models,
                    client,
                    requests: 0,
                    totals: BatchOutcome::default(),
                })
            });
            Ok(())
        }

        fn totals() -> run_control::RunTotals {
            let t = RUN.with(|cell| cell.borrow().as_ref().map(|run| run.totals)).unwrap_or_default();
            run_control::RunTotals { added: t.added, updated: t.updated, unchanged: t.unchanged, deleted: t.deleted }
        }

        fn finish() {
            // Dropping the connection checkpoints the WAL and removes it. A
            // command that exits without this (a trap) leaves the WAL beside
            // the file; SQLite replays it on the next open.
            if let Some(run) = RUN.with(|cell| cell.borrow_mut().take()) {
                if let Err((_, e)) = run.db.close() {
                    eprintln!("WARN store: closing {}: {e}", store::DATABASE);
                }
            }
        }
    }

    impl proxy::Guest for Provider {
        fn send(request: proxy::Request) -> Result<proxy::Response, proxy::Error> {
            check_path_and_headers(&request)?;
            let (method, method_name) = match request.method {
                proxy::Method::Get => (wasip2::http::types::Method::Get, "GET"),
                proxy::Method::Post => (wasip2::http::types::Method::Post, "POST"),
                proxy::Method::Put => (wasip2::http::types::Method::Put, "PUT"),
                proxy::Method::Patch => (wasip2::http::types::Method::Patch, "PATCH"),
                proxy::Method::Delete => (wasip2::http::types::Method::Delete, "DELETE"),
            };
            let request = http::Request {
                method,
                method_name,
                path: request.path,
                query: request.query,
                headers: request.headers,
                body: request.body,
                retry: request.retry,
            };
            let result = RUN.with(|cell| {
                let mut cell = cell.borrow_mut();
                let Some(run) = cell.as_mut() else {
                    return Err(Failure::ConnectionFailed(NOT_BEGUN.into()));
                };
                if run.requests >= REQUESTS_PER_RUN {
                    stop_run(
                        "requests per run",
                        REQUESTS_PER_RUN.into(),
                        format!("request {} to {}", run.requests + 1, request.path),
                    );
                }
                run.requests += 1;
                run.client.send(&request, BYTES_PER_RESPONSE)
            });
            match result {
                Ok(r) => {
                    Ok(proxy::Response { status: r.status, headers: r.headers, body: r.body, attempts: r.attempts })
                }
                Err(Failure::TooLarge(max)) => {
                    stop_run("bytes per response", max, format!("the answer to {}", request.path))
                }
                Err(Failure::Timeout(m)) => Err(proxy::Error::Timeout(m)),
                Err(Failure::ConnectionFailed(m)) => Err(proxy::Error::ConnectionFailed(m)),
                Err(Failure::Unauthorized(m)) => Err(proxy::Error::Unauthorized(m)),
            }
        }
    }

    fn check_path_and_headers(request: &proxy::Request) -> Result<(), proxy::Error> {
        http::check_path(&request.path).map_err(proxy::Error::InvalidPath)?;
        http::check_headers(&request.headers).map_err(proxy::Error::ForbiddenHeader)
    }

    // ---- records and listing: the checks of sync-host's
    // capabilities/records.rs (COPIED: validate_batch, validate_ids,
    // check_declared and their error texts), then the store.

    fn check_declared(declared: &[String], model: &str) -> Result<(), String> {
        if declared.iter().any(|m| m == model) {
            Ok(())
        } else {
            Err(format!("model `{model}` was not declared by the component (declared: {})", declared.join(", ")))
        }
    }

    fn validate_batch(texts: &[String]) -> Result<Vec<ValidRecord>, records::Error> {
        let mut seen = HashSet::with_capacity(texts.len());
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let hashed = hash_record(text).map_err(|e| match e {
                    HashError::InvalidJson(reason) => {
                        records::Error::InvalidJson(format!("record {index} is not valid JSON: {reason}"))
                    }
                    HashError::NotAnObject => {
                        records::Error::InvalidJson(format!("record {index} is not a JSON object"))
                    }
                })?;
                let id = hashed
                    .id
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| records::Error::InvalidId(format!("record {index} has no string `id`")))?;
                if !seen.insert(id.clone()) {
                    return Err(records::Error::DuplicateId(format!("id `{id}` appears more than once in the batch")));
                }
                Ok(ValidRecord { id, json: text.trim().to_owned(), hash: hashed.hash })
            })
            .collect()
    }

    fn validate_ids(ids: &[String]) -> Result<(), records::Error> {
        let mut seen = HashSet::with_capacity(ids.len());
        for (index, id) in ids.iter().enumerate() {
            if id.is_empty() {
                return Err(records::Error::InvalidId(format!("record {index} has no string `id`")));
            }
            if !seen.insert(id.as_str()) {
                return Err(records::Error::DuplicateId(format!("id `{id}` appears more than once in the batch")));
            }
        }
        Ok(())
    }

    fn check_batch_size(len: usize) {
        if len > RECORDS_PER_BATCH {
            stop_run("records per batch", RECORDS_PER_BATCH as u64, format!("a batch of {len}"));
        }
    }

    fn store_error(error: StoreError) -> records::Error {
        match error {
            StoreError::NoListing { .. } => records::Error::NoListing(error.to_string()),
            other => records::Error::Store(other.to_string()),
        }
    }

    /// Runs `f` on the store for `model` of this connection, after the
    /// capability check (declared models only).
    fn on_scope<T>(
        model: &str,
        f: impl FnOnce(&mut rusqlite::Connection, &Scope) -> Result<T, records::Error>,
    ) -> Result<T, records::Error> {
        RUN.with(|cell| {
            let mut cell = cell.borrow_mut();
            let run = cell.as_mut().ok_or_else(|| records::Error::Store(NOT_BEGUN.into()))?;
            check_declared(&run.models, model).map_err(records::Error::UndeclaredModel)?;
            let scope = Scope { connection: run.connection.clone(), model: model.to_owned() };
            f(&mut run.db, &scope)
        })
    }

    fn count(outcome: BatchOutcome) -> records::BatchOutcome {
        RUN.with(|cell| {
            if let Some(run) = cell.borrow_mut().as_mut() {
                run.totals += outcome;
            }
        });
        records::BatchOutcome {
            added: outcome.added,
            updated: outcome.updated,
            unchanged: outcome.unchanged,
            deleted: outcome.deleted,
        }
    }

    impl records::Guest for Provider {
        fn batch_save(model: String, texts: Vec<String>) -> Result<records::BatchOutcome, records::Error> {
            check_batch_size(texts.len());
            if let Some((index, text)) = texts.iter().enumerate().find(|(_, t)| t.len() > BYTES_PER_RECORD) {
                stop_run(
                    "bytes per record",
                    BYTES_PER_RECORD as u64,
                    format!("record {index} has {} bytes", text.len()),
                );
            }
            let outcome = on_scope(&model, |db, scope| {
                let valid = validate_batch(&texts)?;
                if valid.is_empty() {
                    return Ok(BatchOutcome::default());
                }
                store::save(db, scope, &valid).map_err(store_error)
            })?;
            Ok(count(outcome))
        }

        fn batch_delete(model: String, ids: Vec<String>) -> Result<records::BatchOutcome, records::Error> {
            check_batch_size(ids.len());
            let outcome = on_scope(&model, |db, scope| {
                validate_ids(&ids)?;
                if ids.is_empty() {
                    return Ok(BatchOutcome::default());
                }
                store::delete(db, scope, &ids).map_err(store_error)
            })?;
            Ok(count(outcome))
        }
    }

    impl listing::Guest for Provider {
        fn begin(model: String) -> Result<u64, records::Error> {
            on_scope(&model, |db, scope| store::begin_listing(db, scope).map_err(store_error))
        }

        fn current(model: String) -> Result<Option<u64>, records::Error> {
            on_scope(&model, |db, scope| store::current_listing(db, scope).map_err(store_error))
        }

        fn keep(model: String, listing: u64, ids: Vec<String>) -> Result<(), records::Error> {
            check_batch_size(ids.len());
            on_scope(&model, |db, scope| {
                validate_ids(&ids)?;
                store::keep(db, scope, listing, &ids).map_err(store_error)
            })
        }

        fn end(model: String, listing: u64) -> Result<records::BatchOutcome, records::Error> {
            let outcome = on_scope(&model, |db, scope| store::end_listing(db, scope, listing).map_err(store_error))?;
            if outcome.deleted > 0 {
                log_line(
                    logging::Level::Info,
                    &format!("listing {listing} ended: {} records it did not see deleted", outcome.deleted),
                );
            }
            Ok(count(outcome))
        }

        fn abandon(model: String, listing: u64) -> Result<(), records::Error> {
            on_scope(&model, |db, scope| store::abandon_listing(db, scope, listing).map_err(store_error))
        }
    }

    impl checkpoint::Guest for Provider {
        fn get() -> Result<Option<String>, checkpoint::Error> {
            with_run(|run| store::checkpoint_get(&mut run.db, &run.connection, &run.sync).map_err(|e| e.to_string()))
                .map_err(checkpoint::Error::Store)
        }

        fn save(value: String) -> Result<(), checkpoint::Error> {
            with_run(|run| {
                store::checkpoint_save(&mut run.db, &run.connection, &run.sync, &value).map_err(|e| e.to_string())
            })
            .map_err(checkpoint::Error::Store)
        }
    }

    impl config::Guest for Provider {
        fn get(key: String) -> Option<String> {
            std::env::var(format!("SYNC_CONFIG_{key}")).ok()
        }
    }

    fn rank(level: logging::Level) -> u8 {
        match level {
            logging::Level::Trace => 0,
            logging::Level::Debug => 1,
            logging::Level::Info => 2,
            logging::Level::Warn => 3,
            logging::Level::Error => 4,
        }
    }

    /// The least level shown: `SYNC_LOG` (trace, debug, info, warn, error).
    fn threshold() -> u8 {
        thread_local! {
            static THRESHOLD: u8 = match std::env::var("SYNC_LOG").as_deref() {
                Ok("trace") => 0,
                Ok("debug") => 1,
                Ok("warn") => 3,
                Ok("error") => 4,
                _ => 2,
            };
        }
        THRESHOLD.with(|t| *t)
    }

    fn log_line(level: logging::Level, message: &str) {
        if rank(level) < threshold() {
            return;
        }
        let name = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"][rank(level) as usize];
        let message = match message.char_indices().nth(MAX_MESSAGE) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message.to_owned(),
        };
        eprintln!("{name} guest: {message}");
    }

    impl logging::Guest for Provider {
        fn log(level: logging::Level, message: String) {
            log_line(level, &message);
        }
    }

    /// What the component sees as its environment: nothing (the token and
    /// the base URL stay with the provider).
    impl environment::Guest for Provider {
        fn get_environment() -> Vec<(String, String)> {
            Vec::new()
        }

        fn get_arguments() -> Vec<String> {
            Vec::new()
        }

        fn initial_cwd() -> Option<String> {
            None
        }
    }

    export!(Provider);
}
