//! A sync component for tests/wasi.rs: its `run` logs what the component
//! can see of the process (environment variables, arguments, working
//! directory) through the `logging` import, and stores nothing. Composed
//! with the adapters, it must see nothing at all: the provider plugs an
//! empty `wasi:cli/environment` into it, so `SYNC_ACCESS_TOKEN` stays with
//! the provider.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "sync-component",
        path: "../../../wit",
    });

    use exports::portable_sync::sync::sync::{Guest, Metadata, Model, ProviderLimits, RunError, Summary, SyncType};
    use portable_sync::sync::logging::{self, Level};

    struct Probe;

    impl Guest for Probe {
        fn describe() -> Metadata {
            Metadata {
                name: "env-probe".into(),
                description: "Reports what the component sees of its environment.".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                scopes: Vec::new(),
                frequency: "every day".into(),
                sync_type: SyncType::Full,
                endpoints: Vec::new(),
                models: vec![Model { name: "Probe".into(), json_schema: r#"{"type":"object"}"#.into() }],
                configuration: Vec::new(),
                limits: ProviderLimits { requests_per_minute: 0, max_concurrent: 0, throttle_wait_secs: 0 },
            }
        }

        fn run() -> Result<Summary, RunError> {
            let vars: Vec<(String, String)> = std::env::vars().collect();
            let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<&str> = vars.iter().map(|(_, v)| v.as_str()).collect();
            logging::log(Level::Info, &format!("probe environment: {} variables [{}]", vars.len(), names.join(",")));
            // The values too: a test that finds the token here fails loudly.
            logging::log(Level::Info, &format!("probe values: [{}]", values.join(",")));
            logging::log(Level::Info, &format!("probe arguments: {}", std::env::args().count()));
            logging::log(Level::Info, &format!("probe cwd: {:?}", std::env::current_dir().ok()));
            Ok(Summary { pages: 0, requests: 0, retries: 0, saved: 0, deleted: 0 })
        }
    }

    export!(Probe);
}
