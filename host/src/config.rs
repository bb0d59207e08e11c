//! The connection-config capability: read-only key/value settings of a connection.

use std::collections::BTreeMap;

use crate::bindings::portable_sync::sync::config as wit;
use crate::runtime::RunState;

/// A connection's configuration (e.g. `realmId`). Never holds credentials:
/// those stay with the proxy.
#[derive(Debug, Clone, Default)]
pub struct ConnectionConfig {
    values: BTreeMap<String, String>,
}

impl ConnectionConfig {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.values.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

impl wit::Host for RunState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).map(str::to_owned)
    }
}
