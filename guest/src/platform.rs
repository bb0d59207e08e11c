//! The capabilities the sync needs from its host, as a plain Rust trait.
//!
//! In the component these are the WIT imports (see `component.rs`); natively
//! (unit tests, the sandbox-cost benchmark) anything can implement them.

use crate::qbo::ApiRequest;

/// A response from the provider, after the host's retries.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// Attempts the host made; `attempts - 1` were retries.
    pub attempts: u32,
}

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// Why a listing call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingError {
    /// The listing named is not the open one (ended, superseded or never
    /// begun); nothing was deleted.
    NotOpen(String),
    /// The store failed.
    Store(String),
}

/// Everything the sync does outside itself.
pub trait Platform {
    /// Sends a GET through the host's authenticated proxy, which retries
    /// throttling and transient failures within its time budget. `Err` is a
    /// message saying why no response could be had.
    fn get(&mut self, request: &ApiRequest) -> Result<HttpResponse, String>;
    /// Saves records (JSON object texts) of `model`.
    fn save(&mut self, model: &str, records: Vec<String>) -> Result<(), String>;
    /// Deletes records of `model` by id.
    fn delete(&mut self, model: &str, ids: Vec<String>) -> Result<(), String>;
    /// Opens a new complete listing of `model`; returns its id.
    fn begin_listing(&mut self, model: &str) -> Result<u64, String>;
    /// The open listing of `model`, if any.
    fn current_listing(&mut self, model: &str) -> Result<Option<u64>, String>;
    /// Ends `listing` successfully; returns how many records it deleted.
    fn end_listing(&mut self, model: &str, listing: u64) -> Result<u32, ListingError>;
    /// The saved checkpoint, if any.
    fn load_checkpoint(&mut self) -> Result<Option<String>, String>;
    /// Replaces the checkpoint.
    fn save_checkpoint(&mut self, value: &str) -> Result<(), String>;
    /// A connection configuration value.
    fn config(&mut self, key: &str) -> Option<String>;
    /// Logs a message.
    fn log(&mut self, level: Level, message: &str);
}
