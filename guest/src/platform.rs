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

/// Everything the sync does outside itself.
pub trait Platform {
    /// Sends a GET through the host's authenticated proxy. `Err` is a message
    /// saying why no response could be had.
    fn get(&mut self, request: &ApiRequest, max_retries: u32) -> Result<HttpResponse, String>;
    /// Saves records (JSON object texts) of `model`.
    fn save(&mut self, model: &str, records: Vec<String>) -> Result<(), String>;
    /// Deletes records of `model` by id.
    fn delete(&mut self, model: &str, ids: Vec<String>) -> Result<(), String>;
    /// The saved checkpoint, if any.
    fn load_checkpoint(&mut self) -> Result<Option<String>, String>;
    /// Replaces the checkpoint.
    fn save_checkpoint(&mut self, value: &str) -> Result<(), String>;
    /// A connection configuration value.
    fn config(&mut self, key: &str) -> Option<String>;
    /// Logs a message.
    fn log(&mut self, level: Level, message: &str);
}
