//! The `checkpoint` capability: one opaque string per connection and sync.

use crate::bindings::portable_sync::sync::checkpoint as wit;
use crate::store::Checkpoints;

/// The checkpoint capability of one run.
pub struct CheckpointCtx {
    store: Box<dyn Checkpoints>,
    connection: String,
    sync: String,
}

impl CheckpointCtx {
    pub fn new(store: Box<dyn Checkpoints>, connection: &str, sync: &str) -> Self {
        CheckpointCtx { store, connection: connection.to_owned(), sync: sync.to_owned() }
    }
}

impl wit::Host for CheckpointCtx {
    fn get(&mut self) -> wasmtime::Result<Result<Option<String>, wit::Error>> {
        Ok(self.store.get(&self.connection, &self.sync).map_err(|e| wit::Error::Store(e.to_string())))
    }

    fn save(&mut self, value: String) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.store.save(&self.connection, &self.sync, &value).map_err(|e| wit::Error::Store(e.to_string())))
    }
}
