//! Connections the host runs unattended: where their provider is, their
//! configuration, schedule, status and credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;

use super::StoreError;

/// What a connection is doing, as the control API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Idle,
    Running,
    /// The last run failed; runs go on, backing off.
    Failing,
    /// The provider refused the credentials; nothing runs until a person
    /// authorises the connection again.
    NeedsReauth,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Idle => "idle",
            ConnectionStatus::Running => "running",
            ConnectionStatus::Failing => "failing",
            ConnectionStatus::NeedsReauth => "needs_reauth",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "idle" => Some(ConnectionStatus::Idle),
            "running" => Some(ConnectionStatus::Running),
            "failing" => Some(ConnectionStatus::Failing),
            "needs_reauth" => Some(ConnectionStatus::NeedsReauth),
            _ => None,
        }
    }
}

/// A connection, without its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    /// The provider it syncs from (`crate::providers`), by name.
    pub provider: String,
    pub base_url: String,
    /// The configuration the component reads (`realmId`, …).
    pub config: BTreeMap<String, String>,
    /// Time between runs; `None`: the component's declared frequency.
    pub every: Option<Duration>,
    pub paused: bool,
    pub status: ConnectionStatus,
    /// Why the status is what it is (the last error), never a secret.
    pub status_message: Option<String>,
    /// Failed runs in a row.
    pub failures: u32,
    /// When the next run is due (µs since the epoch); `None`: now.
    pub next_run_at_us: Option<i64>,
    /// Where to send webhooks after runs; `None`: the server's default.
    pub webhook_url: Option<String>,
    /// How its webhooks are shaped and signed; `None`: the server's default.
    pub webhook_format: Option<super::WebhookFormat>,
    /// The integration it belongs to: Nango's provider config key
    /// (docs/nango.md); `None`: none given.
    pub integration: Option<String>,
    /// When the provider last said something changed (µs); cleared by the
    /// run it causes.
    pub notified_at_us: Option<i64>,
    pub created_us: i64,
    pub updated_us: i64,
}

impl Connection {
    /// Its integration key (Nango's provider config key): the one it was
    /// given, else its provider's name.
    pub fn integration_key(&self) -> String {
        self.integration.clone().unwrap_or_else(|| self.provider.clone())
    }

    /// What decides when it runs ([`crate::schedule::due`]).
    pub fn timing(&self) -> crate::schedule::Timing {
        crate::schedule::Timing {
            paused: self.paused,
            needs_reauth: self.status == ConnectionStatus::NeedsReauth,
            failing: self.status == ConnectionStatus::Failing,
            next_run_at_us: self.next_run_at_us,
            notified_at_us: self.notified_at_us,
        }
    }
}

/// A connection's secrets besides its provider credentials (`Debug` shows
/// them as redacted).
#[derive(Debug, Clone, Default)]
pub struct ConnectionSecrets {
    /// Signs the webhooks sent to `webhook_url`.
    pub webhook_secret: Option<SecretString>,
    /// Verifies the provider's change notifications about this connection.
    pub verifier_token: Option<SecretString>,
}

/// A connection's credentials as stored (`Debug` shows the secrets as redacted).
#[derive(Debug, Clone)]
pub enum StoredCredentials {
    /// OAuth 2.0 with a refresh token; the access token is obtained by the host.
    OAuth {
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
        access_token: Option<SecretString>,
        access_expires_us: Option<i64>,
        /// When the access token was stored (µs since the epoch).
        access_issued_us: Option<i64>,
    },
    /// A fixed access token (quick tries): it cannot be refreshed.
    AccessToken(SecretString),
}

/// What a refresh obtained. Stored in one transaction, the rotated refresh
/// token included, before the access token is used.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: SecretString,
    pub access_expires_us: i64,
    /// A new refresh token, when the provider rotated it.
    pub refresh_token: Option<SecretString>,
}

/// A change to a connection; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub paused: Option<bool>,
    pub every: Option<Option<Duration>>,
    pub status: Option<ConnectionStatus>,
    pub status_message: Option<Option<String>>,
    pub failures: Option<u32>,
    pub next_run_at_us: Option<Option<i64>>,
}

/// The connections handle ([`super::Store::connections`]). Each call is one
/// transaction, on a connection of the backend's pool.
pub trait Connections: Send + Sync {
    /// Adds a connection; refused with [`StoreError::ConnectionExists`] if the id is taken.
    fn insert(
        &self,
        connection: &Connection,
        credentials: &StoredCredentials,
        secrets: &ConnectionSecrets,
    ) -> Result<(), StoreError>;
    fn get(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    /// Every connection, by id.
    fn list(&self) -> Result<Vec<Connection>, StoreError>;
    /// How many connections there are of each status, a paused one counted
    /// as `paused` whatever its status (the metrics' gauge; counted by the
    /// store, not read one by one).
    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Applies `update`; returns the connection after it, `None` if unknown.
    fn update(&self, id: &str, update: &ConnectionUpdate) -> Result<Option<Connection>, StoreError>;
    /// Removes the connection and its credentials; with `purge`, everything
    /// stored under its id too — records, checkpoints, run history, webhook
    /// deliveries — also when the connection itself was removed before (a
    /// plain remove keeps its records, a later purge must still reach them).
    fn remove(&self, id: &str, purge: bool) -> Result<Removal, StoreError>;
    /// At most `limit` of the connections due at `now_us` by
    /// [`crate::schedule::due`], soonest first (then by id). Reads only the
    /// due ones, through indexes, so a poll costs what is due, not how many
    /// connections there are; the rule is the schedule module's.
    fn due(&self, now_us: i64, quiet: Duration, limit: usize) -> Result<Vec<Connection>, StoreError>;
    fn credentials(&self, id: &str) -> Result<Option<StoredCredentials>, StoreError>;
    fn secrets(&self, id: &str) -> Result<Option<ConnectionSecrets>, StoreError>;
    /// The verifier tokens of every connection that has one.
    fn verifier_tokens(&self) -> Result<Vec<SecretString>, StoreError>;
    /// Marks the connections of `route`'s provider whose configuration names
    /// its account, and that belong to the app which signed the notification,
    /// as notified at `now_us`; returns their ids. With `verifier`
    /// `Some(token)`: those whose own verifier token it is; with `None` (the
    /// server's token): those without one of their own.
    fn notify(
        &self,
        route: &NotificationRoute<'_>,
        now_us: i64,
        verifier: Option<&str>,
    ) -> Result<Vec<String>, StoreError>;
    /// Clears a notification the run starting at `start_us` covers (one that
    /// came later stays, for another run).
    fn clear_notification(&self, id: &str, start_us: i64) -> Result<(), StoreError>;
    /// Stores what a refresh obtained, atomically.
    fn save_tokens(&self, id: &str, tokens: &Tokens) -> Result<(), StoreError>;
    /// Forgets the connection's checkpoints (its next run starts over); with
    /// `empty`, deletes its records too.
    fn reset(&self, id: &str, empty: bool) -> Result<(), StoreError>;
}

/// Which connections a provider's notification is about: those of
/// `provider` whose configuration value of `account_key` is `account`.
#[derive(Debug, Clone, Copy)]
pub struct NotificationRoute<'a> {
    pub provider: &'a str,
    pub account_key: &'a str,
    pub account: &'a str,
}

/// What [`Connections::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removal {
    /// The connection existed; it and its credentials are gone.
    pub connection: bool,
    /// With `purge`: how many records were deleted, of every model.
    pub records: u64,
    /// With `purge`: whether anything at all was stored under the id.
    pub purged: bool,
}
