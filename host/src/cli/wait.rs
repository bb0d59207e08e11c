//! `sync-host wait <connection>`: blocks until a connection on a running
//! `serve` is settled, for scripts (and the README) that must not race the
//! scheduler — see docs/cli.md.
//!
//! Settled: the server answers; the connection has no run in flight and none
//! due now (`POST /sync` makes one due at once); and it has at least one
//! finished run (with `--trigger`, one of that trigger: a QuickBooks
//! notification is due only once its quiet period has passed, so waiting for
//! its run takes `--trigger webhook`).

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;
use std::time::{Duration, Instant};

use crate::provider::client::http_agent;

#[derive(Args)]
pub struct WaitArgs {
    /// The connection id.
    #[arg(value_parser = super::parse_connection_id)]
    connection: String,
    /// The API of `sync-host serve`.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = super::parse_http_url)]
    api: String,
    /// The server's `--api-key`; never printed.
    #[arg(long, env = "SYNC_HOST_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Wait for a finished run of this trigger: `api`, `schedule` or `webhook`.
    #[arg(long, value_parser = ["api", "schedule", "webhook"])]
    trigger: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=super::MAX_LIMIT_SECS))]
    timeout_secs: u64,
}

/// How often the API is asked.
const POLL: Duration = Duration::from_millis(200);

pub fn wait(args: WaitArgs) -> anyhow::Result<()> {
    super::refuse_credentials_in_url("--api", Some(&args.api))?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let base = args.api.trim_end_matches('/');
    let id = &args.connection;
    let agent = http_agent(Duration::from_secs(10));
    let get = |path: &str| -> Result<Option<Value>, anyhow::Error> {
        let mut request = agent.get(format!("{base}{path}"));
        if let Some(key) = &args.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        // Not listening yet (or a timeout): ask again.
        let Ok(mut response) = request.call() else { return Ok(None) };
        let status = response.status().as_u16();
        let body: Value = response
            .body_mut()
            .read_to_string()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        match status {
            200 => Ok(Some(body)),
            401 => anyhow::bail!("{base} refused the API key (give the server's --api-key, or SYNC_HOST_API_KEY)"),
            404 => anyhow::bail!("{base} has no connection `{id}`"),
            _ => {
                let message = body["error"]["message"].as_str().unwrap_or("");
                anyhow::bail!("{base}{path} answered {status}: {message}")
            }
        }
    };
    let mut last_seen = String::from("the server to answer");
    while Instant::now() < deadline {
        if let Some(connection) = get(&format!("/connections/{id}"))? {
            let status = connection["status"].as_str().unwrap_or("");
            let due_now = connection["next_run_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|next| next.timestamp_micros() <= crate::time::now_us());
            last_seen = format!("`{id}` to settle (now {status}{})", if due_now { ", a run due" } else { "" });
            if status != "running" && !due_now {
                if let Some(runs) = get(&format!("/connections/{id}/runs?limit=100"))? {
                    let newest = runs["runs"].as_array().into_iter().flatten().find(|run| {
                        !run["outcome"].is_null()
                            && args.trigger.as_deref().is_none_or(|trigger| run["trigger"].as_str() == Some(trigger))
                    });
                    if let Some(run) = newest {
                        println!("{run}");
                        if run["outcome"] != "success" {
                            anyhow::bail!(
                                "the run of `{id}` failed: {}",
                                run["error"].as_str().unwrap_or("no error recorded")
                            );
                        }
                        return Ok(());
                    }
                    if let Some(trigger) = &args.trigger {
                        last_seen = format!("a finished `{trigger}` run of `{id}`");
                    }
                }
            }
        }
        std::thread::sleep(POLL);
    }
    Err(anyhow::anyhow!("timed out after {} s waiting for {last_seen}", args.timeout_secs))
        .context(format!("`sync-host wait {id}` gave up (--timeout-secs)"))
}
