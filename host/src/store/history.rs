//! The history of runs, per connection.

use super::{ConnectionUpdate, StoreError};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Api,
    Webhook,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Webhook => "webhook",
            Trigger::Cli => "cli",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "schedule" => Some(Trigger::Schedule),
            "api" => Some(Trigger::Api),
            "webhook" => Some(Trigger::Webhook),
            "cli" => Some(Trigger::Cli),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One run of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: String,
    pub connection: String,
    pub trigger: Trigger,
    pub started_us: i64,
    pub ended_us: Option<i64>,
    /// `None` while the run goes on.
    pub outcome: Option<Outcome>,
    /// The summary line (JSON), when the run produced one.
    pub summary: Option<String>,
    pub error: Option<String>,
    /// The process that ran it (`host:pid`).
    pub worker: Option<String>,
}

/// The error of a run whose worker stopped before recording its end.
pub const ABANDONED: &str =
    "the worker running it stopped (it died or was killed); the next run resumed from the checkpoint";

/// How a run ended, as [`RunHistory::end`] records it.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    pub id: &'a str,
    pub connection: &'a str,
    pub ended_us: i64,
    pub outcome: Outcome,
    pub summary: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The run-history handle ([`super::Store::runs`]).
pub trait RunHistory: Send + Sync {
    /// Begins `run`, as one transaction: closes, as failed ([`ABANDONED`]),
    /// the runs of its connection that never recorded an end (the caller
    /// holds the run lock: none of them is going on); records `run` as
    /// started; marks the connection `running`; and clears the provider's
    /// notifications up to the run's start (the run reads what they
    /// announced). Returns when the oldest run it closed started: what that
    /// run stored was never told.
    fn begin(&self, run: &RunRecord) -> Result<Option<i64>, StoreError>;
    /// Ends the run `end.id`, as one transaction: its outcome in the
    /// history, and `update` of its connection (status, next run).
    fn end(&self, end: &RunEnd<'_>, update: &ConnectionUpdate) -> Result<(), StoreError>;
    /// Runs of `connection`, newest first, strictly before `before`
    /// (`(started_us, id)`), at most `limit`; and whether more follow.
    fn list(
        &self,
        connection: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<(Vec<RunRecord>, bool), StoreError>;
}
