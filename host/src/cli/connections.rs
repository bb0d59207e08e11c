//! `sync-host connections add | list | remove` (docs/connections.md).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{load_component, parse_key_value};
use crate::providers::{self, quickbooks};
use secrecy::SecretString;

use crate::store::{self, Connection, ConnectionSecrets, ConnectionStatus, OpenMode, StoredCredentials, WebhookFormat};
use crate::time::every::{format_every, parse_every};

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// Add a connection the scheduler runs (`serve --schedule`).
    Add(Box<AddArgs>),
    /// Print every connection, one JSON object a line.
    List {
        /// The host's database.
        #[arg(long)]
        db: String,
    },
    /// Remove a connection and its credentials; its records stay unless `--purge`.
    Remove {
        /// The connection id.
        id: String,
        /// The host's database.
        #[arg(long)]
        db: String,
        /// Also delete its records, checkpoint and run history.
        #[arg(long)]
        purge: bool,
    },
}

/// A secret given on the command line, in the environment, or as
/// `@path/to/file` (its content, trimmed). Never printed.
#[derive(Debug, Clone)]
pub struct Secret(pub(super) SecretString);

pub(super) fn parse_secret(text: &str) -> Result<Secret, String> {
    let value = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret file {path}: {e}"))?
            .trim()
            .to_owned(),
        None => text.to_owned(),
    };
    if value.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(Secret(value.into()))
}

#[derive(Args)]
pub struct AddArgs {
    /// The connection id (records are served under `Connection-Id: <id>`):
    /// letters, digits, `-`, `_`, `.`.
    #[arg(value_parser = super::parse_connection_id)]
    id: String,
    /// The host's database (created if missing).
    #[arg(long)]
    db: String,
    /// The provider's base URL, e.g. https://sandbox-quickbooks.api.intuit.com.
    #[arg(long, value_parser = super::parse_http_url)]
    base_url: String,
    /// The QuickBooks company (realm) id; sets the configuration key `realmId`.
    #[arg(long)]
    realm_id: String,
    /// OAuth client id of your Intuit app.
    // No clap `requires`/`conflicts_with`: they count values from the
    // environment as given and then name flags the user never typed; `add`
    // checks the combination and names flag and variable both.
    #[arg(long, env = "QBO_CLIENT_ID")]
    client_id: Option<String>,
    /// OAuth client secret (or env QBO_CLIENT_SECRET, or @file); never printed.
    #[arg(long, env = "QBO_CLIENT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    client_secret: Option<Secret>,
    /// The refresh token of the company's authorisation (or env
    /// QBO_REFRESH_TOKEN, or @file); never printed.
    #[arg(long, env = "QBO_REFRESH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    refresh_token: Option<Secret>,
    /// The token endpoint (Intuit's by default; the fake's for tests).
    #[arg(long, default_value = quickbooks::TOKEN_URL, value_parser = super::parse_http_url)]
    token_url: String,
    /// A fixed access token instead of OAuth, for quick tries (it expires in
    /// an hour); or env QBO_ACCESS_TOKEN, or @file.
    #[arg(long, env = "QBO_ACCESS_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    access_token: Option<Secret>,
    /// How often to run: `30s`, `15m`, `1h`, `1d` (default: the component's frequency).
    #[arg(long, value_parser = parse_every)]
    every: Option<std::time::Duration>,
    /// A configuration value the component reads, `key=value` (repeatable).
    #[arg(long = "config", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// This connection's webhooks go here (instead of `serve --webhook-url`).
    #[arg(long, requires = "webhook_secret", value_parser = super::parse_http_url)]
    webhook_url: Option<String>,
    /// Signs this connection's webhooks (or @file); never printed.
    #[arg(long, value_parser = parse_secret)]
    webhook_secret: Option<Secret>,
    /// The format of this connection's webhooks: `sync-host`, or `nango`
    /// (Nango's sync webhook and signatures); default: `serve --webhook-format`.
    #[arg(long, value_parser = super::parse_webhook_format)]
    webhook_format: Option<WebhookFormat>,
    /// The integration the connection belongs to: Nango's provider config
    /// key, which Nango's routes name it by with its id (docs/nango.md).
    #[arg(long, value_parser = super::parse_integration)]
    integration: Option<String>,
    /// The verifier token of the Intuit app that notifies changes to this
    /// company (besides `serve --qbo-verifier-token`), or @file.
    #[arg(long, value_parser = parse_secret)]
    verifier_token: Option<Secret>,
    /// The component the connection runs (to check its configuration keys);
    /// defaults to the built guest.
    #[arg(long)]
    component: Option<PathBuf>,
}

