//! The `logging` capability: guest messages go to `tracing`, tagged with the
//! connection and the run id.

use crate::bindings::portable_sync::sync::logging as wit;

/// Longest guest message kept; a guest cannot flood the host's logs.
const MAX_MESSAGE: usize = 4096;

/// The logging capability of one run.
pub struct LoggingCtx {
    connection: String,
    run_id: String,
}

impl LoggingCtx {
    pub fn new(connection: &str, run_id: &str) -> Self {
        LoggingCtx { connection: connection.to_owned(), run_id: run_id.to_owned() }
    }
}

impl wit::Host for LoggingCtx {
    fn log(&mut self, level: wit::Level, message: String) -> wasmtime::Result<()> {
        let message = match message.char_indices().nth(MAX_MESSAGE) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        let (connection, run) = (self.connection.as_str(), self.run_id.as_str());
        match level {
            wit::Level::Trace => tracing::trace!(target: "guest", connection, run, "{message}"),
            wit::Level::Debug => tracing::debug!(target: "guest", connection, run, "{message}"),
            wit::Level::Info => tracing::info!(target: "guest", connection, run, "{message}"),
            wit::Level::Warn => tracing::warn!(target: "guest", connection, run, "{message}"),
            wit::Level::Error => tracing::error!(target: "guest", connection, run, "{message}"),
        }
        Ok(())
    }
}
