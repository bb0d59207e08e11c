//! The `config` capability: read-only key/value settings of a connection.

use std::collections::BTreeMap;

use crate::bindings::portable_sync::sync::config as wit;

/// A connection's configuration (e.g. `realmId`). Never holds credentials:
/// those stay with the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigCtx {
    values: BTreeMap<String, String>,
}

impl ConfigCtx {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        ConfigCtx { values }
    }
}

impl wit::Host for ConfigCtx {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.values.get(&key).cloned())
    }
}
