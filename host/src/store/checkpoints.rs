//! Checkpoints: one opaque string per connection and sync, written by a run
//! on its own connection ([`super::Store::run_writes`]).

use super::StoreError;

/// A run's checkpoints, on the connection of its record writes.
pub trait Checkpoints: Send {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError>;
    /// Replaces the value atomically.
    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError>;
}
