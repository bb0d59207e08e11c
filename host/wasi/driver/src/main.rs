//! The driver: the composed command's `wasi:cli/run` (this `main`). It asks
//! the component what it is (`describe()`, pure), hands that to the provider
//! (`run-control.begin`: the provider cannot call the component itself, that
//! edge would be a cycle), runs it, and prints the same one-line JSON summary
//! as `sync-host run`. A failed run exits 1 with a named error on stderr; no
//! credential ever reaches this code (the provider keeps the token).

#[cfg(target_arch = "wasm32")]
mod command {
    wit_bindgen::generate!({
        world: "portable-sync:wasi/driver",
        path: ["../../../wit", "../wit"],
        // The sync package is not this one: generate its bindings too.
        generate_all,
    });

    use portable_sync::sync::sync::{self, RunError};
    use portable_sync::wasi::run_control;

    /// Environment variables that set a configuration key.
    const CONFIG_PREFIX: &str = "SYNC_CONFIG_";

    pub fn main() {
        let metadata = sync::describe();
        // As `sync-host run` refuses `--config` keys the component does not
        // read: a typo must not pass silently.
        let known: Vec<&str> = metadata.configuration.iter().map(|k| k.name.as_str()).collect();
        for (name, _) in std::env::vars() {
            if let Some(key) = name.strip_prefix(CONFIG_PREFIX) {
                if !known.contains(&key) {
                    fail(&format!(
                        "{name}: the component `{}` reads no configuration key `{key}` (it reads: {})",
                        metadata.name,
                        known.join(", ")
                    ));
                }
            }
        }
        let declaration = run_control::Declaration {
            sync: metadata.name.clone(),
            models: metadata.models.iter().map(|m| m.name.clone()).collect(),
            limits: run_control::Limits {
                requests_per_minute: metadata.limits.requests_per_minute,
                max_concurrent: metadata.limits.max_concurrent,
                throttle_wait_secs: metadata.limits.throttle_wait_secs,
            },
        };
        if let Err(why) = run_control::begin(&declaration) {
            fail(&why);
        }
        let result = sync::run();
        let t = run_control::totals();
        run_control::finish();
        match result {
            Ok(summary) => {
                // The field order of sync-host's `SummaryLine`.
                println!(
                    r#"{{"added":{},"updated":{},"deleted":{},"unchanged":{},"pages":{},"requests":{},"retries":{}}}"#,
                    t.added, t.updated, t.deleted, t.unchanged, summary.pages, summary.requests, summary.retries
                );
            }
            Err(error) => fail(&format!("run failed: {}", describe_run_error(&error))),
        }
    }

    fn fail(message: &str) -> ! {
        eprintln!("error: {message}");
        std::process::exit(1)
    }

    /// The text of sync-host's `runtime::describe_run_error` (copied: the
    /// driver cannot link sync-host; see host/wasi/README.md).
    fn describe_run_error(error: &RunError) -> String {
        match error {
            RunError::Provider(p) => {
                let mut text = format!("provider error: HTTP {}", p.status);
                if !p.code.is_empty() {
                    text.push_str(&format!(", code {}", p.code));
                }
                if !p.message.is_empty() {
                    text.push_str(&format!(": {}", p.message));
                }
                if !p.detail.is_empty() {
                    text.push_str(&format!(" ({})", p.detail));
                }
                text
            }
            RunError::InvalidResponse(m) => format!("invalid response from the provider: {m}"),
            RunError::MissingConfig(key) => format!("missing configuration: {key}"),
            RunError::InvalidConfig(m) => format!("invalid configuration: {m}"),
            RunError::Proxy(m) => format!("proxy error: {m}"),
            RunError::Store(m) => format!("store error: {m}"),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    command::main()
}

/// Natively there is nothing to run: the driver only makes sense inside a
/// composition (`sync-host compose`).
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("sync-wasi-driver is a WebAssembly component: build it with --target wasm32-wasip2");
    std::process::exit(2);
}
