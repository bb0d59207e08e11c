//! A fast local QuickBooks stand-in that serves pre-built pages, so the
//! benchmark measures the sync and the store, not a query engine.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, FixedOffset};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

const RECORDED: &str = include_str!("../../tests/fixtures/qbo-customers-page.json");

struct Company {
    /// (LastUpdatedTime, customer JSON), in query order.
    customers: Vec<(DateTime<FixedOffset>, String)>,
}

/// `n` customers: the 33 recorded sandbox customers cycled with fresh ids,
/// five to a second of `LastUpdatedTime`.
fn company(n: usize) -> Company {
    let recorded: Value = serde_json::from_str(RECORDED).unwrap();
    let templates = recorded["QueryResponse"]["Customer"].as_array().unwrap().clone();
    let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00-07:00").unwrap();
    let customers = (0..n)
        .map(|i| {
            let mut customer = templates[i % templates.len()].clone();
            let at = base + Duration::seconds((i / 5) as i64);
            customer["Id"] = Value::String((i + 1).to_string());
            customer["Active"] = Value::Bool(true);
            customer["MetaData"]["LastUpdatedTime"] = Value::String(at.to_rfc3339());
            (at, customer.to_string())
        })
        .collect();
    Company { customers }
}

async fn query(State(company): State<Arc<Company>>, Query(params): Query<HashMap<String, String>>) -> String {
    let text = params.get("query").cloned().unwrap_or_default();
    let number_after = |keyword: &str| -> Option<usize> {
        let rest = &text[text.find(keyword)? + keyword.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let since = text
        .find(">= '")
        .and_then(|at| text[at + 4..].split('\'').next())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let start = number_after("STARTPOSITION").unwrap_or(1).max(1);
    let max = number_after("MAXRESULTS").unwrap_or(100).min(1000);
    let first = since.map_or(0, |since| company.customers.partition_point(|(at, _)| *at < since));
    let from = (first + start - 1).min(company.customers.len());
    let to = (from + max).min(company.customers.len());
    let page: Vec<&str> = company.customers[from..to].iter().map(|(_, json)| json.as_str()).collect();
    if page.is_empty() {
        return r#"{"QueryResponse":{},"time":"2026-06-01T00:00:00.000-07:00"}"#.into();
    }
    format!(
        r#"{{"QueryResponse":{{"Customer":[{}],"startPosition":{start},"maxResults":{}}},"time":"2026-06-01T00:00:00.000-07:00"}}"#,
        page.join(","),
        page.len()
    )
}

/// Serves `n` customers on loopback until dropped.
pub struct PageServer {
    pub base_url: String,
    _runtime: tokio::runtime::Runtime,
}

impl PageServer {
    pub fn start(n: usize) -> Self {
        let company = Arc::new(company(n));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/v3/company/{realm}/query", get(query)).with_state(company);
        runtime.spawn(async move { axum::serve(listener, app).await });
        PageServer { base_url, _runtime: runtime }
    }
}
