//! The guest's sync logic compiled natively, with the host's own provider
//! client and stores behind it: the baseline for the cost of the sandbox.

use quickbooks_customers::platform::{HttpResponse, Level, ListingError, Platform};
use quickbooks_customers::qbo::ApiRequest;
use sync_host::capabilities::records::{validate_batch, validate_ids};
use sync_host::provider::client::Method;
use sync_host::provider::{ProviderClient, ProviderRequest};
use sync_host::store::{BatchOutcome, Checkpoints, RecordWrites, Scope, StoreError};

pub struct NativePlatform {
    pub client: ProviderClient,
    pub records: Box<dyn RecordWrites>,
    pub checkpoints: Box<dyn Checkpoints>,
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
    fn get(&mut self, request: &ApiRequest) -> Result<HttpResponse, String> {
        let (response, _) = self.client.send(
            &ProviderRequest {
                method: Method::Get,
                path: request.path.clone(),
                query: request.query.clone(),
                headers: request.headers.clone(),
                body: None,
                retry: true,
            },
            64 << 20,
            None,
            &|| false,
        );
        let response = response.map_err(|e| e.to_string())?;
        Ok(HttpResponse { status: response.status, body: response.body, attempts: response.attempts })
    }

    fn save(&mut self, model: &str, records: Vec<String>) -> Result<(), String> {
        let valid = validate_batch(&records).map_err(|e| e.to_string())?;
        let scope = self.scope(model);
        self.outcome += self.records.save(&scope, &valid).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn delete(&mut self, model: &str, ids: Vec<String>) -> Result<(), String> {
        validate_ids(&ids).map_err(|e| e.to_string())?;
        let scope = self.scope(model);
        self.outcome += self.records.delete(&scope, &ids).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn begin_listing(&mut self, model: &str) -> Result<u64, String> {
        let scope = self.scope(model);
        self.records.begin_listing(&scope).map_err(|e| e.to_string())
    }

    fn current_listing(&mut self, model: &str) -> Result<Option<u64>, String> {
        let scope = self.scope(model);
        self.records.current_listing(&scope).map_err(|e| e.to_string())
    }

    fn end_listing(&mut self, model: &str, listing: u64) -> Result<u32, ListingError> {
        let scope = self.scope(model);
        match self.records.end_listing(&scope, listing) {
            Ok(outcome) => {
                self.outcome += outcome;
                Ok(outcome.deleted)
            }
            Err(e @ StoreError::NoListing { .. }) => Err(ListingError::NotOpen(e.to_string())),
            Err(e) => Err(ListingError::Store(e.to_string())),
        }
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
