//! The checkpoint capability: one opaque string per connection and sync.

use crate::bindings::portable_sync::sync::checkpoint as wit;
use crate::records::StoreError;
use crate::runtime::RunState;

/// A checkpoint backend. `save` replaces the value atomically.
pub trait CheckpointStore: Send {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError>;
    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError>;
}

impl wit::Host for RunState {
    fn get(&mut self) -> Result<Option<String>, wit::Error> {
        self.checkpoints
            .get(&self.connection_id, &self.sync_name)
            .map_err(|e| wit::Error::Store(e.to_string()))
    }

    fn save(&mut self, value: String) -> Result<(), wit::Error> {
        self.checkpoints
            .save(&self.connection_id, &self.sync_name, &value)
            .map_err(|e| wit::Error::Store(e.to_string()))
    }
}
