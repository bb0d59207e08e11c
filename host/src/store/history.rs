//! The history of runs, per connection.

use super::StoreError;

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
pub const ABANDONED: &str = "the worker running it stopped (it died or was killed); the next run resumed from the checkpoint";

/// A run-history backend.
pub trait RunHistory: Send {
    /// Records a run that starts.
    fn start(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// Records how it ended.
    fn finish(
        &mut self,
        id: &str,
        ended_us: i64,
        outcome: Outcome,
        summary: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Closes, as failed, the runs of `connection` that never recorded an
    /// end. Called by a worker that just took the connection's run lock: no
    /// run of it can be going on. Returns how many it closed.
    fn close_abandoned(&mut self, connection: &str, now_us: i64) -> Result<u32, StoreError>;
    /// Runs of `connection`, newest first, strictly before `before`
    /// (`(started_us, id)`), at most `limit`; and whether more follow.
    fn list(
        &mut self,
        connection: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<(Vec<RunRecord>, bool), StoreError>;
}