pub fn run(command: ConnectionsCommand) -> anyhow::Result<()> {
    match command {
        ConnectionsCommand::Add(args) => add(*args),
        ConnectionsCommand::List { db } => list(&db),
        ConnectionsCommand::Remove { id, db, purge } => remove(&id, &db, purge),
    }
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    super::refuse_credentials_in_url("--base-url", Some(&args.base_url))?;
    super::refuse_credentials_in_url("--token-url", Some(&args.token_url))?;
    super::refuse_credentials_in_url("--webhook-url", args.webhook_url.as_deref())?;
    let credentials =
        credentials(args.client_id, args.client_secret, args.refresh_token, args.access_token, args.token_url)?;
    let mut config: BTreeMap<String, String> = args.config.into_iter().collect();
    let realm = quickbooks::REALM_KEY;
    if config.get(realm).is_some_and(|r| *r != args.realm_id) {
        anyhow::bail!("--config {realm}={} contradicts --realm-id {}", config[realm], args.realm_id);
    }
    config.insert(realm.into(), args.realm_id);
    let runtime = load_component(args.component)?;
    runtime.metadata().check_config(config.keys()).map_err(anyhow::Error::msg)?;
    let db = store::open(&args.db, OpenMode::Create)?;
    let connection = Connection {
        id: args.id.clone(),
        provider: providers::default_provider().name().to_owned(),
        base_url: args.base_url.trim_end_matches('/').to_owned(),
        config,
        every: args.every,
        paused: false,
        status: ConnectionStatus::Idle,
        status_message: None,
        failures: 0,
        next_run_at_us: None,
        webhook_url: args.webhook_url,
        webhook_format: args.webhook_format,
        integration: args.integration,
        notified_at_us: None,
        created_us: 0,
        updated_us: 0,
    };
    let secrets = ConnectionSecrets {
        webhook_secret: args.webhook_secret.map(|s| s.0),
        verifier_token: args.verifier_token.map(|s| s.0),
    };
    db.connections.insert(&connection, &credentials, &secrets)?;
    let every = args.every.or_else(|| runtime.metadata().interval()).map(format_every).unwrap_or_default();
    eprintln!("added connection `{}` (every {every}); `sync-host serve --db {} --schedule` runs it", args.id, args.db);
    Ok(())
}

/// OAuth when all three of its values are given (by flag or environment),
/// whatever else is set; else the access token; else an error that names
/// what is missing, by flag and by variable.
fn credentials(
    client_id: Option<String>,
    client_secret: Option<Secret>,
    refresh_token: Option<Secret>,
    access_token: Option<Secret>,
    token_url: String,
) -> anyhow::Result<StoredCredentials> {
    match (client_id, client_secret, refresh_token, access_token) {
        (Some(client_id), Some(client_secret), Some(refresh_token), access_token) => {
            if access_token.is_some() {
                eprintln!("note: using OAuth; the access token (--access-token or QBO_ACCESS_TOKEN) is not used");
            }
            Ok(StoredCredentials::OAuth {
                token_url,
                client_id,
                client_secret: client_secret.0,
                refresh_token: refresh_token.0,
                access_token: None,
                access_expires_us: None,
                access_issued_us: None,
            })
        }
        (_, _, _, Some(token)) => Ok(StoredCredentials::AccessToken(token.0)),
        (client_id, client_secret, refresh_token, None) => {
            let missing: Vec<&str> = [
                (client_id.is_none(), "--client-id (or QBO_CLIENT_ID)"),
                (client_secret.is_none(), "--client-secret (or QBO_CLIENT_SECRET)"),
                (refresh_token.is_none(), "--refresh-token (or QBO_REFRESH_TOKEN)"),
            ]
            .into_iter()
            .filter_map(|(absent, name)| absent.then_some(name))
            .collect();
            if missing.len() == 3 {
                anyhow::bail!(
                    "no credentials: give --client-id, --client-secret and --refresh-token (OAuth), \
                     or --access-token (quick tries); each also from its environment variable"
                );
            }
            anyhow::bail!("OAuth needs {} too (or --access-token instead, for quick tries)", missing.join(" and "))
        }
    }
}

fn list(db: &str) -> anyhow::Result<()> {
    let db = store::open(db, OpenMode::MustExist)?;
    for connection in db.connections.list()? {
        let (runs, _) = db.runs.list(&connection.id, None, 5)?;
        let last = runs.into_iter().find(|r| r.outcome.is_some());
        let line = serde_json::json!({
            "id": connection.id,
            "realm_id": connection.config.get("realmId"),
            "base_url": connection.base_url,
            "every": connection.every.map(format_every),
            "status": if connection.paused { "paused" } else { connection.status.as_str() },
            "status_message": connection.status_message,
            "last_run": last.map(|r| serde_json::json!({
                "started_at": crate::time::format_us(r.started_us),
                "ended_at": r.ended_us.map(crate::time::format_us),
                "outcome": r.outcome.map(|o| o.as_str()),
                "summary": r.summary.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()),
                "error": r.error,
            })),
        });
        println!("{line}");
    }
    Ok(())
}

fn remove(id: &str, db: &str, purge: bool) -> anyhow::Result<()> {
    let db = store::open(db, OpenMode::MustExist)?;
    let Some(_lease) = db.locks.try_lock_run(id)? else {
        anyhow::bail!("connection `{id}` is running; remove it when the run ends");
    };
    let removal = db.connections.remove(id, purge).context("cannot remove the connection")?;
    let records = |n: u64| if n == 1 { "1 record".to_owned() } else { format!("{n} records") };
    match (removal.connection, purge) {
        (true, true) => eprintln!("removed connection `{id}` and all it stored ({})", records(removal.records)),
        (true, false) => eprintln!("removed connection `{id}`; its records stay (`--purge` deletes them)"),
        (false, true) if removal.purged => {
            eprintln!("connection `{id}` was already removed; purged what it left ({})", records(removal.records))
        }
        (false, true) => anyhow::bail!("no connection `{id}`, and nothing stored under that id"),
        (false, false) => anyhow::bail!("no connection `{id}` (`connections list` shows them)"),
    }
    Ok(())
}
