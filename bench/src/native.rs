//! The guest's sync logic compiled natively, with the host's own proxy and
//! stores behind it: the baseline for the cost of the sandbox.

use quickbooks_customers::platform::{HttpResponse, Level, Platform};
use quickbooks_customers::qbo::ApiRequest;
use sync_host::checkpoint::CheckpointStore;
use sync_host::proxy::{HttpProxy, Method, ProxyRequest};
use sync_host::records::sqlite::{SqliteCheckpoints, SqliteStore};
use sync_host::records::{validate_batch, validate_ids, BatchOutcome, RecordStore, Scope};

pub struct NativePlatform {
    pub proxy: HttpProxy,
    pub store: SqliteStore,
    pub checkpoints: SqliteCheckpoints,
    pub realm_id: String,
    pub connection: String,
    pub outcome: BatchOutcome,
}

impl NativePlatform {
    fn scope(&self, model: &str) -> Scope {
        Scope { connection: self.connection.clone(), model: model.to_owned() }
    }
}

impl Platform for NativePlatform {
    fn get(&mut self, request: &ApiRequest, max_retries: u32) -> Result<HttpResponse, String> {
        let response = self
            .proxy
            .send(&ProxyRequest {
                method: Method::Get,
                path: request.path.clone(),
                query: request.query.clone(),
                headers: request.headers.clone(),
                body: None,
                max_retries,
            })
            .map_err(|e| e.to_string())?;
        Ok(HttpResponse { status: response.status, body: response.body, attempts: response.attempts })
    }

    fn save(&mut self, model: &str, records: Vec<String>) -> Result<(), String> {
        let valid = validate_batch(&records).map_err(|e| e.to_string())?;
        let scope = self.scope(model);
        self.outcome += self.store.save(&scope, &valid).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn delete(&mut self, model: &str, ids: Vec<String>) -> Result<(), String> {
        validate_ids(&ids).map_err(|e| e.to_string())?;
        let scope = self.scope(model);
        self.outcome += self.store.delete(&scope, &ids).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn load_checkpoint(&mut self) -> Result<Option<String>, String> {
        self.checkpoints.get(&self.connection, "customers").map_err(|e| e.to_string())
    }

    fn save_checkpoint(&mut self, value: &str) -> Result<(), String> {
        self.checkpoints.save(&self.connection, "customers", value).map_err(|e| e.to_string())
    }

    fn config(&mut self, key: &str) -> Option<String> {
        (key == "realmId").then(|| self.realm_id.clone())
    }

    fn log(&mut self, _level: Level, _message: &str) {}
}
